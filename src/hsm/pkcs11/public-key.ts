import * as pkcs11js from 'pkcs11js';
import * as der from '../../asn1/der';
import { OID } from '../../asn1/oids';
import { HsmError } from '../hsm';
import { KeyAlgorithm, isKeyAlgorithm } from '../key-algorithm';
import { getAttrs } from './attributes';
import { Handle, PKCS11 } from './module-registry';

/** Public keys: reading a key object's public half as a SubjectPublicKeyInfo, and the curves hsmca uses. */

export const EC_PARAMS: Record<'P-256' | 'P-384', Buffer> = {
  'P-256': der.oid(OID.prime256v1),
  'P-384': der.oid(OID.secp384r1),
};

export interface PublicParts {
  kind: 'ec' | 'rsa';
  algorithm?: KeyAlgorithm;
  spki?: Buffer;
}

function curveOf(ecParams: Buffer): 'P-256' | 'P-384' | undefined {
  if (ecParams.equals(EC_PARAMS['P-256'])) return 'P-256';
  if (ecParams.equals(EC_PARAMS['P-384'])) return 'P-384';
  return undefined;
}

/** CKA_EC_POINT is a DER OCTET STRING around the point; some modules return the bare point. */
export function ecPoint(value: Buffer, curve: 'P-256' | 'P-384'): Buffer {
  const pointLen = curve === 'P-256' ? 65 : 97;
  if (value.length === pointLen && value[0] === 0x04) return value;
  try {
    const e = der.readTop(value);
    const c = der.content(e);
    if (e.tag === der.Tag.OCTET_STRING && c.length === pointLen && c[0] === 0x04) return Buffer.from(c);
  } catch {
    /* fall through */
  }
  throw new HsmError('hsmError', 'the token returned an EC public point hsmca cannot read (not an uncompressed point)');
}

export function ecSpki(curve: 'P-256' | 'P-384', point: Buffer): Buffer {
  const curveOid = curve === 'P-256' ? OID.prime256v1 : OID.secp384r1;
  return der.seq(der.seq(der.oid(OID.ecPublicKey), der.oid(curveOid)), der.bits(point));
}

export function rsaSpki(modulus: Buffer, exponent: Buffer): Buffer {
  return der.seq(der.seq(der.oid(OID.rsaEncryption), der.nul()), der.bits(der.seq(der.int(modulus), der.int(exponent))));
}

function rsaBits(modulus: Buffer): number {
  let i = 0;
  while (i < modulus.length && modulus[i] === 0) i++;
  if (i === modulus.length) return 0;
  return (modulus.length - i) * 8 - Math.clz32(modulus[i]) + 24;
}

function rsaAlgorithm(modulus: Buffer): KeyAlgorithm | undefined {
  const a = `rsa-${rsaBits(modulus)}`;
  return isKeyAlgorithm(a) ? a : undefined;
}

/** The public half of a key object (public or private; RSA private keys carry modulus and exponent). */
export function readPublic(p11: PKCS11, s: Handle, obj: Handle, keyType: number, isPublicObject: boolean): PublicParts {
  if (keyType === pkcs11js.CKK_EC) {
    if (!isPublicObject) {
      const params = getAttrs(p11, s, obj, [pkcs11js.CKA_EC_PARAMS]).get(pkcs11js.CKA_EC_PARAMS)!;
      const curve = curveOf(params);
      return { kind: 'ec', algorithm: curve === 'P-256' ? 'ecdsa-p256' : curve === 'P-384' ? 'ecdsa-p384' : undefined };
    }
    const a = getAttrs(p11, s, obj, [pkcs11js.CKA_EC_PARAMS, pkcs11js.CKA_EC_POINT]);
    const curve = curveOf(a.get(pkcs11js.CKA_EC_PARAMS)!);
    if (!curve) return { kind: 'ec' };
    return {
      kind: 'ec',
      algorithm: curve === 'P-256' ? 'ecdsa-p256' : 'ecdsa-p384',
      spki: ecSpki(curve, ecPoint(a.get(pkcs11js.CKA_EC_POINT)!, curve)),
    };
  }
  const a = getAttrs(p11, s, obj, [pkcs11js.CKA_MODULUS, pkcs11js.CKA_PUBLIC_EXPONENT]);
  const modulus = a.get(pkcs11js.CKA_MODULUS)!;
  return { kind: 'rsa', algorithm: rsaAlgorithm(modulus), spki: rsaSpki(modulus, a.get(pkcs11js.CKA_PUBLIC_EXPONENT)!) };
}
