/**
 * RFC 5280 CRL builder (complete and delta CRLs), streaming-friendly.
 *
 *   CertificateList ::= SEQUENCE {
 *        tbsCertList          TBSCertList,
 *        signatureAlgorithm   AlgorithmIdentifier,
 *        signatureValue       BIT STRING }
 *   TBSCertList ::= SEQUENCE {
 *        version                 Version OPTIONAL,      -- v2 (INTEGER 1)
 *        signature               AlgorithmIdentifier,
 *        issuer                  Name,
 *        thisUpdate              Time,
 *        nextUpdate              Time OPTIONAL,
 *        revokedCertificates     SEQUENCE OF SEQUENCE {
 *             userCertificate         CertificateSerialNumber,
 *             revocationDate          Time,
 *             crlEntryExtensions      Extensions OPTIONAL } OPTIONAL,
 *        crlExtensions           [0] EXPLICIT Extensions OPTIONAL }
 *
 * Revoked entries arrive as pages from the database and are encoded one by one
 * straight into byte chunks: no JS object per entry outlives its page. The
 * first chunk is sized from `expectedCount` and the encoded size of the first
 * page, with room in front for the headers, so in the usual case the whole
 * CertificateList is assembled in place with no copy of the entries at all.
 * If the estimate is short, further entries spill into extra chunks which are
 * copied once into an exact-size buffer at the end (peak about twice the CRL).
 */
import * as der from '../asn1/der';
import { OID } from '../asn1/oids';
import type { Signer } from '../hsm/hsm';
import { keyAlgorithmInfo } from '../hsm/key-algorithm';

export interface RevokedEntry {
  /** unsigned big-endian; leading zero octets are ignored */
  serial: Buffer;
  revokedAt: Date;
  /**
   * CRLReason (RFC 5280 5.3.1). Undefined or unspecified (0) writes no
   * reasonCode extension ("SHOULD be absent instead of using unspecified").
   * 7 is not a reason; removeFromCRL (8) is accepted on delta CRLs only.
   */
  reason?: number;
  /** written as the invalidityDate entry extension (GeneralizedTime) when known */
  invalidityDate?: Date;
}

export interface CrlParams {
  /** DER Name of the issuer (the CA's subject) */
  issuerName: Buffer;
  /** the issuer's subjectKeyIdentifier, written as authorityKeyIdentifier keyIdentifier */
  authorityKeyId: Buffer;
  crlNumber: bigint;
  thisUpdate: Date;
  nextUpdate: Date;
  signer: Signer;
  /**
   * URL for the issuingDistributionPoint fullName. When set, a critical IDP is
   * written with this URI. For a delta CRL pass the same IDP as its base CRL:
   * RFC 5280 5.2.4 requires both to have the same scope (OpenSSL compares the
   * two IDP extensions byte for byte). When unset, no IDP is written.
   */
  issuingDistributionPoint?: string | string[];
  /**
   * IDP onlyContainsUserCerts; default true: this CA does not revoke CA
   * certificates through this CRL (only end-entity certificates are issued and
   * revoked here). Set false if the CRL must also cover CA certificates.
   * Only written when issuingDistributionPoint is set.
   */
  onlyContainsUserCerts?: boolean;
  /** URL of the delta CRL, written as freshestCRL on complete CRLs only (ignored on deltas, RFC 5280 5.2.6) */
  freshestCrl?: string;
  /** set => this is a delta CRL with a critical deltaCRLIndicator naming this base CRL number */
  deltaBaseCrlNumber?: bigint;
}

// ---------------------------------------------------------------- constants

const MAX_CRL_NUMBER = (1n << 159n) - 1n; // 20 octets, non-negative (RFC 5280 5.2.3)
/** largest header a TLV of up to 4 GiB can need: tag, 0x84, 4 length octets */
const MAX_HEADER = 6;
/** signature room reserved after the TBS (RSA-8192 is 1024 octets); larger ones fall back to a copy */
const SIG_RESERVE = 1024 + MAX_HEADER + 1;
const SPILL_CHUNK = 4 << 20;
const DEFAULT_FIRST_CHUNK = 256 << 10;

