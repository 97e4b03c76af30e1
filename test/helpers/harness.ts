import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';
import { loadConfig } from '../../src/config';
import { silentLogger } from '../../src/log';
import { RunningService, startService } from '../../src/service';
import { Clock } from '../../src/clock';
import { createSoftHsmTokens, pkcs11Available, SoftHsmTokens } from './softhsm';

/**
 * Test back-ends. SQLite with the software HSM always runs. PostgreSQL runs
 * when HSMCA_TEST_DATABASE_URL is set; HSMCA_TEST_REQUIRE=postgres (as in CI)
 * makes its absence a failure instead of a loud skip.
 */
export interface Backend {
  name: string;
  database: 'sqlite' | 'postgres';
  hsm: 'soft' | 'pkcs11';
}

export const required = (what: string) => (process.env.HSMCA_TEST_REQUIRE ?? '').split(',').map((s) => s.trim()).includes(what);

export function postgresUrl(): string | undefined {
  const url = process.env.HSMCA_TEST_DATABASE_URL;
  if (!url && required('postgres')) throw new Error('HSMCA_TEST_REQUIRE names postgres but HSMCA_TEST_DATABASE_URL is not set');
  return url || undefined;
}

let warned = false;
let warnedPkcs11 = false;
/**
 * SQLite with the software HSM always; PostgreSQL when configured; SoftHSM2
 * through PKCS#11 when installed (HSMCA_TEST_REQUIRE=pkcs11 makes it
 * mandatory). `opts.pkcs11: false` leaves the PKCS#11 run out.
 */
export function backends(opts: { pkcs11?: boolean } = {}): Backend[] {
  const out: Backend[] = [{ name: 'sqlite+soft', database: 'sqlite', hsm: 'soft' }];
  if (postgresUrl()) out.push({ name: 'postgres+soft', database: 'postgres', hsm: 'soft' });
  else if (!warned) {
    warned = true;
    console.warn('\n*** NOTICE: HSMCA_TEST_DATABASE_URL is not set: the PostgreSQL runs of the integration suite are SKIPPED ***\n');
  }
  if (opts.pkcs11 !== false) {
    if (pkcs11Available()) out.push({ name: 'sqlite+pkcs11', database: 'sqlite', hsm: 'pkcs11' });
    else if (required('pkcs11')) throw new Error('HSMCA_TEST_REQUIRE names pkcs11 but SoftHSM2 is not installed');
    else if (!warnedPkcs11) {
      warnedPkcs11 = true;
      console.warn('\n*** NOTICE: SoftHSM2 is not installed: the PKCS#11 runs of the integration suite are SKIPPED ***\n');
    }
  }
  return out;
}

