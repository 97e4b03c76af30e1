/**
 * RFC 6960 OCSPRequest parser.
 *
 * The bytes come straight from the network, so the parser is strict DER
 * (via the bounds-checked reader in asn1/der) and every failure — whatever
 * its origin — surfaces as an OcspMalformedError, which the responder answers
 * with the constant `malformedRequest` response.
 *
 *   OCSPRequest ::= SEQUENCE {
 *       tbsRequest              TBSRequest,
 *       optionalSignature   [0] EXPLICIT Signature OPTIONAL }
 *   TBSRequest ::= SEQUENCE {
 *       version             [0] EXPLICIT Version DEFAULT v1,
 *       requestorName       [1] EXPLICIT GeneralName OPTIONAL,
 *       requestList             SEQUENCE OF Request,
 *       requestExtensions   [2] EXPLICIT Extensions OPTIONAL }
 *   Signature ::= SEQUENCE {
 *       signatureAlgorithm      AlgorithmIdentifier,
 *       signature               BIT STRING,
 *       certs               [0] EXPLICIT SEQUENCE OF Certificate OPTIONAL }
 *   Request ::= SEQUENCE {
 *       reqCert                     CertID,
 *       singleRequestExtensions     [0] EXPLICIT Extensions OPTIONAL }
 *   CertID ::= SEQUENCE {
 *       hashAlgorithm           AlgorithmIdentifier,
 *       issuerNameHash          OCTET STRING,
 *       issuerKeyHash           OCTET STRING,
 *       serialNumber            CertificateSerialNumber }
 *
 * Returned Buffers are views into the input buffer (no copies are made).
 */
import * as der from '../asn1/der';
import { OID } from '../asn1/oids';

export class OcspMalformedError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'OcspMalformedError';
  }
}

export type OcspHash = 'sha1' | 'sha256' | 'sha384' | 'sha512';

/** Digest lengths of the hash algorithms a CertID may use. */
export const OCSP_HASH_LENGTH: Record<OcspHash, number> = { sha1: 20, sha256: 32, sha384: 48, sha512: 64 };

/** OID of each supported CertID hash algorithm. */
export const OCSP_HASH_OID: Record<OcspHash, string> = {
  sha1: OID.sha1,
  sha256: OID.sha256,
  sha384: OID.sha384,
  sha512: OID.sha512,
};

const HASH_BY_OID = new Map<string, OcspHash>(
  (Object.keys(OCSP_HASH_OID) as OcspHash[]).map((h) => [OCSP_HASH_OID[h], h]),
);

export interface CertIdRequest {
  /**
   * The CertID hash algorithm, or `undefined` when its OID is not one we support
   * (see `hashAlgorithm` for the OID). Such a CertID can never match one of our
   * issuers, so the responder answers it with certStatus `unknown` (echoing
   * `raw`), rather than rejecting the whole request: the request is well-formed,
   * we just cannot identify the certificate. (RFC 6960 2.2: "unknown" = the
   * responder doesn't know about the certificate being requested.)
   */
  hash: OcspHash | undefined;
  /** dotted OID of hashAlgorithm, always present */
  hashAlgorithm: string;
  issuerNameHash: Buffer;
  issuerKeyHash: Buffer;
  /** unsigned big-endian, no leading zero (a zero serial is the single byte 00) */
  serialNumber: Buffer;
  /** the CertID DER exactly as received; echoed in the SingleResponse */
  raw: Buffer;
}

export interface OcspRequestSignature {
  /** DER AlgorithmIdentifier */
  algorithm: Buffer;
  /** the signature BIT STRING contents, without the unused-bits octet */
  value: Buffer;
  /** DER certificates sent with the signature, possibly none */
  certs: Buffer[];
}

export interface OcspRequestInfo {
  certIds: CertIdRequest[];
  /**
   * The nonce, exactly as it must be echoed: the content of the request's
   * extnValue OCTET STRING, which per RFC 8954 is itself the DER encoding of
   * `Nonce ::= OCTET STRING (SIZE(1..32))` — i.e. the full inner TLV
   * (`04 <len> <nonce octets>`), not just the nonce octets. Pass it unchanged to
   * buildOcspResponse({ nonce }), which writes it back as the response extnValue
   * content, so clients that compare extnValues byte for byte (OpenSSL's
   * OCSP_check_nonce) match. Absent when the request has no nonce extension.
   */
  nonce?: Buffer;
  /** the nonce octets themselves (the inner OCTET STRING's content, 1..32 octets), for logging */
  nonceValue?: Buffer;
  /** true when optionalSignature is present (the signature is not verified here) */
  signed: boolean;
  signature?: OcspRequestSignature;
  /** DER GeneralName of requestorName, when present */
  requestorName?: Buffer;
  /** the TBSRequest DER (what a request signature covers) */
  tbsRequest: Buffer;
}

export interface OcspRequestLimits {
  /** at most this many CertIDs per request; default 20 */
  maxCertIds?: number;
  /** longest accepted nonce in octets; default 32 (RFC 8954 2.1) */
  maxNonceLength?: number;
}

