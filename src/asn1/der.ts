/**
 * A small DER writer and reader.
 *
 * Issuance, OCSP and CRLs are hot paths: building structures through a generic
 * ASN.1 object model costs milliseconds, while writing the few fixed shapes a CA
 * needs directly costs microseconds (see docs/performance.md). The reader is
 * strict and bounds-checked, because it reads bytes that clients control.
 */

export const Tag = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  ENUMERATED: 0x0a,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  T61_STRING: 0x14,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  UNIVERSAL_STRING: 0x1c,
  BMP_STRING: 0x1e,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

// ---------------------------------------------------------------- writer

function lengthBytes(len: number): Buffer {
  if (len < 0x80) return Buffer.from([len]);
  const bytes: number[] = [];
  let n = len;
  while (n > 0) {
    bytes.unshift(n & 0xff);
    n = Math.floor(n / 256);
  }
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** Header (tag and length) of a TLV whose content is `len` bytes long. */
export function header(tag: number, len: number): Buffer {
  const l = lengthBytes(len);
  const out = Buffer.allocUnsafe(1 + l.length);
  out[0] = tag;
  l.copy(out, 1);
  return out;
}

export function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = content.length === 1 ? content[0] : Buffer.concat(content);
  return Buffer.concat([header(tag, body.length), body]);
}

export const seq = (...parts: Buffer[]): Buffer => tlv(Tag.SEQUENCE, ...parts);
export const set = (...parts: Buffer[]): Buffer => tlv(Tag.SET, ...parts);
export const octets = (b: Buffer): Buffer => tlv(Tag.OCTET_STRING, b);
export const nul = (): Buffer => Buffer.from([0x05, 0x00]);
export const bool = (v: boolean): Buffer => Buffer.from([0x01, 0x01, v ? 0xff : 0x00]);
export const utf8 = (s: string): Buffer => tlv(Tag.UTF8_STRING, Buffer.from(s, 'utf8'));
export const ia5 = (s: string): Buffer => tlv(Tag.IA5_STRING, Buffer.from(s, 'latin1'));
export const printable = (s: string): Buffer => tlv(Tag.PRINTABLE_STRING, Buffer.from(s, 'latin1'));

/** Context-specific tag: constructed ([n] EXPLICIT, or IMPLICIT of a constructed type) or primitive. */
export function ctx(n: number, content: Buffer, constructed = true): Buffer {
  return tlv((constructed ? 0xa0 : 0x80) | n, content);
}

/** BIT STRING with no unused bits (signatures, public keys). */
export const bits = (b: Buffer): Buffer => tlv(Tag.BIT_STRING, Buffer.from([0]), b);

/**
 * BIT STRING of named bits (keyUsage, ReasonFlags): bit 0 is the most significant
 * bit of the first octet, and DER drops trailing zero bits (X.690 11.2.2).
 */
export function namedBits(bitNumbers: number[]): Buffer {
  if (bitNumbers.length === 0) return Buffer.from([0x03, 0x01, 0x00]);
  const highest = Math.max(...bitNumbers);
  const bytes = Buffer.alloc(Math.floor(highest / 8) + 1);
  for (const b of bitNumbers) bytes[Math.floor(b / 8)] |= 0x80 >> (b % 8);
  const unused = 7 - (highest % 8);
  return tlv(Tag.BIT_STRING, Buffer.from([unused]), bytes);
}

/** INTEGER from unsigned big-endian bytes, or from a small non-negative number. */
export function int(value: Buffer | number | bigint): Buffer {
  let bytes: Buffer;
  if (Buffer.isBuffer(value)) {
    bytes = value;
  } else {
    let hex = BigInt(value).toString(16);
    if (hex.length % 2) hex = '0' + hex;
    bytes = Buffer.from(hex, 'hex');
  }
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0 && (bytes[start + 1] & 0x80) === 0) start++;
  bytes = bytes.subarray(start);
  if (bytes.length === 0) bytes = Buffer.from([0]);
  if (bytes[0] & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return tlv(Tag.INTEGER, bytes);
}

