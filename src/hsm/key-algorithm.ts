import * as der from '../asn1/der';
import { OID } from '../asn1/oids';

/** Key types a CA key can have (contract section 2, HSMCA_KEY_ALGORITHM). */
export const KEY_ALGORITHMS = ['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'rsa-3072', 'rsa-4096'] as const;
export type KeyAlgorithm = (typeof KEY_ALGORITHMS)[number];

export function isKeyAlgorithm(s: string): s is KeyAlgorithm {
  return (KEY_ALGORITHMS as readonly string[]).includes(s);
}

export interface KeyAlgorithmInfo {
  kind: 'ec' | 'rsa';
  /** node:crypto curve name or RSA modulus length */
  namedCurve?: 'P-256' | 'P-384';
  modulusLength?: number;
  /** digest the X.509 signature uses (contract section 4) */
  hash: 'sha256' | 'sha384';
  /** DER AlgorithmIdentifier of the signature, as written into certificates, CRLs and OCSP responses */
  signatureAlgorithm: Buffer;
  signatureOid: string;
}

const ecdsaSha256 = der.seq(der.oid(OID.ecdsaWithSHA256));
const ecdsaSha384 = der.seq(der.oid(OID.ecdsaWithSHA384));
// RFC 4055 section 5: the parameters of sha256WithRSAEncryption are NULL.
const rsaSha256 = der.seq(der.oid(OID.sha256WithRSAEncryption), der.nul());

export function keyAlgorithmInfo(alg: KeyAlgorithm): KeyAlgorithmInfo {
  switch (alg) {
    case 'ecdsa-p256':
      return { kind: 'ec', namedCurve: 'P-256', hash: 'sha256', signatureAlgorithm: ecdsaSha256, signatureOid: OID.ecdsaWithSHA256 };
    case 'ecdsa-p384':
      return { kind: 'ec', namedCurve: 'P-384', hash: 'sha384', signatureAlgorithm: ecdsaSha384, signatureOid: OID.ecdsaWithSHA384 };
    case 'rsa-2048':
    case 'rsa-3072':
    case 'rsa-4096':
      return {
        kind: 'rsa',
        modulusLength: Number(alg.slice(4)),
        hash: 'sha256',
        signatureAlgorithm: rsaSha256,
        signatureOid: OID.sha256WithRSAEncryption,
      };
  }
}

/**
 * ECDSA signatures come out of WebCrypto and PKCS#11 as r||s; X.509, CRLs and
 * OCSP carry them as the DER ECDSA-Sig-Value SEQUENCE { r INTEGER, s INTEGER }
 * (RFC 5480 section 2.2 / RFC 3279 section 2.2.3).
 */
export function ecdsaRawToDer(rawSig: Buffer): Buffer {
  const half = rawSig.length / 2;
  return der.seq(der.int(rawSig.subarray(0, half)), der.int(rawSig.subarray(half)));
}
