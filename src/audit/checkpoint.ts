import { createPublicKey, KeyObject, verify as cryptoVerify } from 'node:crypto';
import { keyAlgorithmInfo } from '../hsm/key-algorithm';
import { encInt, encStr } from './chain';

/**
 * Checkpoints: what an HSM key signs over the chain's head, and the check of
 * such a signature (audit-log.ts describes what checkpoints protect).
 */

const CHECKPOINT_TAG_V1 = 'hsmca-audit-checkpoint/v1';
const CHECKPOINT_TAG_V2 = 'hsmca-audit-checkpoint/v2';

/** The payload versions: v1 signed (seq, head hash); v2 also the checkpoint's time, so that its age can be trusted. */
export type CheckpointVersion = 1 | 2;

/** The bytes a v1 checkpoint signature covers (rows written before v2; still verified). */
export function checkpointPayload(seq: number, headHash: string): Buffer {
  return Buffer.concat([encStr(CHECKPOINT_TAG_V1), encInt(seq), encStr(headHash)]);
}

/** The bytes a v2 checkpoint signature covers: tag, seq, head hash and the time (epoch ms), each length-prefixed or fixed-size. */
export function checkpointPayloadV2(seq: number, headHash: string, at: number): Buffer {
  return Buffer.concat([encStr(CHECKPOINT_TAG_V2), encInt(seq), encStr(headHash), encInt(at)]);
}

/** The payload of a checkpoint of either version; undefined for a version this code does not know. */
export function checkpointPayloadOf(c: { version: number; seq: number; headHash: string; at: number }): Buffer | undefined {
  if (c.version === 1) return checkpointPayload(c.seq, c.headHash);
  if (c.version === 2) return checkpointPayloadV2(c.seq, c.headHash, c.at);
  return undefined;
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
