import * as path from 'node:path';
import { Config } from '../config';
import { Hsm } from './hsm';
import { SoftHsm } from './soft/soft-hsm';

/** Picks and opens the configured backend; options were validated by loadConfig. */
export async function openHsm(config: Pick<Config, 'hsm' | 'dataDir' | 'pkcs11'>, softPin?: string): Promise<Hsm> {
  if (config.hsm === 'pkcs11') {
    // Loaded on demand: the software default needs no native PKCS#11 binding.
    const { Pkcs11Hsm } = await import('./pkcs11/pkcs11-hsm');
    const p = config.pkcs11!;
    // 16 sessions per token: measured on SoftHSM2, 8 leave signing threads waiting (docs/performance.md).
    return Pkcs11Hsm.open({ module: p.module, tokenLabels: p.tokenLabels, pin: p.pin, soPin: p.soPin, cluster: p.cluster, sessionsPerToken: 16 });
  }
  return SoftHsm.open({ storePath: path.join(config.dataDir, 'soft-hsm.json'), pin: softPin! });
}
