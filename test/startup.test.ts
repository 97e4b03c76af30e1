import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadConfig } from '../src/config';
import { ConfigError } from '../src/errors';
import { openCore } from '../src/core';
import { silentLogger } from '../src/log';
import { backends, startTestCa, tempDir } from './helpers/harness';
import { makeCsr } from './helpers/csr';

const BIN = path.join(__dirname, '..', 'bin', 'hsmca.js');

describe('configuration', () => {
  it.each([
    [{ HSMCA_PORT: 'eighty' }, 'HSMCA_PORT'],
    [{ HSMCA_PORT: '70000' }, 'HSMCA_PORT'],
    [{ HSMCA_HSM: 'cloud' }, 'HSMCA_HSM'],
    [{ HSMCA_HSM: 'pkcs11' }, 'HSMCA_PKCS11_MODULE'],
    [{ HSMCA_HSM: 'pkcs11', HSMCA_PKCS11_MODULE: '/nonexistent.so' }, 'HSMCA_PKCS11_MODULE'],
    [{ HSMCA_KEY_ALGORITHM: 'dsa-1024' }, 'HSMCA_KEY_ALGORITHM'],
    [{ HSMCA_ADMIN_TOKEN: 'short' }, 'HSMCA_ADMIN_TOKEN'],
    [{ HSMCA_ADMIN_TOKEN: 'a'.repeat(63) }, 'HSMCA_ADMIN_TOKEN'],
    [{ HSMCA_DATABASE_URL: 'mysql://x' }, 'HSMCA_DATABASE_URL'],
    [{ HSMCA_PUBLIC_URL: 'ftp://x' }, 'HSMCA_PUBLIC_URL'],
    [{ HSMCA_HSM_PIN: '123' }, 'HSMCA_HSM_PIN'],
    [{ HSMCA_CRL_REFRESH_SECONDS: '0' }, 'HSMCA_CRL_REFRESH_SECONDS'],
    [{ HSMCA_CRL_SHARDS: '0' }, 'HSMCA_CRL_SHARDS'],
    [{ HSMCA_CRL_SHARDS: '1025' }, 'HSMCA_CRL_SHARDS'],
    [{ HSMCA_CRL_SHARDS: 'four' }, 'HSMCA_CRL_SHARDS'],
    [{ HSMCA_HOST: '0.0.0.0' }, 'HSMCA_PUBLIC_URL'],
    [{ HSMCA_INSTANCES: '0' }, 'HSMCA_INSTANCES'],
    [{ HSMCA_LEADER_LEASE_SECONDS: '1' }, 'HSMCA_LEADER_LEASE_SECONDS'],
    [{ HSMCA_SHUTDOWN_DELAY_SECONDS: '-1' }, 'HSMCA_SHUTDOWN_DELAY_SECONDS'],
    [{ HSMCA_SHUTDOWN_GRACE_SECONDS: '3601' }, 'HSMCA_SHUTDOWN_GRACE_SECONDS'],
    [{ HSMCA_SHUTDOWN_GRACE_SECONDS: '30s' }, 'HSMCA_SHUTDOWN_GRACE_SECONDS'],
    [{ HSMCA_HSM: "pkcs11", HSMCA_PKCS11_MODULE: "/bin/sh", HSMCA_PKCS11_TOKEN_LABEL: "a", HSMCA_PKCS11_PIN: "1234", HSMCA_PKCS11_CLUSTER: "yes" }, "HSMCA_PKCS11_CLUSTER"],
  ])('refuses %j naming %s', (env, setting) => {
    let err: unknown;
    try {
      loadConfig(env);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).setting).toBe(setting);
    expect((err as Error).message.startsWith(setting)).toBe(true);
  });

  it('has the contract defaults', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({ host: '127.0.0.1', port: 8080, hsm: 'soft', keyAlgorithm: 'ecdsa-p256', publicUrl: 'http://127.0.0.1:8080', crlRefreshSeconds: 300 });
    expect(c.dataDir).toBe(path.resolve('data'));
    expect(c).toMatchObject({ instances: 1, leaderLeaseSeconds: 10, shutdownDelaySeconds: 0, shutdownGraceSeconds: 30 });
  });
});

