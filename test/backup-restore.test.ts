import { ChildProcess, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { makeCsr } from './helpers/csr';
import { freePort, freshPostgres, postgresUrl, required, run, runAsync, tempDir } from './helpers/harness';
import { BIN, startServer, stopServer } from './helpers/server-process';
import { createSoftHsmTokens, pkcs11Available, SoftHsmTokens } from './helpers/softhsm';

/**
 * Backups under split custody: a CA that issued and revoked is backed up while
 * it serves, then restored with M of N custodian shares onto an empty data
 * folder (and database, and a fresh token). openssl judges the restored CA:
 * a certificate issued before the backup verifies against it, OCSP answers
 * good and revoked as before, the CRL lists the revocation. M-1 shares fail
 * and leave the target empty.
 */
// several hsmca processes per test (CLI runs start in a second or more each), on a shared machine
jest.setTimeout(240_000);

type Setup = { name: string; database: 'sqlite' | 'postgres'; hsm: 'soft' | 'pkcs11' };
const setups: Setup[] = [{ name: 'soft HSM + SQLite', database: 'sqlite', hsm: 'soft' }];
if (postgresUrl() && (pkcs11Available() || required('pkcs11'))) setups.push({ name: 'SoftHSM2 + PostgreSQL', database: 'postgres', hsm: 'pkcs11' });

describe.each(setups)('backup and restore on $name', (setup) => {
  const dir = tempDir();
  const cleanups: (() => Promise<void>)[] = [];
  const servers: ChildProcess[] = [];
  let tokens: SoftHsmTokens | undefined;

  const hsmca = (env: Record<string, string>, args: string[]) => {
    const r = spawnSync(process.execPath, [BIN, ...args], { env, encoding: 'utf8', timeout: 120000 });
    return { status: r.status, out: r.stdout, err: r.stderr };
  };

  /** The environment of one CA: its own data folder, port, database and token. */
  async function caEnv(name: string): Promise<{ env: Record<string, string>; url: string }> {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HSMCA_'))) as Record<string, string>;
    const env: Record<string, string> = {
      ...clean,
      HSMCA_DATA_DIR: path.join(dir, name),
      HSMCA_PORT: String(port),
      HSMCA_HTTPS_PORT: '0',
      HSMCA_PUBLIC_URL: url,
      HSMCA_LOG_LEVEL: 'error',
    };
    if (setup.database === 'postgres') {
      const pg = await freshPostgres();
      cleanups.push(pg.drop);
      env.HSMCA_DATABASE_URL = pg.url;
    }
    if (setup.hsm === 'pkcs11') {
      Object.assign(env, {
        HSMCA_HSM: 'pkcs11',
        HSMCA_PKCS11_MODULE: tokens!.module,
        HSMCA_PKCS11_TOKEN_LABEL: `ca-${name}`,
        HSMCA_PKCS11_PIN: tokens!.pin,
        HSMCA_PKCS11_SO_PIN: tokens!.soPin,
        // keys that may leave the token (wrapped, under a trusted key) are made in cluster mode
        HSMCA_PKCS11_CLUSTER: 'true',
        SOFTHSM2_CONF: tokens!.confPath,
      });
    }
    return { env, url };
  }

  beforeAll(async () => {
    if (setup.hsm === 'pkcs11') tokens = await createSoftHsmTokens(['ca-original', 'ca-restored']);
  });
  afterAll(async () => {
    for (const s of servers) await stopServer(s, 'SIGTERM');
    for (const c of cleanups) await c();
    await tokens?.cleanup();
  });

  it('restores the same CA, certificates, serials, OCSP and CRL status; M-1 shares fail', async () => {
    // --- the original CA issues two certificates and revokes one
    const a = await caEnv('original');
    const serverA = await startServer(a.env, a.url);
    servers.push(serverA);
    const admin = fs.readFileSync(path.join(a.env.HSMCA_DATA_DIR, 'admin.token'), 'utf8').trim();
    const api = async (url: string, method: string, p: string, body?: unknown) => {
      const r = await fetch(url + p, { method, headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: body ? JSON.stringify(body) : undefined });
      return { status: r.status, body: (await r.json()) as any }; // eslint-disable-line @typescript-eslint/no-explicit-any
    };
    let slot = 10;
    const issue = async (url: string, name: string) => {
      // a key of its own each (the key of a certificate revoked for keyCompromise is blocked, on the restored CA too)
      const { csr } = makeCsr({ slot: slot++, subject: `/CN=${name}`, sans: `DNS:${name}` });
      const r = await api(url, 'POST', '/api/v1/certificates', { csr, profile: 'tls-server', validityDays: 30 });
      expect(r.status).toBe(201);
      return r.body as { serialNumber: string; certificate: string; chain: string[] };
    };
    const good = await issue(a.url, 'kept.example');
    const revoked = await issue(a.url, 'revoked.example');
    expect((await api(a.url, 'POST', `/api/v1/certificates/${revoked.serialNumber}/revoke`, { reason: 'keyCompromise' })).status).toBe(200);
    const root = path.join(dir, 'root.pem');
    const issuer = path.join(dir, 'issuer.pem');
    fs.writeFileSync(root, good.chain[1]);
    fs.writeFileSync(issuer, good.chain[0]);
    fs.writeFileSync(path.join(dir, 'good.pem'), good.certificate);
    fs.writeFileSync(path.join(dir, 'revoked.pem'), revoked.certificate);

    // --- the backup, taken while the CA serves
    const archive = path.join(dir, 'ca.backup');
    const made = hsmca(a.env, ['backup', 'create', '--out', archive, '--shares', '3', '--threshold', '2']);
    expect(made.err).toMatch(/give each custodian one share/);
    expect(made.status).toBe(0);
    const shares = [...made.out.matchAll(/^share \d: (hsmca-share-\S+)$/gm)].map((m) => m[1]);
    expect(shares).toHaveLength(3);
    expect(new Set(shares).size).toBe(3);
    const bytes = fs.readFileSync(archive);
    expect(fs.statSync(archive).mode & 0o777).toBe(0o600);
    // nothing of the CA in the clear: no certificate, no key, no token hash
    expect(bytes.includes(Buffer.from(new X509Certificate(good.certificate).raw))).toBe(false);
    expect(bytes.toString('latin1')).not.toMatch(/BEGIN|PRIVATE/);
    // a second backup never overwrites the first
    expect(hsmca(a.env, ['backup', 'create', '--out', archive, '--shares', '3', '--threshold', '2']).err).toMatch(/exists already/);
    await stopServer(serverA, 'SIGTERM');

    // --- M-1 shares: a clear refusal, nothing written
    const b = await caEnv('restored');
    const one = hsmca(b.env, ['backup', 'restore', '--in', archive, '--share', shares[0]]);
    expect(one.status).toBe(1);
    expect(one.err).toMatch(/needs 2 distinct shares of 3; 1 given/);
    const same = hsmca(b.env, ['backup', 'restore', '--in', archive, '--share', shares[1], '--share', shares[1]]);
    expect(same.err).toMatch(/1 given/);
    const mangled = shares[2].slice(0, -4) + (shares[2].endsWith('0000') ? '1111' : '0000');
    const wrong = hsmca(b.env, ['backup', 'restore', '--in', archive, '--share', shares[0], '--share', mangled]);
    expect(wrong.status).toBe(1);
    expect(wrong.err).toMatch(/do not reconstruct this backup's key/);
    expect(fs.existsSync(path.join(b.env.HSMCA_DATA_DIR, 'hsmca.db'))).toBe(false);
    expect(fs.existsSync(path.join(b.env.HSMCA_DATA_DIR, 'soft-hsm.json'))).toBe(false);

    // --- M shares (the first and the third)
    const restored = hsmca(b.env, ['backup', 'restore', '--in', archive, '--share', shares[0], '--share', shares[2]]);
    expect(restored.err).toBe('');
    expect(restored.out).toMatch(/restored backup [0-9a-f]{16} .* 2 certificates/);
    // once restored, the target is no longer empty
    expect(hsmca(b.env, ['backup', 'restore', '--in', archive, '--share', shares[0], '--share', shares[1]]).err).toMatch(/restore onto an empty|fresh token|not empty/);

    if (setup.hsm === 'pkcs11') {
      // on the fresh token the keys are sensitive again, and leave it only wrapped under a trusted key
      const listed = JSON.parse(hsmca(b.env, ['hsm', 'list', '--json']).out);
      const keys = listed.tokens[0].keys as { label: string; attributes: Record<string, boolean> }[];
      expect(keys.map((k) => k.label)).toEqual(expect.arrayContaining(['hsmca-root-ca', 'hsmca-issuing-ca']));
      for (const k of keys) expect(k.attributes).toMatchObject({ sensitive: true, private: true, token: true, wrapWithTrusted: true });
    }
    const serverB = await startServer(b.env, b.url);
    servers.push(serverB);
    // the same CA
    const ca = (await (await fetch(`${b.url}/api/v1/ca`)).json()) as { issuer: string; root: string };
    expect(ca.issuer.trim()).toBe(good.chain[0].trim());
    expect(ca.root.trim()).toBe(good.chain[1].trim());
    // openssl: the certificate from before the backup verifies against the restored CA's chain
    const rootB = path.join(dir, 'root-b.pem');
    const issuerB = path.join(dir, 'issuer-b.pem');
    fs.writeFileSync(rootB, ca.root);
    fs.writeFileSync(issuerB, ca.issuer);
    expect(run('openssl', ['verify', '-CAfile', rootB, '-untrusted', issuerB, path.join(dir, 'good.pem')])).toMatch(/: OK/);
    // OCSP from the restored CA, judged by openssl: good stays good, revoked stays revoked
    const ocsp = (cert: string) => runAsync('openssl', ['ocsp', '-issuer', issuerB, '-CAfile', rootB, '-cert', path.join(dir, cert), '-url', `${b.url}/ocsp`]);
    const g = await ocsp('good.pem');
    expect(g.out).toMatch(/Response verify OK/);
    expect(g.out).toMatch(/good\.pem: good/);
    const rv = await ocsp('revoked.pem');
    expect(rv.out).toMatch(/revoked\.pem: revoked/);
    expect(rv.out).toMatch(/Reason: keyCompromise/);
    // the CRL continues: signed by the restored issuer, listing the revocation, its number past the original's
    const refreshed = await api(b.url, 'POST', '/api/v1/crl/refresh');
    expect(refreshed.status).toBe(200);
    expect(refreshed.body.crlNumber).toBeGreaterThan(2);
    fs.writeFileSync(path.join(dir, 'b.crl'), Buffer.from(await (await fetch(`${b.url}/crl`)).arrayBuffer()));
    const judged = spawnSync('openssl', ['crl', '-inform', 'DER', '-in', path.join(dir, 'b.crl'), '-CAfile', issuerB, '-noout', '-text'], { encoding: 'utf8' });
    expect(judged.stderr + judged.stdout).toMatch(/verify OK/);
    const crl = judged.stdout;
    expect(crl.toUpperCase()).toContain(revoked.serialNumber.toUpperCase());
    // the records and the old admin token came back; issuance goes on with new serials
    const rec = await api(b.url, 'GET', `/api/v1/certificates/${revoked.serialNumber}`);
    expect(rec.body).toMatchObject({ status: 'revoked', revocationReason: 'keyCompromise' });
    const next = await issue(b.url, 'after.example');
    expect([good.serialNumber, revoked.serialNumber]).not.toContain(next.serialNumber);
    fs.writeFileSync(path.join(dir, 'after.pem'), next.certificate);
    expect(run('openssl', ['verify', '-CAfile', root, '-untrusted', issuer, path.join(dir, 'after.pem')])).toMatch(/: OK/);
    // the audit log: the backup, the restore, and a chain that still verifies
    const audit = await api(b.url, 'GET', '/api/v1/audit?type=backupRestored');
    expect(audit.body.items).toHaveLength(1);
    expect((await api(b.url, 'GET', '/api/v1/audit/verify')).body.ok).toBe(true);
  });
});
