import * as path from 'node:path';
import { Config } from '../config';
import { Hsm, HsmError } from './hsm';
import { SoftHsm } from './soft/soft-hsm';

/** Picks and opens the configured backend; options were validated by loadConfig. */
export async function openHsm(config: Pick<Config, 'hsm' | 'dataDir' | 'pkcs11'>, softPin?: string): Promise<Hsm> {
  if (config.hsm === 'pkcs11') {
    throw new HsmError('hsmConfig', 'the PKCS#11 backend is not part of this build yet');
  }
  return SoftHsm.open({ storePath: path.join(config.dataDir, 'soft-hsm.json'), pin: softPin! });
}
