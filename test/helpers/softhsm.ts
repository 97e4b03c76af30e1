/**
 * SoftHSM2 fixtures for the PKCS#11 tests.
 *
 * Two things about SoftHSM2 inside jest that these helpers take care of:
 *
 * 1. SoftHSM2 reads SOFTHSM2_CONF (with getenv) at C_Initialize, and only then.
 *    After C_Finalize, the next C_Initialize reads it again, so a test file can
 *    switch to its own configuration as long as the library is finalised in
 *    between (the backend finalises when its last instance closes).
 *
 * 2. Inside a jest test file, `process` is a sandbox copy: assigning
 *    process.env.X does NOT reach the real environment that native code reads.
 *    setRealEnv() below also writes the real process.env (reached through
 *    vm.runInThisContext, which runs in the outer context).
 *
 * jest reuses worker processes across test files and the native library stays
 * loaded: the first createSoftHsmTokens() of a test file finalises whatever a
 * previous file may have left initialised, so that this file's configuration is
 * the one read. Use one createSoftHsmTokens() per test file (in beforeAll),
 * creating every token the file needs at once.
 */
import { execFile as execFileCb } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync, mkdirSync, statSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createPublicKey, createVerify, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import * as vm from 'node:vm';
import * as pkcs11js from 'pkcs11js';
import { HsmError, KeyInfo } from '../../src/hsm/hsm';
import { keyAlgorithmInfo } from '../../src/hsm/key-algorithm';

const execFile = promisify(execFileCb);

const MODULE_CANDIDATES = [
  '/usr/lib/softhsm/libsofthsm2.so',
  '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/lib64/pkcs11/libsofthsm2.so',
  '/usr/local/lib/softhsm/libsofthsm2.so',
  '/opt/homebrew/lib/softhsm/libsofthsm2.so',
];

/** The SoftHSM2 module path (HSMCA_TEST_SOFTHSM_MODULE overrides), or undefined. */
export function softHsmModule(): string | undefined {
  const override = process.env.HSMCA_TEST_SOFTHSM_MODULE;
  if (override) return existsSync(override) ? override : undefined;
  return MODULE_CANDIDATES.find((p) => existsSync(p));
}

function onPath(cmd: string): boolean {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    try {
      if (statSync(path.join(dir, cmd)).isFile()) return true;
    } catch {
      /* not here */
    }
  }
  return false;
}

/** SoftHSM2 can be used: the module exists and softhsm2-util is on PATH. */
export function pkcs11Available(): boolean {
  return !!softHsmModule() && onPath('softhsm2-util');
}

export function pkcs11ToolAvailable(): boolean {
  return onPath('pkcs11-tool');
}

/** HSMCA_TEST_REQUIRE names 'pkcs11': a missing SoftHSM2 must fail the run instead of skipping. */
export function pkcs11Required(): boolean {
  return /(^|[\s,;])pkcs11($|[\s,;])/.test(process.env.HSMCA_TEST_REQUIRE ?? '');
}

/**
 * `describe` when SoftHSM2 is available. Otherwise a describe with a single test
 * that warns loudly, or fails when HSMCA_TEST_REQUIRE includes pkcs11.
 */
export function pkcs11Describe(): (name: string, fn: () => void) => void {
  if (pkcs11Available()) return describe;
  return (name: string) =>
    describe(name, () => {
      test('SoftHSM2 is not available', () => {
        const msg =
          `SoftHSM2 not found (module ${MODULE_CANDIDATES[0]} or softhsm2-util on PATH): ` +
          `the PKCS#11 tests "${name}" did NOT run`;
        if (pkcs11Required()) throw new Error(`${msg}, and HSMCA_TEST_REQUIRE includes pkcs11`);
        console.warn(`\n*** ${msg}. Install softhsm2 (apt-get install softhsm2 opensc) to run them. ***\n`);
      });
    });
}

/** Sets an environment variable in the sandbox and in the real process (which native code reads). */
export function setRealEnv(name: string, value: string | undefined): void {
  const targets: NodeJS.ProcessEnv[] = [process.env];
  try {
    const real = vm.runInThisContext('process') as NodeJS.Process;
    if (real && real.env !== process.env) targets.push(real.env);
  } catch {
    /* not in a sandbox */
  }
  for (const env of targets) {
    if (value === undefined) delete env[name];
    else env[name] = value;
  }
}

let finalisedStale = false;

/** Finalises the SoftHSM2 library if something left it initialised (a previous test file in this worker). */
export function finaliseModule(module: string): void {
  const p11 = new pkcs11js.PKCS11();
  p11.load(module);
  try {
    p11.C_Finalize();
  } catch {
    /* CKR_CRYPTOKI_NOT_INITIALIZED: nothing to do */
  }
}

export interface SoftHsmTokens {
  module: string;
  confPath: string;
  dir: string;
  pin: string;
  soPin: string;
  /** environment for child processes (softhsm2-util, pkcs11-tool) */
  env: NodeJS.ProcessEnv;
  /** the folder SoftHSM2 keeps a token's objects in (remove it to make the token fail) */
  tokenDir(label: string): Promise<string>;
  cleanup(): Promise<void>;
}

