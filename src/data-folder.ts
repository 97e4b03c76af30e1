import * as fs from 'node:fs';
import { StartupError } from './errors';

/**
 * The data folder holds the embedded database, the software HSM's key store
 * and the secrets made at first start (the HSM PIN, the first admin token):
 * it is created 0700, and one that other users can read is refused.
 */
export function prepareDataDir(dir: string): void {
  if (!fs.existsSync(dir)) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    return;
  }
  const st = fs.statSync(dir);
  if (!st.isDirectory()) throw new StartupError(`HSMCA_DATA_DIR: ${dir} is not a folder`);
  if (st.mode & 0o007) {
    throw new StartupError(`HSMCA_DATA_DIR: ${dir} is accessible to other users (mode ${(st.mode & 0o777).toString(8)}); run chmod 700 on it`);
  }
}

/** Writes a new secret file 0600; an existing file is never overwritten. */
export function writeSecret(file: string, content: string): void {
  fs.writeFileSync(file, content + '\n', { mode: 0o600, flag: 'wx' });
}

/** A saved secret, or undefined when there is none; a file that others can read is refused, naming `setting`. */
export function readSecret(file: string, setting: string): string | undefined {
  if (!fs.existsSync(file)) return undefined;
  const st = fs.statSync(file);
  if (st.mode & 0o077) throw new StartupError(`${setting}: ${file} is readable by other users (mode ${(st.mode & 0o777).toString(8)}); run chmod 600 on it`);
  return fs.readFileSync(file, 'utf8').trim();
}