// Extension { extnID reasonCode, extnValue OCTET STRING { ENUMERATED r } } (12 octets with the reason)
const REASON_EXT = Buffer.from([0x30, 0x0a, 0x06, 0x03, 0x55, 0x1d, 0x15, 0x04, 0x03, 0x0a, 0x01]);
// Extension { extnID invalidityDate, extnValue OCTET STRING { GeneralizedTime (15) } } (26 octets)
const INVALIDITY_EXT = Buffer.from([0x30, 0x18, 0x06, 0x03, 0x55, 0x1d, 0x18, 0x04, 0x11, 0x18, 0x0f]);
const REASON_EXT_LEN = REASON_EXT.length + 1;
const INVALIDITY_EXT_LEN = INVALIDITY_EXT.length + 15;

/** 0 = omit (unspecified), 1 = write, -1 = invalid, 2 = delta only */
const REASON_KIND = [0, 1, 1, 1, 1, 1, 1, -1, 2, 1, 1];

// ---------------------------------------------------------------- low-level writers

function headerLength(len: number): number {
  return len < 0x80 ? 2 : len < 0x100 ? 3 : len < 0x10000 ? 4 : len < 0x1000000 ? 5 : 6;
}

/** Writes tag and minimal DER length at `off`; returns the offset after them. */
function writeHeader(buf: Buffer, off: number, tag: number, len: number): number {
  buf[off++] = tag;
  if (len < 0x80) {
    buf[off++] = len;
    return off;
  }
  const n = headerLength(len) - 2;
  buf[off++] = 0x80 | n;
  for (let i = n - 1; i >= 0; i--) buf[off++] = Math.floor(len / 2 ** (8 * i)) & 0xff;
  return off;
}

function write2(buf: Buffer, off: number, v: number): void {
  buf[off] = 0x30 + ((v / 10) | 0);
  buf[off + 1] = 0x30 + (v % 10);
}

/** Writes YYMMDDhhmmssZ (13) or YYYYMMDDhhmmssZ (15) content; caller has written the header. */
function writeTimeDigits(buf: Buffer, off: number, d: Date, fourDigitYear: boolean): number {
  const y = d.getUTCFullYear();
  if (fourDigitYear) {
    write2(buf, off, (y / 100) | 0);
    off += 2;
  }
  write2(buf, off, y % 100);
  write2(buf, off + 2, d.getUTCMonth() + 1);
  write2(buf, off + 4, d.getUTCDate());
  write2(buf, off + 6, d.getUTCHours());
  write2(buf, off + 8, d.getUTCMinutes());
  write2(buf, off + 10, d.getUTCSeconds());
  buf[off + 12] = 0x5a; // Z
  return off + 13;
}

function checkDate(d: Date, what: string): number {
  const t = d instanceof Date ? d.getTime() : NaN;
  if (t !== t) throw new TypeError(`${what} is not a valid Date`);
  const y = d.getUTCFullYear();
  if (y < 0 || y > 9999) throw new RangeError(`${what} is outside years 0000-9999`);
  return y;
}

function checkUrl(url: string, what: string): Buffer {
  if (typeof url !== 'string' || !/^[\x21-\x7e]+$/.test(url)) throw new TypeError(`${what} must be a non-empty ASCII URI`);
  return der.tlv(0x86, Buffer.from(url, 'latin1')); // GeneralName uniformResourceIdentifier [6] IMPLICIT IA5String
}

function checkCrlNumber(n: bigint, what: string): void {
  if (typeof n !== 'bigint' || n < 0n || n > MAX_CRL_NUMBER) throw new RangeError(`${what} must be a bigint in 0..2^159-1`);
}

// ---------------------------------------------------------------- fixed parts

