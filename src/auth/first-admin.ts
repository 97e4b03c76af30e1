import * as fs from 'node:fs';
import * as path from 'node:path';
import { Config } from '../config';
import { writeSecret } from '../data-folder';
import { TokenStore } from '../storage/token-store';
import { TokenService } from './tokens';

/**
 * At first init (no admin token yet): HSMCA_ADMIN_TOKEN, or a generated token
 * announced once and saved 0600 as admin.token in the data folder.
 */
export async function ensureFirstAdmin(config: Config, tokens: TokenService, store: TokenStore, announce: (line: string) => void): Promise<void> {
  if ((await store.count('admin')) > 0) return;
  if (config.adminToken) {
    await tokens.create({ role: 'admin', name: 'admin', token: config.adminToken, by: 'system' });
    return;
  }
  const { token } = await tokens.create({ role: 'admin', name: 'admin', by: 'system' });
  const file = path.join(config.dataDir, 'admin.token');
  fs.rmSync(file, { force: true });
  writeSecret(file, token);
  announce(`hsmca: generated the first admin token (shown once, also saved 0600 in ${file}):`);
  announce(token);
}