/** A fresh, empty PostgreSQL database for one test CA; dropped by the returned function. */
export async function freshPostgres(): Promise<{ url: string; drop(): Promise<void> }> {
  const base = postgresUrl()!;
  const name = `hsmca_t_${randomBytes(6).toString('hex')}`;
  const admin = new Client({ connectionString: base });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const u = new URL(base);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    drop: async () => {
      const c = new Client({ connectionString: base });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

export function tempDir(prefix = 'hsmca-test-'): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.chmodSync(d, 0o700);
  return d;
}

export interface TestCa {
  url: string;
  /** the HTTPS listener's URL when the test asked for one (HSMCA_HTTPS_PORT) */
  httpsUrl?: string;
  adminToken: string;
  dataDir: string;
  svc: RunningService;
  env: Record<string, string>;
  /** JSON request helper */
  api(method: string, p: string, opts?: { token?: string | null; body?: unknown; rawBody?: string | Buffer; headers?: Record<string, string> }): Promise<{ status: number; body: any; headers: Headers }>;
  stop(): Promise<void>;
}

export async function startTestCa(
  backend: Backend,
  opts: { env?: Record<string, string>; dataDir?: string; clock?: Clock; keepData?: boolean } = {},
): Promise<TestCa> {
  const dataDir = opts.dataDir ?? path.join(tempDir(), 'data');
  const env: Record<string, string> = {
    HSMCA_DATA_DIR: dataDir,
    HSMCA_PORT: '0',
    // HTTPS only where a test asks for it (test/https.test.ts): no port to share, no extra certificate
    HSMCA_HTTPS_PORT: '0',
    HSMCA_LOG_LEVEL: 'silent',
    HSMCA_PUBLIC_URL: 'http://127.0.0.1:1', // replaced below once the port is known
    ...opts.env,
  };
  let pg: { url: string; drop(): Promise<void> } | undefined;
  let tokens: SoftHsmTokens | undefined;
  if (backend.hsm === 'pkcs11' && !env.HSMCA_HSM) {
    tokens = await createSoftHsmTokens(['hsmca-ca']);
    Object.assign(env, { HSMCA_HSM: 'pkcs11', HSMCA_PKCS11_MODULE: tokens.module, HSMCA_PKCS11_TOKEN_LABEL: 'hsmca-ca', HSMCA_PKCS11_PIN: tokens.pin, SOFTHSM2_CONF: tokens.confPath });
  }
  if (backend.database === 'postgres' && !env.HSMCA_DATABASE_URL) {
    pg = await freshPostgres();
    env.HSMCA_DATABASE_URL = pg.url;
  }
  // The public URL goes into certificates; pick a free port first so links are right.
  if (!opts.env?.HSMCA_PUBLIC_URL) {
    const port = await freePort();
    env.HSMCA_PORT = String(port);
    env.HSMCA_PUBLIC_URL = `http://127.0.0.1:${port}`;
  }
  const lines: string[] = [];
  const svc = await startService(loadConfig(env), { log: silentLogger, announce: (l) => lines.push(l), clock: opts.clock });
  const adminToken = opts.env?.HSMCA_ADMIN_TOKEN ?? fs.readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim();
  const url = svc.url;
  return {
    url,
    httpsUrl: svc.httpsUrl,
    adminToken,
    dataDir,
    svc,
    env: { ...env },
    async api(method, p, o = {}) {
      const headers: Record<string, string> = { ...(o.headers ?? {}) };
      const token = o.token === undefined ? adminToken : o.token;
      if (token) headers.authorization = `Bearer ${token}`;
      let body: string | Buffer | undefined;
      if (o.rawBody !== undefined) body = o.rawBody;
      else if (o.body !== undefined) {
        body = JSON.stringify(o.body);
        headers['content-type'] ??= 'application/json';
      }
      const res = await fetch(url + p, { method, headers, body });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        /* not JSON */
      }
      return { status: res.status, body: parsed, headers: res.headers };
    },
    async stop() {
      await svc.stop();
      if (pg) await pg.drop();
      if (tokens) await tokens.cleanup();
      if (!opts.keepData) fs.rmSync(path.dirname(dataDir), { recursive: true, force: true });
    },
  };
}

export async function freePort(): Promise<number> {
  const net = await import('node:net');
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as import('node:net').AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

export function run(cmd: string, args: string[], opts: { input?: string | Buffer; cwd?: string } = {}): string {
  return execFileSync(cmd, args, { input: opts.input, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] }).toString();
}

/** Runs a command and returns its exit status and both outputs, without throwing. */
export function runStatus(cmd: string, args: string[], opts: { input?: string | Buffer; cwd?: string } = {}): { status: number; out: string } {
  const { spawnSync } = require('node:child_process') as typeof import('node:child_process');
  const r = spawnSync(cmd, args, { input: opts.input, cwd: opts.cwd, timeout: 60000 });
  return { status: r.status ?? 1, out: `${r.stdout?.toString() ?? ''}${r.stderr?.toString() ?? ''}` };
}

/**
 * Like runStatus, but without blocking the event loop: for commands that talk
 * to a server running inside the test process (openssl ocsp -url).
 */
export function runAsync(cmd: string, args: string[]): Promise<{ status: number; out: string }> {
  const { execFile } = require('node:child_process') as typeof import('node:child_process');
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 30000 }, (err, stdout, stderr) => {
      resolve({ status: err ? ((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` });
    });
  });
}