export const enumerated = (n: number): Buffer => {
  const i = int(n);
  i[0] = Tag.ENUMERATED;
  return i;
};

const oidCache = new Map<string, Buffer>();

export function oid(dotted: string): Buffer {
  const cached = oidCache.get(dotted);
  if (cached) return cached;
  const arcs = dotted.split('.').map((a) => BigInt(a));
  const body: number[] = [];
  const first = arcs[0] * 40n + arcs[1];
  for (const arc of [first, ...arcs.slice(2)]) {
    const chunk: number[] = [];
    let v = arc;
    do {
      chunk.unshift(Number(v & 0x7fn));
      v >>= 7n;
    } while (v > 0n);
    for (let i = 0; i < chunk.length - 1; i++) chunk[i] |= 0x80;
    body.push(...chunk);
  }
  const out = tlv(Tag.OID, Buffer.from(body));
  oidCache.set(dotted, out);
  return out;
}

const pad = (n: number, w = 2) => String(n).padStart(w, '0');

/** RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; always Z, whole seconds. */
export function time(date: Date): Buffer {
  const y = date.getUTCFullYear();
  const rest =
    pad(date.getUTCMonth() + 1) +
    pad(date.getUTCDate()) +
    pad(date.getUTCHours()) +
    pad(date.getUTCMinutes()) +
    pad(date.getUTCSeconds()) +
    'Z';
  if (y >= 1950 && y < 2050) return tlv(Tag.UTC_TIME, Buffer.from(pad(y % 100) + rest, 'latin1'));
  return generalizedTime(date);
}

/** GeneralizedTime, whole seconds, Z (RFC 5280 4.1.2.5.2; RFC 6960 uses it throughout). */
export function generalizedTime(date: Date): Buffer {
  const s =
    pad(date.getUTCFullYear(), 4) +
    pad(date.getUTCMonth() + 1) +
    pad(date.getUTCDate()) +
    pad(date.getUTCHours()) +
    pad(date.getUTCMinutes()) +
    pad(date.getUTCSeconds()) +
    'Z';
  return tlv(Tag.GENERALIZED_TIME, Buffer.from(s, 'latin1'));
}

// ---------------------------------------------------------------- reader

export class DerError extends Error {}

/** One TLV inside a buffer: `raw` is the whole element, `content` its value. */
export interface Element {
  tag: number;
  /** offset of the element's first byte in `buf` */
  start: number;
  /** offset of its content */
  contentStart: number;
  /** offset just past it */
  end: number;
  buf: Buffer;
}

export const raw = (e: Element): Buffer => e.buf.subarray(e.start, e.end);
export const content = (e: Element): Buffer => e.buf.subarray(e.contentStart, e.end);

/** Reads one DER element at `offset`, never past `limit`. Rejects indefinite and non-minimal lengths. */
export function read(buf: Buffer, offset = 0, limit = buf.length): Element {
  if (offset + 2 > limit) throw new DerError('truncated element');
  const tag = buf[offset];
  if ((tag & 0x1f) === 0x1f) throw new DerError('high tag numbers are not supported');
  let len = buf[offset + 1];
  let pos = offset + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0) throw new DerError('indefinite length is not DER');
    if (n > 4) throw new DerError('length too large');
    if (pos + n > limit) throw new DerError('truncated length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[pos + i];
    if (len < 0x80 || (n > 1 && buf[pos] === 0)) throw new DerError('non-minimal length');
    pos += n;
  }
  const end = pos + len;
  if (end > limit) throw new DerError('truncated content');
  return { tag, start: offset, contentStart: pos, end, buf };
}

/** The children of a constructed element. */
export function children(e: Element, maxCount = 100000): Element[] {
  if ((e.tag & 0x20) === 0) throw new DerError('expected a constructed element');
  const out: Element[] = [];
  let pos = e.contentStart;
  while (pos < e.end) {
    const child = read(e.buf, pos, e.end);
    out.push(child);
    if (out.length > maxCount) throw new DerError('too many elements');
    pos = child.end;
  }
  return out;
}

