import { createHash, createPublicKey } from 'node:crypto';
import * as der from '../../asn1/der';

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

/**
 * The SHA-256 (hex) of a public key's SubjectPublicKeyInfo, as Boulder's
 * blocked-keys table keys it (core.KeyDigest): of the canonical DER, so the
 * same key compressed or uncompressed, or RSA with absent or NULL
 * parameters, has one digest. Canonical forms, the usual case, are hashed as
 * they are; others are re-encoded through node:crypto; what it cannot read
 * is hashed as given.
 */
export function spkiSha256(spki: Buffer): string {
  let der = spki;
  if (!isCanonical(spki)) {
    try {
      const key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
      // OpenSSL keeps a compressed point compressed when it exports the key; the JWK form has both coordinates.
      const jwk = key.asymmetricKeyType === 'ec' ? key.export({ format: 'jwk' }) : undefined;
      const prefix = jwk?.crv === 'P-256' ? EC_P256_UNCOMPRESSED : jwk?.crv === 'P-384' ? EC_P384_UNCOMPRESSED : undefined;
      der = prefix
        ? Buffer.concat([prefix, Buffer.from(jwk!.x!, 'base64url'), Buffer.from(jwk!.y!, 'base64url')])
        : key.export({ format: 'der', type: 'spki' });
    } catch {
      der = spki;
    }
  }
  return createHash('sha256').update(der).digest('hex');
}
