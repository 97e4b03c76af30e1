import { createHash } from 'node:crypto';
import { type Hsm, type HsmHealth, type KeyBackup, type KeyInfo, type Signer, keyBackupOf } from '../hsm/hsm';
import { KeyAlgorithm } from '../hsm/key-algorithm';
import type { AuditLog } from './audit-log';

/** An Hsm that records 'keyGenerated' (label, algorithm, public key SHA-256; never key material) for every key it generates. */
export class KeyAuditingHsm implements Hsm {
  constructor(
    private readonly inner: Hsm,
    private readonly audit: AuditLog,
  ) {}

  get kind() {
    return this.inner.kind;
  }

  async generateKey(label: string, algorithm: KeyAlgorithm): Promise<KeyInfo> {
    const key = await this.inner.generateKey(label, algorithm);
    await this.audit.tryRecord({
      type: 'keyGenerated',
      actor: 'system',
      subject: label,
      details: { algorithm, hsm: this.inner.kind, publicKeySha256: createHash('sha256').update(key.publicKey).digest('hex') },
    });
    return key;
  }

  getKey(label: string): Promise<KeyInfo | undefined> {
    return this.inner.getKey(label);
  }

  listKeys(): Promise<KeyInfo[]> {
    return this.inner.listKeys();
  }

  signer(label: string): Promise<Signer> {
    return this.inner.signer(label);
  }

  health(): Promise<HsmHealth> {
    return this.inner.health();
  }

  /** the inner backend's backup power (keyBackupOf) */
  keyBackup(): KeyBackup | undefined {
    return keyBackupOf(this.inner);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