const DEFAULT_MAX_CERT_IDS = 20;
const DEFAULT_MAX_NONCE_LENGTH = 32;
/** hard cap on extensions per Extensions SEQUENCE, to bound the work */
const MAX_EXTENSIONS = 32;

/**
 * Parses a DER OCSPRequest. Throws OcspMalformedError — and only that — for any
 * input that is not one, including: trailing bytes, BER encodings, zero CertIDs,
 * more than `maxCertIds` CertIDs, a nonce of 0 or more than 32 octets (RFC 8954
 * 2.1: reject with malformedRequest), duplicate extensions, an unrecognised
 * critical extension, hash lengths that do not fit a known hash algorithm, and
 * versions other than v1.
 */
export function parseOcspRequest(input: Buffer | Uint8Array, limits: OcspRequestLimits = {}): OcspRequestInfo {
  try {
    return parse(input, limits);
  } catch (e) {
    if (e instanceof OcspMalformedError) throw e;
    throw new OcspMalformedError(e instanceof Error ? e.message : 'malformed OCSP request', { cause: e });
  }
}

function fail(message: string): never {
  throw new OcspMalformedError(message);
}

function parse(bytes: Buffer | Uint8Array, limits: OcspRequestLimits): OcspRequestInfo {
  if (!(bytes instanceof Uint8Array)) fail('request is not a byte buffer');
  const input = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const maxCertIds = limits.maxCertIds ?? DEFAULT_MAX_CERT_IDS;
  const maxNonce = limits.maxNonceLength ?? DEFAULT_MAX_NONCE_LENGTH;

  const top = der.expect(der.readTop(input), der.Tag.SEQUENCE, 'OCSPRequest');
  const parts = der.children(top, 2);
  const tbs = der.expect(parts[0], der.Tag.SEQUENCE, 'TBSRequest');
  let signature: OcspRequestSignature | undefined;
  if (parts.length === 2) signature = parseSignature(der.expect(parts[1], 0xa0, 'optionalSignature [0]'));

  const fields = der.children(tbs, 4);
  let i = 0;
  if (fields[i]?.tag === 0xa0) {
    // version [0] EXPLICIT Version DEFAULT v1. DER omits the default, but some
    // clients write v1 explicitly; that is accepted, any other version is not.
    const v = der.children(fields[i], 1);
    if (v.length !== 1 || der.readSmallInt(der.expect(v[0], der.Tag.INTEGER, 'version')) !== 0) fail('unsupported OCSPRequest version');
    if (der.content(v[0]).length !== 1) fail('non-minimal version');
    i++;
  }
  let requestorName: Buffer | undefined;
  if (fields[i]?.tag === 0xa1) {
    const n = der.children(fields[i], 1);
    if (n.length !== 1 || (n[0].tag & 0xc0) !== 0x80) fail('bad requestorName');
    requestorName = der.raw(n[0]);
    i++;
  }
  const list = der.expect(fields[i], der.Tag.SEQUENCE, 'requestList');
  i++;
  let nonce: Buffer | undefined;
  let nonceValue: Buffer | undefined;
  if (fields[i]?.tag === 0xa2) {
    const w = der.children(fields[i], 1);
    if (w.length !== 1) fail('bad requestExtensions');
    for (const ext of parseExtensions(w[0])) {
      if (ext.oid === OID.ocspNonce) {
        // RFC 8954: extnValue holds the DER of Nonce ::= OCTET STRING (SIZE(1..32)).
        const inner = der.expect(der.readTop(ext.value), der.Tag.OCTET_STRING, 'Nonce OCTET STRING');
        const n = der.content(inner);
        if (n.length < 1) fail('empty nonce');
        if (n.length > maxNonce) fail(`nonce longer than ${maxNonce} octets`);
        nonce = ext.value;
        nonceValue = n;
      } else if (ext.critical) {
        fail(`unsupported critical request extension ${ext.oid}`);
      }
    }
    i++;
  }
  if (i !== fields.length) fail('unexpected field in TBSRequest');

  if (list.end === list.contentStart) fail('no CertID in the request');
  let requests: der.Element[];
  try {
    requests = der.children(list, maxCertIds);
  } catch (e) {
    if (e instanceof der.DerError && e.message === 'too many elements') fail(`more than ${maxCertIds} CertIDs`);
    throw e;
  }
  const certIds = requests.map(parseRequest);

  return {
    certIds,
    nonce,
    nonceValue,
    signed: signature !== undefined,
    signature,
    requestorName,
    tbsRequest: der.raw(tbs),
  };
}

