import { Hsm, HsmHealth, KeyBackup, KeyInfo, Signer, keyBackupOf } from './hsm';
import { KeyAlgorithm } from './key-algorithm';
import { Metrics } from '../metrics';
import { Logger } from '../log';

/**
 * Metrics and audit around every HSM operation (STYLE.md practice 8), as a
 * wrapper around the interface rather than code inside each backend.
 */
export class InstrumentedHsm implements Hsm {
  constructor(
    private readonly inner: Hsm,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {}

  get kind() {
    return this.inner.kind;
  }

  async generateKey(label: string, algorithm: KeyAlgorithm): Promise<KeyInfo> {
    this.log.info('hsm: generating key', { keyLabel: label, algorithm });
    try {
      const k = await this.inner.generateKey(label, algorithm);
      this.log.info('hsm: key generated', { keyLabel: label, algorithm });
      return k;
    } catch (e) {
      this.metrics.hsmErrors.inc({ key: label, op: 'generate' });
      throw e;
    }
  }

  getKey(label: string) {
    return this.inner.getKey(label);
  }

  listKeys() {
    return this.inner.listKeys();
  }

  async signer(label: string): Promise<Signer> {
    const s = await this.inner.signer(label);
    const { metrics, log } = this;
    return {
      label: s.label,
      algorithm: s.algorithm,
      publicKey: s.publicKey,
      async sign(data: Buffer): Promise<Buffer> {
        const t0 = process.hrtime.bigint();
        try {
          const sig = await s.sign(data);
          metrics.hsmOperations.inc({ key: label });
          metrics.hsmDuration.observe(Number(process.hrtime.bigint() - t0) / 1e9);
          return sig;
        } catch (e) {
          metrics.hsmErrors.inc({ key: label, op: 'sign' });
          log.error('hsm: signature failed', { keyLabel: label, error: (e as Error).message });
          throw e;
        }
      },
    };
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