describe('start-up and restart', () => {
  const backend = backends()[0];

  it('reuses the hierarchy, the HSM keys and the admin token on a second start', async () => {
    const dir = tempDir();
    const dataDir = path.join(dir, 'data');
    const first = await startTestCa(backend, { dataDir, keepData: true });
    const ca1 = await first.api('GET', '/api/v1/ca');
    const { csr } = makeCsr({ sans: 'DNS:persist.example' });
    const issued = await first.api('POST', '/api/v1/certificates', { body: { csr } });
    expect(issued.status).toBe(201);
    const crlBefore = (await first.api('POST', '/api/v1/crl/refresh', { body: {} })).body.crlNumber as number;
    await first.stop();
    const token = fs.readFileSync(path.join(dataDir, 'admin.token'), 'utf8');
    const second = await startTestCa(backend, { dataDir, keepData: true });
    try {
      const ca2 = await second.api('GET', '/api/v1/ca');
      expect(ca2.body).toEqual(ca1.body);
      // CRL numbers keep growing across restarts
      const n1 = (await second.api('POST', '/api/v1/crl/refresh', { body: {} })).body.crlNumber;
      expect(n1).toBeGreaterThan(crlBefore);
      expect(fs.readFileSync(path.join(dataDir, 'admin.token'), 'utf8')).toBe(token);
      const again = await second.api('GET', `/api/v1/certificates/${issued.body.serialNumber}`);
      expect(again.status).toBe(200);
      const more = await second.api('POST', '/api/v1/certificates', { body: { csr } });
      expect(more.status).toBe(201);
      // the first start initialised the CA, and only the first one says so in the audit trail
      const events = (await second.api('GET', '/api/v1/audit?limit=500')).body.items as { type: string; details: Record<string, unknown> }[];
      const inits = events.filter((e) => e.type === 'caInitialised');
      expect(inits).toHaveLength(1);
      const sha256 = (pem: string) => crypto.createHash('sha256').update(new crypto.X509Certificate(pem).raw).digest('hex');
      expect(inits[0].details).toMatchObject({ rootCertificateSha256: sha256(ca1.body.root as string), issuingCertificateSha256: sha256(ca1.body.issuer as string) });
    } finally {
      // a failed expectation must not leave the server running
      await second.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses to start when the HSM key is not the key of the stored CA certificate', async () => {
    const a = path.join(tempDir(), 'data');
    const b = path.join(tempDir(), 'data');
    const env = { HSMCA_HSM_PIN: 'the-same-pin-for-both', HSMCA_LOG_LEVEL: 'silent' };
    for (const d of [a, b]) await (await openCore(loadConfig({ ...env, HSMCA_DATA_DIR: d }), { log: silentLogger, announce: () => undefined })).close();
    fs.copyFileSync(path.join(b, 'soft-hsm.json'), path.join(a, 'soft-hsm.json'));
    await expect(openCore(loadConfig({ ...env, HSMCA_DATA_DIR: a }), { log: silentLogger })).rejects.toThrow(/is not the key of the stored root CA certificate \(serial [0-9a-f]+\); refusing to start/);
  });

  it('refuses a wrong PIN, naming the setting', async () => {
    const d = path.join(tempDir(), 'data');
    await (await openCore(loadConfig({ HSMCA_DATA_DIR: d, HSMCA_HSM_PIN: 'first-pin-123' }), { log: silentLogger, announce: () => undefined })).close();
    await expect(openCore(loadConfig({ HSMCA_DATA_DIR: d, HSMCA_HSM_PIN: 'other-pin-456' }), { log: silentLogger })).rejects.toThrow(/^HSMCA_HSM_PIN: .*wrong/);
  });

  it('refuses a data folder or PIN file that others can read', async () => {
    const d = path.join(tempDir(), 'data');
    await (await openCore(loadConfig({ HSMCA_DATA_DIR: d }), { log: silentLogger, announce: () => undefined })).close();
    fs.chmodSync(path.join(d, 'hsm.pin'), 0o644);
    await expect(openCore(loadConfig({ HSMCA_DATA_DIR: d }), { log: silentLogger })).rejects.toThrow(/hsm.pin is readable by other users/);
    fs.chmodSync(path.join(d, 'hsm.pin'), 0o600);
    fs.chmodSync(d, 0o755);
    await expect(openCore(loadConfig({ HSMCA_DATA_DIR: d }), { log: silentLogger })).rejects.toThrow(/^HSMCA_DATA_DIR: .* is accessible to other users/);
  });

  it('finishes in-flight requests on a graceful stop, then accepts no more', async () => {
    const ca = await startTestCa(backend);
    const body = JSON.stringify({ csr: makeCsr({ sans: 'DNS:graceful.example' }).csr });
    const http = await import('node:http');
    // A request whose body is still arriving when the stop begins.
    const req = http.request(`${ca.url}/api/v1/certificates`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ca.adminToken}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    });
    const answer = new Promise<{ status: number; text: string }>((resolve, reject) => {
      req.on('response', (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      });
      req.on('error', reject);
    });
    req.write(body.slice(0, 100));
    for (let i = 0; i < 500; i++) {
      const n = await new Promise<number>((r) => ca.svc.server.getConnections((_e, c) => r(c)));
      if (n > 0) break;
      await new Promise((r) => setTimeout(r, 2));
    }
    await new Promise((r) => setTimeout(r, 50));
    const stopping = ca.svc.stop();
    await new Promise((r) => setTimeout(r, 100));
    // no new connections once stopping
    await expect(fetch(`${ca.url}/healthz`)).rejects.toThrow();
    req.end(body.slice(100));
    const res = await answer;
    expect(res.status).toBe(201);
    expect(JSON.parse(res.text).certificate).toMatch(/BEGIN CERTIFICATE/);
    await stopping;
    await ca.stop();
  });

  it('answers 503 when the HSM or the database is down, and records nothing half-written', async () => {
    const ca = await startTestCa(backend);
    const { csr } = makeCsr({ sans: 'DNS:down.example' });
    const before = await ca.svc.core.certificates.count();
    await ca.svc.core.hsm.close();
    const r = await ca.api('POST', '/api/v1/certificates', { body: { csr } });
    expect(r.status).toBe(503);
    expect(r.body.error.code).toBe('hsmUnavailable');
    expect(await ca.svc.core.certificates.count()).toBe(before);
    const pending = await ca.svc.core.db.knex('certificates').whereNot({ state: 'issued' }).select('state', 'der');
    expect(pending.every((p: { state: string; der: unknown }) => p.state === 'failed' && p.der === null)).toBe(true);
    const h1 = await ca.api('GET', '/healthz', { token: null });
    expect(h1.status).toBe(503);
    expect(h1.body.hsm.status).toBe('down');
    await ca.svc.core.db.close();
    const h2 = await ca.api('GET', '/healthz', { token: null });
    expect(h2.status).toBe(503);
    expect(h2.body.database).toBe('down');
    const r2 = await ca.api('GET', '/api/v1/certificates');
    expect(r2.status).toBe(503);
    expect(r2.body.error.code).toBe('databaseUnavailable');
    await ca.stop();
  });
});