function parseSignature(wrapper: der.Element): OcspRequestSignature {
  const w = der.children(wrapper, 1);
  if (w.length !== 1) fail('bad optionalSignature');
  const s = der.children(der.expect(w[0], der.Tag.SEQUENCE, 'Signature'), 3);
  const alg = der.expect(s[0], der.Tag.SEQUENCE, 'signatureAlgorithm');
  readAlgorithmIdentifier(alg);
  const bits = der.expect(s[1], der.Tag.BIT_STRING, 'signature BIT STRING');
  const b = der.content(bits);
  if (b.length < 2 || b[0] !== 0) fail('bad signature BIT STRING');
  const certs: Buffer[] = [];
  if (s.length === 3) {
    const c = der.children(der.expect(s[2], 0xa0, 'certs [0]'), 1);
    if (c.length !== 1) fail('bad certs');
    for (const cert of der.children(der.expect(c[0], der.Tag.SEQUENCE, 'certs SEQUENCE'), 16)) {
      certs.push(der.raw(der.expect(cert, der.Tag.SEQUENCE, 'Certificate')));
    }
  }
  return { algorithm: der.raw(alg), value: b.subarray(1), certs };
}

/** AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY OPTIONAL }; returns the OID and parameters. */
function readAlgorithmIdentifier(e: der.Element): { oid: string; params?: der.Element } {
  const a = der.children(e, 2);
  if (a.length < 1) fail('empty AlgorithmIdentifier');
  return { oid: der.readOid(a[0]), params: a[1] };
}

function parseRequest(req: der.Element): CertIdRequest {
  const r = der.children(der.expect(req, der.Tag.SEQUENCE, 'Request'), 2);
  const certId = der.expect(r[0], der.Tag.SEQUENCE, 'CertID');
  if (r.length === 2) {
    // singleRequestExtensions: none are supported (the service locator is for
    // proxies); an unknown critical one makes the request unanswerable.
    const w = der.children(der.expect(r[1], 0xa0, 'singleRequestExtensions [0]'), 1);
    if (w.length !== 1) fail('bad singleRequestExtensions');
    for (const ext of parseExtensions(w[0])) {
      if (ext.critical) fail(`unsupported critical single request extension ${ext.oid}`);
    }
  }
  const c = der.children(certId, 4);
  if (c.length !== 4) fail('CertID must have four fields');
  const alg = readAlgorithmIdentifier(der.expect(c[0], der.Tag.SEQUENCE, 'hashAlgorithm'));
  // the parameters of the SHA family are absent or NULL (RFC 5754 2)
  if (alg.params && !(alg.params.tag === der.Tag.NULL && alg.params.end === alg.params.contentStart)) {
    fail('unexpected hash algorithm parameters');
  }
  const hash = HASH_BY_OID.get(alg.oid);
  const issuerNameHash = der.content(der.expect(c[1], der.Tag.OCTET_STRING, 'issuerNameHash'));
  const issuerKeyHash = der.content(der.expect(c[2], der.Tag.OCTET_STRING, 'issuerKeyHash'));
  if (hash) {
    const len = OCSP_HASH_LENGTH[hash];
    if (issuerNameHash.length !== len || issuerKeyHash.length !== len) fail(`${hash} CertID with a hash of the wrong length`);
  } else if (issuerNameHash.length === 0 || issuerKeyHash.length === 0 || issuerNameHash.length > 64 || issuerKeyHash.length > 64) {
    fail('bad CertID hash length');
  }
  const serialEl = der.expect(c[3], der.Tag.INTEGER, 'serialNumber');
  const sb = der.content(serialEl);
  if (sb.length > 1 && ((sb[0] === 0 && (sb[1] & 0x80) === 0) || (sb[0] === 0xff && (sb[1] & 0x80) !== 0))) {
    fail('non-minimal serialNumber');
  }
  const serialNumber = der.readUnsignedInt(serialEl);
  return { hash, hashAlgorithm: alg.oid, issuerNameHash, issuerKeyHash, serialNumber, raw: der.raw(certId) };
}

interface ParsedExtension {
  oid: string;
  critical: boolean;
  /** content of extnValue */
  value: Buffer;
}

/** Extensions ::= SEQUENCE SIZE (1..MAX) OF Extension; rejects duplicates. */
function parseExtensions(e: der.Element): ParsedExtension[] {
  der.expect(e, der.Tag.SEQUENCE, 'Extensions');
  const list = der.children(e, MAX_EXTENSIONS);
  if (list.length === 0) fail('empty Extensions');
  const seen = new Set<string>();
  return list.map((x) => {
    const f = der.children(der.expect(x, der.Tag.SEQUENCE, 'Extension'), 3);
    const oid = der.readOid(f[0] ?? fail('empty Extension'));
    if (seen.has(oid)) fail(`duplicate extension ${oid}`);
    seen.add(oid);
    let critical = false;
    let k = 1;
    if (f.length === 3) {
      const b = der.content(der.expect(f[1], der.Tag.BOOLEAN, 'critical'));
      // DER: TRUE is FF; an explicit FALSE (the DEFAULT) is tolerated
      if (b.length !== 1 || (b[0] !== 0 && b[0] !== 0xff)) fail('bad BOOLEAN');
      critical = b[0] === 0xff;
      k = 2;
    }
    const value = der.content(der.expect(f[k], der.Tag.OCTET_STRING, 'extnValue'));
    return { oid, critical, value };
  });
}