const ext = (oid: string, critical: boolean, value: Buffer): Buffer =>
  critical ? der.seq(der.oid(oid), der.bool(true), der.octets(value)) : der.seq(der.oid(oid), der.octets(value));

/** DistributionPointName fullName with one URI: [0] { [0] { [6] uri } } */
const dpFullName = (uri: Buffer): Buffer => der.ctx(0, der.ctx(0, uri));

function crlExtensions(p: CrlParams): Buffer {
  const delta = p.deltaBaseCrlNumber !== undefined;
  const exts: Buffer[] = [
    // AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING }
    ext(OID.authorityKeyIdentifier, false, der.seq(der.tlv(0x80, p.authorityKeyId))),
    ext(OID.cRLNumber, false, der.int(p.crlNumber)),
  ];
  if (delta) exts.push(ext(OID.deltaCRLIndicator, true, der.int(p.deltaBaseCrlNumber!)));
  if (p.issuingDistributionPoint !== undefined) {
    // several URIs: one CRL scope known under several names (an issuer's URL from before rotation and its stable one)
    const urls = Array.isArray(p.issuingDistributionPoint) ? p.issuingDistributionPoint : [p.issuingDistributionPoint];
    const idp: Buffer[] = [dpFullName(Buffer.concat(urls.map((u) => checkUrl(u, 'issuingDistributionPoint'))))];
    if (p.onlyContainsUserCerts ?? true) idp.push(Buffer.from([0x81, 0x01, 0xff])); // [1] IMPLICIT BOOLEAN TRUE
    exts.push(ext(OID.issuingDistributionPoint, true, der.seq(...idp)));
  }
  if (!delta && p.freshestCrl !== undefined) {
    // FreshestCRL ::= CRLDistributionPoints ::= SEQUENCE OF DistributionPoint
    exts.push(ext(OID.freshestCRL, false, der.seq(der.seq(dpFullName(checkUrl(p.freshestCrl, 'freshestCrl'))))));
  }
  return der.ctx(0, der.seq(...exts));
}

// ---------------------------------------------------------------- entries

/** Encoded length of one revokedCertificates entry, validating it; also returns what encodeEntry needs. */
interface EntryPlan {
  serialStart: number;
  serialPad: number;
  intLen: number;
  utc: boolean;
  writeReason: boolean;
  contentLen: number;
  extLen: number;
  total: number;
}

// One reused plan object: planEntry and encodeEntry for an entry run back to back
// with no await in between, so concurrent buildCrl calls cannot interleave here.
const plan: EntryPlan = { serialStart: 0, serialPad: 0, intLen: 0, utc: true, writeReason: false, contentLen: 0, extLen: 0, total: 0 };

function planEntry(e: RevokedEntry, delta: boolean): EntryPlan {
  const serial = e.serial;
  if (!Buffer.isBuffer(serial) || serial.length === 0) throw new TypeError('revoked entry serial must be a non-empty Buffer');
  let s = 0;
  while (s < serial.length - 1 && serial[s] === 0) s++;
  const pad = serial[s] & 0x80 ? 1 : 0;
  const intLen = serial.length - s + pad;
  const year = checkDate(e.revokedAt, 'revokedAt');
  const utc = year >= 1950 && year < 2050;
  let writeReason = false;
  const r = e.reason;
  if (r !== undefined && r !== 0) {
    const kind = Number.isInteger(r) ? REASON_KIND[r] : undefined;
    if (kind === undefined || kind < 0 || (kind === 2 && !delta)) throw new RangeError(`invalid CRLReason ${r} for this CRL`);
    writeReason = true;
  }
  let extContent = writeReason ? REASON_EXT_LEN : 0;
  if (e.invalidityDate !== undefined) {
    checkDate(e.invalidityDate, 'invalidityDate');
    extContent += INVALIDITY_EXT_LEN;
  }
  const extLen = extContent ? 2 + extContent : 0;
  const contentLen = headerLength(intLen) + intLen + (utc ? 15 : 17) + extLen;
  plan.serialStart = s;
  plan.serialPad = pad;
  plan.intLen = intLen;
  plan.utc = utc;
  plan.writeReason = writeReason;
  plan.contentLen = contentLen;
  plan.extLen = extLen;
  plan.total = headerLength(contentLen) + contentLen;
  return plan;
}

