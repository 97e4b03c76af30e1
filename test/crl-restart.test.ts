import { ChildProcess, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openDatabase } from '../src/storage/database';
import { makeCsr } from './helpers/csr';
import { backends, freePort, freshPostgres, tempDir } from './helpers/harness';
import { startServer, stopServer } from './helpers/server-process';

/**
 * Contract section 5: a CRL served after a restart lists every revocation
 * acknowledged before the stop. A certificate is revoked and the server
 * stopped at once, well inside the CRL's debounce delay and with the periodic
 * refresh an hour away: with SIGTERM the stop itself builds the CRL; with
 * SIGKILL nothing could, and start-up must. openssl judges the CRL served
 * after the restart.
 */
describe.each(backends({ pkcs11: false }))('a revocation survives a restart in the CRL ($name)', (backend) => {
  it.each(['SIGTERM', 'SIGKILL'] as const)('revoked, then %s within the debounce delay: the CRL after the restart lists it', async (signal) => {
    const dir = tempDir();
    const dataDir = path.join(dir, 'data');
    const pg = backend.database === 'postgres' ? await freshPostgres() : undefined;
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const env: Record<string, string> = {
      ...(process.env as Record<string, string>),
      HSMCA_DATA_DIR: dataDir,
      HSMCA_PORT: String(port),
      HSMCA_HTTPS_PORT: '0',
      HSMCA_PUBLIC_URL: url,
      HSMCA_LOG_LEVEL: 'error',
      HSMCA_CRL_REFRESH_SECONDS: '3600',
      ...(pg ? { HSMCA_DATABASE_URL: pg.url } : {}),
    };
    let child: ChildProcess | undefined;
    try {
      child = await startServer(env, url);
      const token = fs.readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim();
      const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
      const issued = await fetch(`${url}/api/v1/certificates`, {
        method: 'POST',
        headers: auth,
        // a key of its own: the revocation for keyCompromise blocks it
        body: JSON.stringify({ csr: makeCsr({ slot: signal === 'SIGTERM' ? 101 : 102, sans: `DNS:restart-${signal.toLowerCase()}.example` }).csr }),
      });
      expect(issued.status).toBe(201);
      const cert = (await issued.json()) as { serialNumber: string; certificate: string; chain: string[] };
      fs.writeFileSync(path.join(dir, 'cert.pem'), cert.certificate);
      fs.writeFileSync(path.join(dir, 'chain.pem'), cert.chain.join(''));
      // the CRL served before the revocation, for the CRL number it had
      const before = Buffer.from(await (await fetch(`${url}/crl`)).arrayBuffer());

      const revoked = await fetch(`${url}/api/v1/certificates/${cert.serialNumber}/revoke`, { method: 'POST', headers: auth, body: JSON.stringify({ reason: 'keyCompromise' }) });
      expect(revoked.status).toBe(200);
      await stopServer(child, signal);
      child = undefined;

      if (signal === 'SIGTERM') {
        // the graceful stop built the CRL itself, before it exited
        const db = await openDatabase({ url: pg?.url, dataDir });
        try {
          const newest = await db.knex('crls').where({ kind: 'full' }).orderBy('crl_number', 'desc').first('der');
          expect(crlText(dir, Buffer.from(newest.der), 'stored')).toContain(cert.serialNumber.toUpperCase());
        } finally {
          await db.close();
        }
      }

      child = await startServer(env, url);
      const crl = Buffer.from(await (await fetch(`${url}/crl`)).arrayBuffer());
      const text = crlText(dir, crl, 'served');
      expect(text).toContain(`Serial Number: ${cert.serialNumber.toUpperCase()}`);
      expect(text).toMatch(/Key Compromise/);
      expect(crlNumber(text)).toBeGreaterThan(crlNumber(crlText(dir, before, 'before')));
      const v = spawnSync('openssl', ['verify', '-crl_check', '-CAfile', path.join(dir, 'chain.pem'), '-CRLfile', path.join(dir, 'served.crl.pem'), path.join(dir, 'cert.pem')], { encoding: 'utf8' });
      expect(v.status).not.toBe(0);
      expect(v.stdout + v.stderr).toMatch(/certificate revoked/);
    } finally {
      if (child) await stopServer(child, 'SIGTERM');
      if (pg) await pg.drop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** openssl's reading of a DER CRL; also leaves it as NAME.crl.pem for openssl verify. */
function crlText(dir: string, der: Buffer, name: string): string {
  const derFile = path.join(dir, `${name}.crl`);
  fs.writeFileSync(derFile, der);
  const pem = spawnSync('openssl', ['crl', '-inform', 'DER', '-in', derFile, '-out', path.join(dir, `${name}.crl.pem`)], { encoding: 'utf8' });
  expect(pem.status).toBe(0);
  const r = spawnSync('openssl', ['crl', '-inform', 'DER', '-in', derFile, '-noout', '-text'], { encoding: 'utf8' });
  expect(r.status).toBe(0);
  return r.stdout;
}

function crlNumber(text: string): number {
  const m = /X509v3 CRL Number:\s*\n\s*(\d+)/.exec(text);
  expect(m).not.toBeNull();
  return Number(m![1]);
}