/** Parses a whole buffer as exactly one element. */
export function readTop(buf: Buffer): Element {
  const e = read(buf, 0, buf.length);
  if (e.end !== buf.length) throw new DerError('trailing bytes after the element');
  return e;
}

export function expect(e: Element | undefined, tag: number, what: string): Element {
  if (!e || e.tag !== tag) throw new DerError(`expected ${what}`);
  return e;
}

export function readOid(e: Element): string {
  if (e.tag !== Tag.OID) throw new DerError('expected an OBJECT IDENTIFIER');
  const b = content(e);
  if (b.length === 0 || b.length > 64) throw new DerError('bad OBJECT IDENTIFIER');
  const arcs: bigint[] = [];
  let v = 0n;
  for (let i = 0; i < b.length; i++) {
    if (v === 0n && b[i] === 0x80) throw new DerError('non-minimal OBJECT IDENTIFIER');
    v = (v << 7n) | BigInt(b[i] & 0x7f);
    if ((b[i] & 0x80) === 0) {
      arcs.push(v);
      v = 0n;
    } else if (i === b.length - 1) {
      throw new DerError('truncated OBJECT IDENTIFIER');
    }
  }
  const first = arcs[0] < 80n ? arcs[0] / 40n : 2n;
  const second = arcs[0] - first * 40n;
  return [first, second, ...arcs.slice(1)].join('.');
}

/** INTEGER content as unsigned big-endian bytes; refuses negatives where asked. */
export function readUnsignedInt(e: Element): Buffer {
  if (e.tag !== Tag.INTEGER) throw new DerError('expected an INTEGER');
  let b = content(e);
  if (b.length === 0) throw new DerError('empty INTEGER');
  if (b[0] & 0x80) throw new DerError('negative INTEGER');
  if (b.length > 1 && b[0] === 0) b = b.subarray(1);
  return b;
}

export function readSmallInt(e: Element): number {
  if (e.tag !== Tag.INTEGER && e.tag !== Tag.ENUMERATED) throw new DerError('expected an INTEGER');
  const b = content(e);
  if (b.length === 0 || b.length > 4) throw new DerError('INTEGER out of range');
  let v = b[0] & 0x80 ? -1 : 0;
  for (const x of b) v = v * 256 + x;
  return v;
}

export function readTime(e: Element): Date {
  const s = content(e).toString('latin1');
  let m: RegExpMatchArray | null;
  if (e.tag === Tag.UTC_TIME && (m = s.match(/^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/))) {
    const yy = Number(m[1]);
    return new Date(Date.UTC(yy < 50 ? 2000 + yy : 1900 + yy, +m[2] - 1, +m[3], +m[4], +m[5], +m[6]));
  }
  if (e.tag === Tag.GENERALIZED_TIME && (m = s.match(/^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(?:\.\d+)?Z$/))) {
    return new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]));
  }
  throw new DerError('bad time');
}

/** Strings of a Name or GeneralName, decoded for display and checks. */
export function readString(e: Element): string {
  const b = content(e);
  switch (e.tag) {
    case Tag.UTF8_STRING:
      return b.toString('utf8');
    case Tag.PRINTABLE_STRING:
    case Tag.IA5_STRING:
    case Tag.T61_STRING:
      return b.toString('latin1');
    case Tag.BMP_STRING:
      return Buffer.from(b).swap16().toString('utf16le');
    default:
      throw new DerError('unsupported string type');
  }
}

// ---------------------------------------------------------------- PEM

export function pemEncode(label: string, der: Buffer): string {
  const b64 = der.toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** Decodes the first PEM block with one of `labels`; undefined when there is none. */
export function pemDecode(text: string, labels: string[]): Buffer | undefined {
  const m = text.match(/-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/);
  if (!m || !labels.includes(m[1])) return undefined;
  const body = m[2].replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body)) return undefined;
  const der = Buffer.from(body, 'base64');
  return der.length ? der : undefined;
}
