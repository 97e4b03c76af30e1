/**
 * RFC 6960 OCSPResponse / BasicOCSPResponse builder, written directly as DER.
 *
 *   OCSPResponse ::= SEQUENCE {
 *      responseStatus         OCSPResponseStatus,
 *      responseBytes          [0] EXPLICIT ResponseBytes OPTIONAL }
 *   ResponseBytes ::= SEQUENCE { responseType OBJECT IDENTIFIER, response OCTET STRING }
 *   BasicOCSPResponse ::= SEQUENCE {
 *      tbsResponseData      ResponseData,
 *      signatureAlgorithm   AlgorithmIdentifier,
 *      signature            BIT STRING,
 *      certs            [0] EXPLICIT SEQUENCE OF Certificate OPTIONAL }
 *   ResponseData ::= SEQUENCE {
 *      version              [0] EXPLICIT Version DEFAULT v1,    -- omitted (DER)
 *      responderID              ResponderID,                     -- byKey [2] EXPLICIT
 *      producedAt               GeneralizedTime,
 *      responses                SEQUENCE OF SingleResponse,
 *      responseExtensions   [1] EXPLICIT Extensions OPTIONAL }
 *   SingleResponse ::= SEQUENCE {
 *      certID                       CertID,
 *      certStatus                   CertStatus,
 *      thisUpdate                   GeneralizedTime,
 *      nextUpdate         [0]       EXPLICIT GeneralizedTime OPTIONAL,
 *      singleExtensions   [1]       EXPLICIT Extensions OPTIONAL }
 *   CertStatus ::= CHOICE {
 *      good        [0]     IMPLICIT NULL,
 *      revoked     [1]     IMPLICIT RevokedInfo,
 *      unknown     [2]     IMPLICIT UnknownInfo }
 *   RevokedInfo ::= SEQUENCE {
 *      revocationTime              GeneralizedTime,
 *      revocationReason    [0]     EXPLICIT CRLReason OPTIONAL }
 */
import { createHash } from 'node:crypto';
import * as der from '../asn1/der';
import { OID } from '../asn1/oids';
import { spkiKeyBits } from '../ca/certificate';
import type { Signer } from '../hsm/hsm';
import { keyAlgorithmInfo } from '../hsm/key-algorithm';
import { OCSP_HASH_OID, OcspHash, CertIdRequest } from './request';

export type CertStatus =
  | { kind: 'good' }
  | {
      kind: 'revoked';
      revokedAt: Date;
      /**
       * CRLReason code. Omitted from the response when undefined or
       * unspecified (0), as for CRL entries (RFC 5280 5.3.1; CA/B Forum BR 7.3).
       * removeFromCRL (8) and the unused value 7 are refused.
       */
      reason?: number;
    }
  | { kind: 'unknown' };

export interface SingleResponseInput {
  /** raw CertID DER, as received in the request (CertIdRequest.raw) or from certIdFor */
  certId: Buffer;
  status: CertStatus;
  thisUpdate: Date;
  nextUpdate: Date;
}

/** CRLReason values allowed in an OCSP response (RFC 5280 5.3.1 minus unused(7) and removeFromCRL(8)). */
const OCSP_REASONS = new Set([1, 2, 3, 4, 5, 6, 9, 10]);

const GOOD = Buffer.from([0x80, 0x00]);
const UNKNOWN = Buffer.from([0x82, 0x00]);

function checkDate(d: Date, what: string): void {
  if (!(d instanceof Date) || Number.isNaN(d.getTime())) throw new TypeError(`${what} is not a valid Date`);
}

/** DER SingleResponse for one certificate; cacheable per certificate until thisUpdate moves on. */
export function encodeSingleResponse(s: SingleResponseInput): Buffer {
  const certId = s.certId;
  if (!Buffer.isBuffer(certId) || der.readTop(certId).tag !== der.Tag.SEQUENCE) throw new TypeError('certId must be a DER CertID');
  checkDate(s.thisUpdate, 'thisUpdate');
  checkDate(s.nextUpdate, 'nextUpdate');
  let status: Buffer;
  switch (s.status.kind) {
    case 'good':
      status = GOOD;
      break;
    case 'unknown':
      status = UNKNOWN;
      break;
    case 'revoked': {
      checkDate(s.status.revokedAt, 'revokedAt');
      const reason = s.status.reason;
      const time = der.generalizedTime(s.status.revokedAt);
      if (reason === undefined || reason === 0) {
        status = der.tlv(0xa1, time);
      } else {
        if (!OCSP_REASONS.has(reason)) throw new RangeError(`CRLReason ${reason} cannot be used in an OCSP response`);
        status = der.tlv(0xa1, time, der.ctx(0, der.enumerated(reason)));
      }
      break;
    }
    default:
      throw new TypeError('unknown certificate status');
  }
  return der.seq(certId, status, der.generalizedTime(s.thisUpdate), der.ctx(0, der.generalizedTime(s.nextUpdate)));
}

export interface ResponderIdentity {
  signer: Signer;
  /** the delegated OCSP signing certificate DER, included in certs */
  certificate: Buffer;
  /** further certificates to include after `certificate` (normally none) */
  extraCerts?: Buffer[];
}

/** responderID byKey ([2] EXPLICIT KeyHash), cached per public key buffer */
const responderIdCache = new WeakMap<Buffer, Buffer>();

function responderIdByKey(publicKey: Buffer): Buffer {
  let id = responderIdCache.get(publicKey);
  if (!id) {
    // RFC 6960 4.2.1: KeyHash = SHA-1 of the subjectPublicKey BIT STRING value
    const keyHash = createHash('sha1').update(spkiKeyBits(publicKey)).digest();
    id = der.ctx(2, der.octets(keyHash));
    responderIdCache.set(publicKey, id);
  }
  return id;
}