/**
 * A temporary SoftHSM2 configuration with one initialised token per label.
 * Sets SOFTHSM2_CONF (really: see the file comment) so the next C_Initialize uses it.
 */
export async function createSoftHsmTokens(labels: string[], opts: { pin?: string; soPin?: string } = {}): Promise<SoftHsmTokens> {
  const module = softHsmModule();
  if (!module) throw new Error('SoftHSM2 is not installed');
  if (!finalisedStale) {
    finalisedStale = true;
    finaliseModule(module);
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hsmca-softhsm-'));
  const tokens = path.join(dir, 'tokens');
  mkdirSync(tokens, { mode: 0o700 });
  const confPath = path.join(dir, 'softhsm2.conf');
  writeFileSync(
    confPath,
    [`directories.tokendir = ${tokens}`, 'objectstore.backend = file', 'log.level = ERROR', 'slots.removable = false', ''].join('\n'),
  );
  const pin = opts.pin ?? `user-${randomBytes(6).toString('hex')}`;
  const soPin = opts.soPin ?? `so-${randomBytes(6).toString('hex')}`;
  const previous = process.env.SOFTHSM2_CONF;
  setRealEnv('SOFTHSM2_CONF', confPath);
  const env = { ...process.env, SOFTHSM2_CONF: confPath };
  for (const label of labels) {
    await execFile('softhsm2-util', ['--init-token', '--free', '--label', label, '--pin', pin, '--so-pin', soPin], { env });
  }
  return {
    module,
    confPath,
    dir,
    pin,
    soPin,
    env,
    async tokenDir(label: string): Promise<string> {
      // softhsm2-util --show-slots names each token's label and serial; the token folder ends with the serial
      const { stdout } = await execFile('softhsm2-util', ['--show-slots'], { env });
      let serial: string | undefined;
      let current: { label?: string; serial?: string } = {};
      for (const line of stdout.split('\n')) {
        const m = line.match(/^\s*(Label|Serial number):\s*(.*?)\s*$/);
        if (!m) continue;
        if (m[1] === 'Serial number') current.serial = m[2];
        else current.label = m[2];
        if (current.label !== undefined && current.serial !== undefined) {
          if (current.label === label) serial = current.serial;
          current = {};
        }
      }
      if (!serial) throw new Error(`no SoftHSM2 token labelled ${label}`);
      const s = serial;
      const folder = readdirSync(tokens).find((d) => d.replace(/-/g, '').endsWith(s));
      if (!folder) throw new Error(`no folder for SoftHSM2 token ${label}`);
      return path.join(tokens, folder);
    },
    async cleanup() {
      // a backend left open would keep the old configuration alive for the next file
      finaliseModule(module);
      setRealEnv('SOFTHSM2_CONF', previous);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A raw pkcs11js handle on the module for tests (never finalised by the tests). */
export function rawModule(module: string): pkcs11js.PKCS11 {
  const p11 = new pkcs11js.PKCS11();
  p11.load(module);
  try {
    p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (e) {
    if (!(e instanceof pkcs11js.Pkcs11Error && e.code === pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED)) throw e;
  }
  return p11;
}

export function slotOf(p11: pkcs11js.PKCS11, label: string): Buffer {
  for (const slot of p11.C_GetSlotList(true)) {
    try {
      if (p11.C_GetTokenInfo(slot).label.trim() === label) return slot;
    } catch {
      /* a broken token */
    }
  }
  throw new Error(`no token labelled ${label}`);
}

/** `pkcs11-tool --list-objects` output for a token (a separate process: its own view of the token files). */
export async function pkcs11ToolListObjects(t: SoftHsmTokens, label: string, type?: 'privkey' | 'pubkey' | 'secrkey'): Promise<string> {
  const args = ['--module', t.module, '--login', '--pin', t.pin, '--token-label', label, '--list-objects'];
  if (type) args.push('--type', type);
  const { stdout } = await execFile('pkcs11-tool', args, { env: t.env });
  return stdout;
}

/** Whether `sig` is the key's signature over `data` (checked with node:crypto, not the HSM). */
export function verifyWith(info: KeyInfo, data: Buffer, sig: Buffer): boolean {
  const key = createPublicKey({ key: info.publicKey, format: 'der', type: 'spki' });
  return createVerify(keyAlgorithmInfo(info.algorithm).hash).update(data).verify(key, sig);
}

/** The HsmError `p` rejects with (a test failure when it resolves or rejects with anything else). */
export async function hsmErrorOf(p: Promise<unknown>): Promise<HsmError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(HsmError);
    return e as HsmError;
  }
  throw new Error('expected an HsmError');
}

/** Whatever a caller can see must hold no PIN and no long run of hex or base64 (key bytes, wrapped blobs). */
export function assertNoSecrets(text: string, t: SoftHsmTokens): void {
  expect(text).not.toContain(t.pin);
  expect(text).not.toContain(t.soPin);
  expect(text).not.toMatch(/[0-9a-fA-F]{40,}/);
  expect(text).not.toMatch(/[A-Za-z0-9+/]{40,}={0,2}/);
}