function encodeEntry(buf: Buffer, off: number, e: RevokedEntry, p: EntryPlan): number {
  off = writeHeader(buf, off, 0x30, p.contentLen);
  off = writeHeader(buf, off, 0x02, p.intLen);
  if (p.serialPad) buf[off++] = 0;
  off += e.serial.copy(buf, off, p.serialStart);
  if (p.utc) {
    buf[off++] = 0x17;
    buf[off++] = 13;
    off = writeTimeDigits(buf, off, e.revokedAt, false);
  } else {
    buf[off++] = 0x18;
    buf[off++] = 15;
    off = writeTimeDigits(buf, off, e.revokedAt, true);
  }
  if (p.extLen) {
    buf[off++] = 0x30;
    buf[off++] = p.extLen - 2;
    if (p.writeReason) {
      off += REASON_EXT.copy(buf, off);
      buf[off++] = e.reason!;
    }
    if (e.invalidityDate !== undefined) {
      off += INVALIDITY_EXT.copy(buf, off);
      off = writeTimeDigits(buf, off, e.invalidityDate, true);
    }
  }
  return off;
}

// ---------------------------------------------------------------- builder

/**
 * Builds and signs a complete or delta CRL (DER CertificateList).
 *
 * `entries` yields pages of revoked certificates (e.g. straight from a
 * database cursor); `expectedCount`, if given, is only used to size the
 * buffer (it need not be exact). revokedCertificates is omitted when there are
 * no entries (RFC 5280 5.1.2.6). Serial numbers are written as given: the
 * caller must not repeat one.
 */
