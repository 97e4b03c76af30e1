import type { KeyAlgorithm } from './key-algorithm';

/**
 * The one interface every HSM backend implements, in the spirit of step-ca's
 * KeyManager: keys are generated inside the HSM and are referenced by label;
 * callers get public keys and signers, never private key material.
 */
export interface KeyInfo {
  /** the label the key was generated under (CKA_LABEL on PKCS#11) */
  readonly label: string;
  readonly algorithm: KeyAlgorithm;
  /** DER SubjectPublicKeyInfo of the key */
  readonly publicKey: Buffer;
}

/** What signing code receives: an algorithm, a public key and a sign function. */
export interface Signer extends KeyInfo {
  /**
   * Signs `data` with the key's X.509 signature algorithm (ECDSA with SHA-256 or
   * SHA-384, or RSA PKCS#1 v1.5 with SHA-256) and returns the signature in the
   * form X.509 carries it (DER ECDSA-Sig-Value for ECDSA).
   */
  sign(data: Buffer): Promise<Buffer>;
}

export interface TokenHealth {
  label: string;
  status: 'ok' | 'down';
  error?: string;
}

export interface HsmHealth {
  /** ok: every token answers; degraded: some do; down: none does */
  status: 'ok' | 'degraded' | 'down';
  tokens: TokenHealth[];
}

export interface Hsm {
  readonly kind: 'soft' | 'pkcs11';
  /** Generates a key pair inside the HSM; fails with `keyExists` if the label is taken. */
  generateKey(label: string, algorithm: KeyAlgorithm): Promise<KeyInfo>;
  getKey(label: string): Promise<KeyInfo | undefined>;
  listKeys(): Promise<KeyInfo[]>;
  /** A signer for the key; fails with `keyNotFound` when there is none. */
  signer(label: string): Promise<Signer>;
  health(): Promise<HsmHealth>;
  close(): Promise<void>;
}

export type HsmErrorCode =
  | 'keyExists'
  | 'keyNotFound'
  | 'wrongPin'
  | 'storeTampered'
  | 'hsmUnavailable'
  | 'hsmConfig'
  /** the software HSM's store is read-only (one copy per host of several instances): no new keys */
  | 'readOnly'
  | 'hsmError';

/**
 * Every backend error. Messages name the key label and the operation, never
 * key material, PINs or wrapped blobs.
 */
export class HsmError extends Error {
  constructor(
    readonly code: HsmErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'HsmError';
  }
}

/** A private key as it leaves the HSM for a backup: wrapped inside it, never in the clear. */
export interface WrappedKey {
  label: string;
  algorithm: import('./key-algorithm').KeyAlgorithm;
  /** DER SubjectPublicKeyInfo */
  publicKey: Buffer;
  /** CKA_ID on PKCS#11 (hex), so a restored key is the same object to hsmca */
  id?: string;
  /** the wrapping: AES key wrap with padding (RFC 5649) of the PKCS#8 private key */
  mechanism: 'aes-kwp';
  wrapped: Buffer;
}

/**
 * The optional power to back up and restore keys under a wrapping key
 * (STYLE.md practice 1: extra powers are separate interfaces). The wrapping
 * key is given as bytes: it is Shamir-split for custodians by the backup
 * ceremony (src/backup/); inside the HSM it only wraps and unwraps.
 */
export interface KeyBackup {
  wrapKeys(wrappingKey: Buffer): Promise<WrappedKey[]>;
  /** onto an HSM that holds none of these labels; each key is checked against its public key */
  unwrapKeys(wrappingKey: Buffer, keys: WrappedKey[]): Promise<void>;
}

/** The backup power of an HSM, through the wrappers (metrics, audit) around it. */
export function keyBackupOf(hsm: Hsm): KeyBackup | undefined {
  return (hsm as Partial<{ keyBackup(): KeyBackup | undefined }>).keyBackup?.();
}
