import { createPublicKey, KeyObject, verify as cryptoVerify } from 'node:crypto';
import { keyAlgorithmInfo } from '../hsm/key-algorithm';
import { encInt, encStr } from './chain';

/**
 * Checkpoints: what an HSM key signs over the chain's head, and the check of
 * such a signature (audit-log.ts describes what checkpoints protect).
 */

const CHECKPOINT_TAG = 'hsmca-audit-checkpoint/v1';

/** The bytes a checkpoint signature covers. */
export function checkpointPayload(seq: number, headHash: string): Buffer {
  return Buffer.concat([encStr(CHECKPOINT_TAG), encInt(seq), encStr(headHash)]);
}

function hashOfKey(key: KeyObject): 'sha256' | 'sha384' | undefined {
  if (key.asymmetricKeyType === 'rsa') return keyAlgorithmInfo('rsa-2048').hash;
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') return keyAlgorithmInfo('ecdsa-p256').hash;
    if (curve === 'secp384r1') return keyAlgorithmInfo('ecdsa-p384').hash;
  }
  return undefined;
}

/** ECDSA (DER signature) or RSA PKCS#1 v1.5, with the hash of the key's algorithm. */
export function signatureValid(spki: Buffer, data: Buffer, signature: Buffer): boolean {
  try {
    const key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
    const hash = hashOfKey(key);
    if (!hash) return false;
    return cryptoVerify(hash, data, { key, dsaEncoding: 'der' }, signature);
  } catch {
    return false;
  }
}
