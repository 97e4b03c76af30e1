import * as pkcs11js from 'pkcs11js';
import { HsmError, KeyInfo } from '../hsm';
import { KeyAlgorithm, keyAlgorithmInfo } from '../key-algorithm';
import { findObjects, getAttrs, ulong } from './attributes';
import { TokenKeyError } from './errors';
import { Handle, PKCS11 } from './module-registry';
import { readPublic } from './public-key';
import type { Token } from './token';

/** CA key objects on a token: what hsmca knows of a key (KeyMeta), finding and checking its objects. */

export interface KeyMeta extends KeyInfo {
  id: Buffer;
  kind: 'ec' | 'rsa';
  hash: 'sha256' | 'sha384';
  mechanism: pkcs11js.Mechanism;
  /** bytes of the raw signature (r||s, or the RSA modulus) */
  sigLen: number;
}

export function keyMeta(label: string, algorithm: KeyAlgorithm, publicKey: Buffer, id: Buffer): KeyMeta {
  const info = keyAlgorithmInfo(algorithm);
  return {
    label,
    algorithm,
    publicKey,
    id,
    kind: info.kind,
    hash: info.hash,
    mechanism: { mechanism: info.kind === 'ec' ? pkcs11js.CKM_ECDSA : pkcs11js.CKM_SHA256_RSA_PKCS },
    sigLen: info.kind === 'ec' ? (info.namedCurve === 'P-256' ? 64 : 96) : info.modulusLength! / 8,
  };
}

export const publicInfo = (k: KeyInfo): KeyInfo => ({ label: k.label, algorithm: k.algorithm, publicKey: k.publicKey });

export function privateKeyTemplate(label: string): pkcs11js.Template {
  return [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
    { type: pkcs11js.CKA_LABEL, value: label },
  ];
}

/**
 * The template of a CA signing key that arrives wrapped (a clone onto another
 * token of the cluster, a key restored from a backup): sensitive, for signing
 * only, and able to leave the token again only wrapped under a trusted key,
 * as a key generated in cluster mode.
 */
export function unwrappedSigningKeyTemplate(kind: 'ec' | 'rsa', label: string, id: Buffer): pkcs11js.Template {
  return [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
    { type: pkcs11js.CKA_KEY_TYPE, value: kind === 'ec' ? pkcs11js.CKK_EC : pkcs11js.CKK_RSA },
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    { type: pkcs11js.CKA_EXTRACTABLE, value: true },
    { type: pkcs11js.CKA_WRAP_WITH_TRUSTED, value: true },
    { type: pkcs11js.CKA_SIGN, value: true },
    { type: pkcs11js.CKA_LABEL, value: label },
    { type: pkcs11js.CKA_ID, value: id },
    ...(kind === 'ec'
      ? [{ type: pkcs11js.CKA_DERIVE, value: false }]
      : [
          { type: pkcs11js.CKA_DECRYPT, value: false },
          { type: pkcs11js.CKA_UNWRAP, value: false },
        ]),
  ];
}

/** Reads a key (private key by label, public key by CKA_ID) in session `s`. */
export function readKey(p11: PKCS11, s: Handle, label: string): KeyMeta | undefined {
  const privs = findObjects(p11, s, privateKeyTemplate(label));
  if (privs.length === 0) return undefined;
  if (privs.length > 1) throw new HsmError('hsmError', `more than one private key is labelled "${label}"`);
  return metaOf(p11, s, privs[0], label);
}

export function metaOf(p11: PKCS11, s: Handle, priv: Handle, label: string): KeyMeta | undefined {
  const a = getAttrs(p11, s, priv, [pkcs11js.CKA_KEY_TYPE, pkcs11js.CKA_ID]);
  const keyType = ulong(a.get(pkcs11js.CKA_KEY_TYPE)!);
  if (keyType !== pkcs11js.CKK_EC && keyType !== pkcs11js.CKK_RSA) return undefined;
  const id = a.get(pkcs11js.CKA_ID) ?? Buffer.alloc(0);
  const pub = findPublic(p11, s, label, id);
  const parts = pub ? readPublic(p11, s, pub, keyType, true) : readPublic(p11, s, priv, keyType, false);
  if (!parts.algorithm || !parts.spki) return undefined;
  return keyMeta(label, parts.algorithm, parts.spki, id);
}

export function findPublic(p11: PKCS11, s: Handle, label: string, id: Buffer): Handle | undefined {
  const t: pkcs11js.Template = [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
    { type: pkcs11js.CKA_LABEL, value: label },
  ];
  if (id.length) t.push({ type: pkcs11js.CKA_ID, value: id });
  return findObjects(p11, s, t)[0];
}

/** The private key handle on token `t`, looked up once and checked to be the cluster's key. */
export function keyHandle(p11: PKCS11, t: Token, s: Handle, meta: KeyMeta): Handle {
  const cached = t.keyHandles.get(meta.label);
  if (cached) return cached;
  const privs = findObjects(p11, s, privateKeyTemplate(meta.label));
  let found: Handle | undefined;
  for (const h of privs) {
    const id = getAttrs(p11, s, h, [pkcs11js.CKA_ID]).get(pkcs11js.CKA_ID) ?? Buffer.alloc(0);
    if (id.equals(meta.id)) found = h;
  }
  if (!found) throw new TokenKeyError(`key "${meta.label}" is not on token "${t.label}"`);
  const here = metaOf(p11, s, found, meta.label);
  if (!here || !here.publicKey.equals(meta.publicKey)) {
    throw new TokenKeyError(`key "${meta.label}" on token "${t.label}" is not the same key as on the other tokens`);
  }
  t.keyHandles.set(meta.label, found);
  return found;
}

export function destroyQuietly(p11: PKCS11, s: Handle, handles: Handle[]): void {
  for (const h of handles) {
    try {
      p11.C_DestroyObject(s, h);
    } catch {
      /* best effort */
    }
  }
}
