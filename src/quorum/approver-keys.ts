import { createHash, createPrivateKey, createPublicKey, KeyObject, sign as cryptoSign, verify as cryptoVerify } from 'node:crypto';
import { CaError } from '../errors';

/** The key types an approver may hold: ECDSA P-256 (signatures DER, SHA-256) or Ed25519. */
export type ApproverAlgorithm = 'ecdsa-p256' | 'ed25519';

export interface ApproverPublicKey {
  algorithm: ApproverAlgorithm;
  /** DER SubjectPublicKeyInfo */
  spki: Buffer;
  /** SHA-256 of the SPKI, hex */
  fingerprint: string;
}

function algorithmOf(key: KeyObject): ApproverAlgorithm | undefined {
  if (key.asymmetricKeyType === 'ed25519') return 'ed25519';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ecdsa-p256';
  return undefined;
}

/**
 * An approver's public key from PEM (SPKI "PUBLIC KEY") or DER. A private
 * key is refused: approvers keep theirs; only the public half is registered.
 */
export function parseApproverPublicKey(text: Buffer | string): ApproverPublicKey {
  const raw = Buffer.isBuffer(text) ? text : Buffer.from(text, 'utf8');
  if (/PRIVATE KEY-----/.test(raw.toString('latin1'))) {
    throw new CaError('badRequest', 'invalidApproverKey', 'this is a private key: register the approver\'s public key (openssl pkey -in KEY -pubout)');
  }
  let key: KeyObject;
  try {
    const pem = raw.toString('latin1').includes('-----BEGIN');
    key = pem ? createPublicKey({ key: raw.toString('utf8'), format: 'pem' }) : createPublicKey({ key: raw, format: 'der', type: 'spki' });
  } catch {
    throw new CaError('badRequest', 'invalidApproverKey', 'the approver key is not a PEM or DER public key');
  }
  const algorithm = algorithmOf(key);
  if (!algorithm) throw new CaError('badRequest', 'invalidApproverKey', 'an approver key must be ECDSA P-256 or Ed25519');
  const spki = key.export({ format: 'der', type: 'spki' });
  return { algorithm, spki, fingerprint: createHash('sha256').update(spki).digest('hex') };
}

/**
 * What an approver signs for request `id`: a fixed prefix, the id, and the
 * request's canonical description (which names the id too). A signature is
 * bound to one request and cannot be replayed to another.
 */
export function approvalMessage(id: string, description: string): Buffer {
  return Buffer.from(`hsmca quorum approval v1\n${id}\n${description}`, 'utf8');
}

/** ECDSA (DER signature over SHA-256) or Ed25519; false for anything that does not verify. */
export function verifyApproval(pub: { algorithm: ApproverAlgorithm; spki: Buffer }, message: Buffer, signature: Buffer): boolean {
  try {
    const key = createPublicKey({ key: pub.spki, format: 'der', type: 'spki' });
    return cryptoVerify(pub.algorithm === 'ed25519' ? null : 'sha256', message, key, signature);
  } catch {
    return false;
  }
}

/** The approver's side (`hsmca quorum approve --key FILE`): signs with a PEM private key file's contents. */
export function signApproval(privatePem: string, message: Buffer): { signature: Buffer; publicKey: ApproverPublicKey } {
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: privatePem, format: 'pem' });
  } catch {
    throw new CaError('badRequest', 'invalidApproverKey', 'the --key file is not a PEM private key (an encrypted key must be decrypted first)');
  }
  const algorithm = algorithmOf(key);
  if (!algorithm) throw new CaError('badRequest', 'invalidApproverKey', 'an approver key must be ECDSA P-256 or Ed25519');
  const signature = cryptoSign(algorithm === 'ed25519' ? null : 'sha256', message, key);
  const spki = createPublicKey(key).export({ format: 'der', type: 'spki' });
  return { signature, publicKey: { algorithm, spki, fingerprint: createHash('sha256').update(spki).digest('hex') } };
}