export async function buildCrl(params: CrlParams, entries: AsyncIterable<RevokedEntry[]>, expectedCount?: number): Promise<Buffer> {
  const { signer } = params;
  der.expect(der.readTop(params.issuerName), der.Tag.SEQUENCE, 'issuerName');
  if (!Buffer.isBuffer(params.authorityKeyId) || params.authorityKeyId.length === 0) throw new TypeError('authorityKeyId must be a non-empty Buffer');
  checkCrlNumber(params.crlNumber, 'crlNumber');
  const delta = params.deltaBaseCrlNumber !== undefined;
  if (delta) {
    checkCrlNumber(params.deltaBaseCrlNumber!, 'deltaBaseCrlNumber');
    if (params.deltaBaseCrlNumber! >= params.crlNumber) throw new RangeError('a delta CRL number must exceed its base CRL number');
  }
  checkDate(params.thisUpdate, 'thisUpdate');
  checkDate(params.nextUpdate, 'nextUpdate');
  if (params.nextUpdate.getTime() <= params.thisUpdate.getTime()) throw new RangeError('nextUpdate must be after thisUpdate');

  const sigAlg = keyAlgorithmInfo(signer.algorithm).signatureAlgorithm;
  const prefix = Buffer.concat([
    Buffer.from([0x02, 0x01, 0x01]), // version v2
    sigAlg,
    params.issuerName,
    der.time(params.thisUpdate),
    der.time(params.nextUpdate),
  ]);
  const extensions = crlExtensions(params);
  // room before the entries: CertificateList, TBSCertList and revokedCertificates headers, and the prefix
  const headroom = 3 * MAX_HEADER + prefix.length;
  const tailRoom = extensions.length + sigAlg.length + SIG_RESERVE + MAX_HEADER;

  // -- stream the entries into chunks
  let buf: Buffer | undefined; // current chunk
  let first: Buffer | undefined;
  let pos = 0;
  let chunkStart = 0;
  const spilled: Buffer[] = []; // completed chunks (exact views), first chunk excluded
  let firstEnd = 0;
  let total = 0;

  for await (const page of entries) {
    if (!buf) {
      if (page.length === 0) continue;
      // size the first chunk from the first page's average entry size
      let pageBytes = 0;
      for (const e of page) pageBytes += planEntry(e, delta).total;
      const estimate =
        expectedCount !== undefined && expectedCount > page.length
          ? Math.ceil((pageBytes / page.length) * expectedCount * 1.03) + 1024
          : Math.max(pageBytes, DEFAULT_FIRST_CHUNK);
      buf = first = Buffer.allocUnsafeSlow(headroom + estimate + tailRoom);
      pos = chunkStart = headroom;
    }
    for (const e of page) {
      const p = planEntry(e, delta);
      if (pos + p.total > buf.length - (buf === first ? tailRoom : 0)) {
        // close this chunk, open a spill chunk
        if (buf === first) firstEnd = pos;
        else spilled.push(buf.subarray(chunkStart, pos));
        total += pos - chunkStart;
        buf = Buffer.allocUnsafeSlow(Math.max(SPILL_CHUNK, p.total));
        pos = chunkStart = 0;
      }
      pos = encodeEntry(buf, pos, e, p);
    }
  }

  // -- gather the entries into one buffer with headroom and tail room
  let out: Buffer;
  let entriesStart: number;
  let entriesEnd: number;
  if (!buf) {
    out = Buffer.allocUnsafeSlow(headroom + tailRoom);
    entriesStart = entriesEnd = headroom;
  } else if (buf === first) {
    out = buf;
    entriesStart = headroom;
    entriesEnd = pos;
    total = pos - headroom;
  } else {
    spilled.push(buf.subarray(chunkStart, pos));
    total += pos - chunkStart;
    out = Buffer.allocUnsafeSlow(headroom + total + tailRoom);
    entriesStart = headroom;
    let o = first!.copy(out, headroom, headroom, firstEnd);
    o += headroom;
    for (let i = 0; i < spilled.length; i++) {
      o += spilled[i].copy(out, o);
      spilled[i] = EMPTY; // let the chunk go as soon as possible
    }
    entriesEnd = o;
    first = buf = undefined;
  }
  const entriesLen = entriesEnd - entriesStart;

  // -- headers in front of the entries, extensions after them
  const revokedHeaderLen = entriesLen ? headerLength(entriesLen) : 0;
  const tbsContentLen = prefix.length + revokedHeaderLen + entriesLen + extensions.length;
  const tbsStart = entriesStart - revokedHeaderLen - prefix.length - headerLength(tbsContentLen);
  let o = writeHeader(out, tbsStart, 0x30, tbsContentLen);
  o += prefix.copy(out, o);
  if (entriesLen) writeHeader(out, o, 0x30, entriesLen);
  o = entriesEnd;
  o += extensions.copy(out, o);
  const tbsEnd = o;

  const signature = await signer.sign(out.subarray(tbsStart, tbsEnd));
  const sigLen = headerLength(signature.length + 1) + signature.length + 1;
  const outerLen = tbsEnd - tbsStart + sigAlg.length + sigLen;
  const start = tbsStart - headerLength(outerLen);
  if (tbsEnd + sigAlg.length + sigLen > out.length) {
    // a signature larger than reserved: assemble by copying (not expected in practice)
    return Buffer.concat([der.header(0x30, outerLen), out.subarray(tbsStart, tbsEnd), sigAlg, der.bits(signature)]);
  }
  writeHeader(out, start, 0x30, outerLen);
  o = tbsEnd + sigAlg.copy(out, tbsEnd);
  o = writeHeader(out, o, 0x03, signature.length + 1);
  out[o++] = 0;
  o += signature.copy(out, o);

  const length = o - start;
  // trim when the estimate left a lot of unused space behind the CRL
  if (out.length - length > Math.max(64 << 10, length >> 3)) {
    const exact = Buffer.allocUnsafeSlow(length);
    out.copy(exact, 0, start, o);
    return exact;
  }
  return out.subarray(start, o);
}

const EMPTY = Buffer.alloc(0);
