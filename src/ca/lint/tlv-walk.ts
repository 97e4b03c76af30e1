/**
 * A minimal DER TLV walker for the lint's own use: it finds element
 * boundaries (tag, header length, content length) and nothing else. CRL
 * entries are checked with it because the @peculiar parser costs about
 * 130 µs per entry and stops at some ten thousand nodes, while a CRL may list
 * a million revoked certificates. It shares no code with src/asn1/der.ts.
 */
export interface Tlv {
  tag: number;
  /** offset of the tag */
  start: number;
  /** offset of the content */
  body: number;
  /** offset after the content */
  end: number;
}

export class TlvError extends Error {}

export function readTlv(b: Buffer, at: number, limit = b.length): Tlv {
  if (at + 2 > limit) throw new TlvError(`truncated element at ${at}`);
  const tag = b[at];
  if ((tag & 0x1f) === 0x1f) throw new TlvError(`multi-octet tag at ${at}`);
  let len = b[at + 1];
  let body = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || body + n > limit) throw new TlvError(`bad length at ${at}`);
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[body + i];
    body += n;
    if (len < 0x80 || (n > 1 && b[at + 2] === 0)) throw new TlvError(`length not in minimal DER form at ${at}`);
  }
  const end = body + len;
  if (end > limit) throw new TlvError(`element at ${at} runs past its parent`);
  return { tag, start: at, body, end };
}

/** The children of a constructed element. */
export function childrenOf(b: Buffer, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.body; at < parent.end; ) {
    const t = readTlv(b, at, parent.end);
    out.push(t);
    at = t.end;
  }
  return out;
}

/** A DER header (tag and minimal length) for `len` octets of content. */
export function derHeader(tag: number, len: number): Buffer {
  if (len < 0x80) return Buffer.from([tag, len]);
  const octets: number[] = [];
  for (let l = len; l > 0; l = Math.floor(l / 256)) octets.unshift(l & 0xff);
  return Buffer.from([tag, 0x80 | octets.length, ...octets]);
}
