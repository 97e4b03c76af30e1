import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Config } from '../config';
import { prepareDataDir, readSecret, writeSecret } from '../data-folder';
import { StartupError } from '../errors';
import { openHsm } from './factory';
import { Hsm, HsmError } from './hsm';

/** The software HSM's PIN: the setting, the saved file, or a new one on first init. */
function softHsmPin(config: Config): string {
  if (config.hsmPin) return config.hsmPin;
  const pinFile = path.join(config.dataDir, 'hsm.pin');
  const saved = readSecret(pinFile, 'HSMCA_HSM_PIN');
  if (saved) return saved;
  if (fs.existsSync(path.join(config.dataDir, 'soft-hsm.json'))) {
    throw new StartupError('HSMCA_HSM_PIN: the software HSM store exists but no PIN is set and no hsm.pin file is in the data folder');
  }
  const pin = randomBytes(24).toString('base64url');
  writeSecret(pinFile, pin);
  return pin;
}

/** The setting a user should look at for an HSM that would not open. */
function settingOf(config: Config, e: HsmError): string {
  if (config.hsm === 'soft') return e.code === 'storeTampered' ? 'HSMCA_DATA_DIR' : 'HSMCA_HSM_PIN';
  if (e.code === 'wrongPin') return 'HSMCA_PKCS11_PIN';
  if (e.code === 'hsmConfig' && /module/i.test(e.message)) return 'HSMCA_PKCS11_MODULE';
  return 'HSMCA_PKCS11_TOKEN_LABEL';
}

/**
 * Opens the configured HSM (the data folder prepared first: the software
 * HSM keeps its store and PIN there); a failure becomes one start-up line
 * naming the setting to look at. Used by the service and the `hsmca hsm`
 * commands (no database, no CA).
 */
export async function openConfiguredHsm(config: Config): Promise<Hsm> {
  prepareDataDir(config.dataDir);
  try {
    return await openHsm(config, config.hsm === 'soft' ? softHsmPin(config) : undefined);
  } catch (e) {
    if (!(e instanceof HsmError)) throw e;
    throw new StartupError(`${settingOf(config, e)}: ${e.message}`);
  }
}
