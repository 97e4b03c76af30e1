import * as der from '../../asn1/der';
import { OID } from '../../asn1/oids';
import { CaError } from '../../errors';
import { EcCurveName, EcWeakness, ecPointWeakness } from './ec';
import { KeyRefusal } from './key-refusal';
import { RSA_MAX_BITS, RSA_MIN_BITS, RsaWeakness, rsaWeakness } from './rsa';
import { spkiSha256 } from './spki-digest';

const NAMED_CURVES: Record<string, EcCurveName> = { [OID.prime256v1]: 'P-256', [OID.secp384r1]: 'P-384' };

const RSA_MESSAGES: Record<RsaWeakness['check'], (w: RsaWeakness) => string> = {
  modulusSize: (w) =>
    w.check === 'modulusSize' && w.tooLarge
      ? `RSA keys must be at most ${RSA_MAX_BITS} bits; this one has ${w.bits}`
      : `RSA keys must be at least ${RSA_MIN_BITS} bits; this one has ${w.check === 'modulusSize' ? w.bits : 0}`,
  exponent: () => 'the RSA public exponent must be odd, at least 65537 and below 2^256',
  smallFactor: () => 'the RSA modulus has a prime factor below 752',
  fermat: () => "the RSA modulus's two primes are too close together: it factors by Fermat's method",
  roca: () => 'the RSA key carries the ROCA fingerprint of Infineon RSALib keys (CVE-2017-15361)',
};

const EC_MESSAGES: Record<EcWeakness, (curve: string) => string> = {
  identity: () => 'the ECDSA public key is the point at infinity',
  pointEncoding: (curve) => `the ECDSA public key is not an encoded point of ${curve}`,
  notOnCurve: (curve) => `the ECDSA public key is not a point on ${curve}`,
};

/**
 * The weak-key checks (Boulder's goodkey) on a SubjectPublicKeyInfo, before
 * anything else reads the key: throws a KeyRefusal (422 weakKey, or
 * unsupportedKey for an RSA key over 8192 bits) naming the check. Keys of
 * other types pass through; the CSR's own key-type rules refuse them.
 * `malformed` makes the error for an RSA or EC key whose structure cannot be
 * read. About 50 µs for a 2048-bit RSA key, a few µs for an EC key.
 */
export function checkKeyQuality(spki: Buffer, malformed: (detail: string) => CaError): void {
  let alg: string;
  let curveOid: string | undefined;
  let point: Buffer;
  try {
    const [algId, bits] = der.children(der.readTop(spki), 2);
    const [algOid, param] = der.children(algId, 2);
    alg = der.readOid(algOid);
    curveOid = alg === OID.ecPublicKey && param?.tag === der.Tag.OID ? der.readOid(param) : undefined;
    point = der.content(der.expect(bits, der.Tag.BIT_STRING, 'subjectPublicKey')).subarray(1);
  } catch {
    throw malformed('its public key cannot be read');
  }
  if (alg === OID.rsaEncryption) {
    let n: bigint, e: bigint;
    try {
      const [nEl, eEl, ...rest] = der.children(der.readTop(point), 3);
      if (rest.length) throw new der.DerError('extra fields');
      n = BigInt('0x' + der.readUnsignedInt(nEl).toString('hex'));
      e = BigInt('0x' + der.readUnsignedInt(eEl).toString('hex'));
    } catch {
      throw malformed('its RSA public key cannot be read');
    }
    const w = rsaWeakness(n, e);
    if (w) {
      const code = w.check === 'modulusSize' && w.tooLarge ? 'unsupportedKey' : 'weakKey';
      throw new KeyRefusal(code, w.check, RSA_MESSAGES[w.check](w), spkiSha256(spki));
    }
    return;
  }
  if (curveOid !== undefined) {
    const curve = NAMED_CURVES[curveOid];
    if (!curve) return;
    const w = ecPointWeakness(curve, point);
    if (w) throw new KeyRefusal('weakKey', w, EC_MESSAGES[w](curve), spkiSha256(spki));
  }
}
