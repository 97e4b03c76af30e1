import { createHash, createPublicKey } from 'node:crypto';
import * as der from '../../asn1/der';
import { OID } from '../../asn1/oids';
import { decompressPoint } from './ec';

// The AlgorithmIdentifier prefixes of the SPKI forms that are already
// canonical: rsaEncryption with NULL parameters, and ecPublicKey on P-256 or
// P-384 with an uncompressed point.
const RSA_ALG = Buffer.from('300d06092a864886f70d0101010500', 'hex');
// SEQUENCE { SEQUENCE { ecPublicKey, namedCurve }, BIT STRING { 0 unused bits, 04 || x || y } }
const EC_P256_UNCOMPRESSED = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d03010703420004', 'hex');
const EC_P384_UNCOMPRESSED = Buffer.from('3076301006072a8648ce3d020106052b8104002203620004', 'hex');

/** A minimal DER INTEGER that is not negative (X.690 8.3.2). */
function minimalUnsigned(e: der.Element): boolean {
  const c = der.content(e);
  return e.tag === der.Tag.INTEGER && c.length > 0 && (c[0] & 0x80) === 0 && !(c.length > 1 && c[0] === 0 && (c[1] & 0x80) === 0);
}

function isCanonical(spki: Buffer): boolean {
  if (spki.length === 91 && spki.subarray(0, EC_P256_UNCOMPRESSED.length).equals(EC_P256_UNCOMPRESSED)) return true;
  if (spki.length === 120 && spki.subarray(0, EC_P384_UNCOMPRESSED.length).equals(EC_P384_UNCOMPRESSED)) return true;
  try {
    const [alg, bits] = der.children(der.readTop(spki), 2);
    if (!der.raw(alg).equals(RSA_ALG) || bits.tag !== der.Tag.BIT_STRING) return false;
    const [n, e, ...rest] = der.children(der.readTop(der.content(bits).subarray(1)), 3);
    return rest.length === 0 && minimalUnsigned(n) && minimalUnsigned(e);
  } catch {
    return false;
  }
}

/** The canonical DER of an SPKI in another form; undefined for what cannot be read (hashed as given). */
function canonicalForm(spki: Buffer): Buffer | undefined {
  try {
    const [alg, bits] = der.children(der.readTop(spki), 2);
    const [algOid, param] = der.children(alg, 2);
    if (der.readOid(algOid) === OID.ecPublicKey && param?.tag === der.Tag.OID) {
      // Rebuilt here rather than through node:crypto: a key holding the point at infinity imports, and exporting it
      // as JWK aborts the process (node 20).
      const curve = param && der.readOid(param);
      const prefix = curve === OID.prime256v1 ? EC_P256_UNCOMPRESSED : curve === OID.secp384r1 ? EC_P384_UNCOMPRESSED : undefined;
      const point = der.content(bits).subarray(1);
      const full = prefix && decompressPoint(curve === OID.prime256v1 ? 'P-256' : 'P-384', point);
      return full ? Buffer.concat([prefix.subarray(0, prefix.length - 1), full]) : undefined;
    }
    return createPublicKey({ key: spki, format: 'der', type: 'spki' }).export({ format: 'der', type: 'spki' });
  } catch {
    return undefined;
  }
}

/**
 * The SHA-256 (hex) of a public key's SubjectPublicKeyInfo, as Boulder's
 * blocked-keys table keys it (core.KeyDigest): of the canonical DER, so the
 * same key compressed or uncompressed, or RSA with absent or NULL
 * parameters, has one digest. Canonical forms, the usual case, are hashed as
 * they are; others are re-encoded; what cannot be read is hashed as given.
 */
export function spkiSha256(spki: Buffer): string {
  const canonical = isCanonical(spki) ? spki : (canonicalForm(spki) ?? spki);
  return createHash('sha256').update(canonical).digest('hex');
}