function isOctetStringTlv(b: Buffer): boolean {
  try {
    return Buffer.isBuffer(b) && der.readTop(b).tag === der.Tag.OCTET_STRING;
  } catch {
    return false;
  }
}

const BASIC_OID = der.oid(OID.ocspBasic);
const NONCE_OID = der.oid(OID.ocspNonce);
const SUCCESSFUL = der.enumerated(0);

/**
 * Signs and returns a full OCSPResponse (successful, id-pkix-ocsp-basic).
 *
 * `nonce` is the extnValue content to echo, exactly as OcspRequestInfo.nonce
 * gives it: the DER `Nonce ::= OCTET STRING` TLV (04 len octets). It is written
 * back unchanged as the response's id-pkix-ocsp-nonce extnValue (non-critical).
 */
export async function buildOcspResponse(opts: {
  responder: ResponderIdentity;
  producedAt: Date;
  singleResponses: Buffer[];
  nonce?: Buffer;
}): Promise<Buffer> {
  const { responder, producedAt, singleResponses, nonce } = opts;
  checkDate(producedAt, 'producedAt');
  if (singleResponses.length === 0) throw new RangeError('an OCSP response needs at least one SingleResponse');
  const signer = responder.signer;
  const sigAlg = keyAlgorithmInfo(signer.algorithm).signatureAlgorithm;

  const parts: Buffer[] = [responderIdByKey(signer.publicKey), der.generalizedTime(producedAt), der.seq(...singleResponses)];
  if (nonce !== undefined) {
    if (!isOctetStringTlv(nonce)) throw new TypeError('nonce must be the DER OCTET STRING from the request extnValue (OcspRequestInfo.nonce)');
    parts.push(der.ctx(1, der.seq(der.seq(NONCE_OID, der.octets(nonce)))));
  }
  const tbs = der.seq(...parts);
  const signature = await signer.sign(tbs);
  const certs = der.ctx(0, der.seq(responder.certificate, ...(responder.extraCerts ?? [])));
  const basic = der.seq(tbs, sigAlg, der.bits(signature), certs);
  return der.seq(SUCCESSFUL, der.ctx(0, der.seq(BASIC_OID, der.octets(basic))));
}

export type OcspErrorStatus = 'malformedRequest' | 'internalError' | 'tryLater' | 'sigRequired' | 'unauthorized';

const ERROR_CODES: Record<OcspErrorStatus, number> = {
  malformedRequest: 1,
  internalError: 2,
  tryLater: 3,
  // 4 is not used
  sigRequired: 5,
  unauthorized: 6,
};

const ERROR_RESPONSES = new Map<OcspErrorStatus, Buffer>(
  (Object.keys(ERROR_CODES) as OcspErrorStatus[]).map((s) => [s, Buffer.from([0x30, 0x03, 0x0a, 0x01, ERROR_CODES[s]])]),
);

/** An unsigned OCSPResponse with only a responseStatus (RFC 6960 4.2.1): constant bytes, a fresh copy per call. */
export function ocspErrorResponse(status: OcspErrorStatus): Buffer {
  const r = ERROR_RESPONSES.get(status);
  if (!r) throw new RangeError(`not an OCSP error status: ${String(status)}`);
  return Buffer.from(r);
}

export type IssuerHashes = Record<OcspHash, { nameHash: Buffer; keyHash: Buffer }>;

/**
 * The CertID issuerNameHash / issuerKeyHash of an issuer for every supported
 * hash: the hash of the issuer's DER subject Name, and of the value of its
 * subjectPublicKey BIT STRING (RFC 6960 4.1.1). Compute once per issuer.
 */
export function issuerHashes(issuerNameDer: Buffer, issuerSpkiDer: Buffer): IssuerHashes {
  der.expect(der.readTop(issuerNameDer), der.Tag.SEQUENCE, 'issuer Name');
  const keyBits = spkiKeyBits(issuerSpkiDer);
  const out = {} as IssuerHashes;
  for (const h of Object.keys(OCSP_HASH_OID) as OcspHash[]) {
    out[h] = {
      nameHash: createHash(h).update(issuerNameDer).digest(),
      keyHash: createHash(h).update(keyBits).digest(),
    };
  }
  return out;
}

/** True when a requested CertID names the issuer whose hashes are given. */
export function certIdMatchesIssuer(certId: CertIdRequest, hashes: IssuerHashes): boolean {
  if (!certId.hash) return false;
  const h = hashes[certId.hash];
  return h.nameHash.equals(certId.issuerNameHash) && h.keyHash.equals(certId.issuerKeyHash);
}

/** A DER CertID for `serial` (unsigned big-endian) under the given issuer, hash parameters NULL as OpenSSL writes them. */
export function certIdFor(hash: OcspHash, issuerNameDer: Buffer, issuerSpkiDer: Buffer, serial: Buffer): Buffer {
  const oid = OCSP_HASH_OID[hash];
  if (!oid) throw new RangeError(`unsupported CertID hash ${String(hash)}`);
  if (serial.length === 0) throw new RangeError('empty serial number');
  der.expect(der.readTop(issuerNameDer), der.Tag.SEQUENCE, 'issuer Name');
  const nameHash = createHash(hash).update(issuerNameDer).digest();
  const keyHash = createHash(hash).update(spkiKeyBits(issuerSpkiDer)).digest();
  return der.seq(der.seq(der.oid(oid), der.nul()), der.octets(nameHash), der.octets(keyHash), der.int(serial));
}