describe('the hsmca command', () => {
  it('prints one clear line and exits 1 on a bad setting', () => {
    const bad = spawnSync({ HSMCA_KEY_ALGORITHM: 'dsa' }, ['serve']);
    expect(bad.status).toBe(1);
    expect(bad.stderr.trim().split('\n').filter((l) => !l.includes('building'))).toEqual([expect.stringMatching(/^hsmca: HSMCA_KEY_ALGORITHM: must be one of/)]);
  });

  it('init, token create and serve work on a fresh data folder, and SIGTERM stops it cleanly', async () => {
    const d = path.join(tempDir(), 'data');
    const init = spawnSync({ HSMCA_DATA_DIR: d, HSMCA_LOG_LEVEL: 'warn' }, ['init']);
    expect(init.status).toBe(0);
    const adminToken = fs.readFileSync(path.join(d, 'admin.token'), 'utf8').trim();
    expect(adminToken).toMatch(/^[0-9a-f]{64}$/);
    expect(init.stdout).toContain(adminToken);
    const tok = spawnSync({ HSMCA_DATA_DIR: d }, ['token', 'create', '--role', 'requester', '--name', 'build-bot']);
    expect(tok.status).toBe(0);
    const requester = tok.stdout.trim();
    expect(requester).toMatch(/^[0-9a-f]{64}$/);
    const badRole = spawnSync({ HSMCA_DATA_DIR: d }, ['token', 'create', '--role', 'root', '--name', 'x']);
    expect(badRole.status).toBe(1);
    expect(badRole.stderr).toMatch(/role must be one of admin, requester/);

    const port = 20000 + Math.floor(Math.random() * 20000);
    const child = spawn(process.execPath, [BIN, 'serve'], { env: { ...process.env, HSMCA_DATA_DIR: d, HSMCA_PORT: String(port), HSMCA_HTTPS_PORT: '0', HSMCA_LOG_LEVEL: 'warn' } });
    let out = '';
    child.stdout.on('data', (b) => (out += b));
    await waitFor(() => out.includes('serving'), 20000);
    const { csr } = makeCsr({ sans: 'DNS:cli.example' });
    const res = await fetch(`http://127.0.0.1:${port}/api/v1/certificates`, {
      method: 'POST',
      headers: { authorization: `Bearer ${requester}`, 'content-type': 'application/json' },
      body: JSON.stringify({ csr }),
    });
    expect(res.status).toBe(201);
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});

describe('several worker processes', () => {
  it('serves from every worker, shares CRLs, and stops all of them on SIGTERM', async () => {
    const d = path.join(tempDir(), 'data');
    const port = 20000 + Math.floor(Math.random() * 20000);
    const child = spawn(process.execPath, [BIN, 'serve'], { env: { ...process.env, HSMCA_DATA_DIR: d, HSMCA_PORT: String(port), HSMCA_HTTPS_PORT: '0', HSMCA_LOG_LEVEL: 'warn', HSMCA_WORKERS: '2' } });
    let out = '';
    child.stdout.on('data', (b) => (out += b));
    await waitFor(() => out.includes('with 2 workers'), 30000);
    const token = fs.readFileSync(path.join(d, 'admin.token'), 'utf8').trim();
    const url = `http://127.0.0.1:${port}`;
    const h = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const serials: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await fetch(`${url}/api/v1/certificates`, { method: 'POST', headers: h, body: JSON.stringify({ csr: makeCsr({ sans: 'DNS:w.example' }).csr }) });
      expect(r.status).toBe(201);
      serials.push(((await r.json()) as { serialNumber: string }).serialNumber);
    }
    const rev = await fetch(`${url}/api/v1/certificates/${serials[0]}/revoke`, { method: 'POST', headers: h, body: '{}' });
    expect(rev.status).toBe(200);
    // whichever worker answers, the new CRL lists it within seconds
    const deadline = Date.now() + 10000;
    let hits = 0;
    while (Date.now() < deadline && hits < 6) {
      const crl = Buffer.from(await (await fetch(`${url}/crl`)).arrayBuffer());
      hits = crl.includes(Buffer.from(serials[0], 'hex')) ? hits + 1 : 0;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(hits).toBe(6);
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
  });
});

function spawnSync(env: Record<string, string>, args: string[]) {
  const { spawnSync: ss } = require('node:child_process') as typeof import('node:child_process');
  const cleanEnv = { ...process.env };
  for (const k of Object.keys(cleanEnv)) if (k.startsWith('HSMCA_')) delete cleanEnv[k];
  const r = ss(process.execPath, [BIN, ...args], { env: { ...cleanEnv, HSMCA_DATA_DIR: path.join(tempDir(), 'data'), ...env }, encoding: 'utf8', timeout: 60000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}
