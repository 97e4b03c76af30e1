import * as fs from 'node:fs';
import * as path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { backends, freePort, freshPostgres, tempDir } from './helpers/harness';
import { makeCsr } from './helpers/csr';
import { BIN, startServer, stopServer } from './helpers/server-process';

const ROUNDS = 4;

/**
 * Issuance and revocation load against a real server process, killed with
 * SIGKILL at random moments and restarted. What a client was told must hold
 * afterwards: every certificate it received is stored with the right status,
 * no serial repeats, every acknowledged revocation is still there.
 */
describe.each(backends({ pkcs11: false }))('crash safety under SIGKILL ($name)', (backend) => {
  it(`keeps every acknowledged certificate and revocation across ${ROUNDS} kills`, async () => {
    const dir = tempDir();
    const dataDir = path.join(dir, 'data');
    const pg = backend.database === 'postgres' ? await freshPostgres() : undefined;
    const port = await freePort();
    const env: Record<string, string> = {
      ...(process.env as Record<string, string>),
      HSMCA_DATA_DIR: dataDir,
      HSMCA_PORT: String(port),
      HSMCA_HTTPS_PORT: '0',
      HSMCA_LOG_LEVEL: 'error',
      HSMCA_ISSUE_RATE_PER_TOKEN: '0',
      HSMCA_ISSUE_RATE_PER_ADDRESS: '0',
      ...(pg ? { HSMCA_DATABASE_URL: pg.url } : {}),
    };
    const url = `http://127.0.0.1:${port}`;
    const csrs = Array.from({ length: 4 }, (_, i) => makeCsr({ slot: i, sans: `DNS:crash-${i}.example` }).csr);
    const received = new Map<string, string>(); // serial -> certificate PEM
    const revoked = new Map<string, string>(); // serial -> reason
    // not keyCompromise: it would block the four keys these CSRs reuse (test/blocked-keys.test.ts covers it)
    const reasons = ['privilegeWithdrawn', 'superseded', 'cessationOfOperation', 'affiliationChanged'];
    let kills = 0;
    let token = '';

    try {
      for (let round = 0; round <= ROUNDS; round++) {
        const child = await startServer(env, url);
        token ||= fs.readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim();
        if (round === ROUNDS) {
          await verify(url, token, received, revoked);
          await stopServer(child, 'SIGTERM');
          // the audit chain, with its HSM-signed checkpoints, still verifies
          const { spawnSync } = await import('node:child_process');
          const v = spawnSync(process.execPath, [BIN, 'audit', 'verify'], { env, encoding: 'utf8', timeout: 60000 });
          expect(v.stdout).toMatch(/audit chain OK: \d+ events, [1-9]\d* checkpoints/);
          expect(v.status).toBe(0);
          break;
        }
        let stop = false;
        const worker = async (w: number) => {
          for (let i = 0; !stop; i++) {
            try {
              const toRevoke = [...received.keys()].filter((s) => !revoked.has(s));
              if (i % 3 === 2 && toRevoke.length) {
                const serial = toRevoke[(w * 7 + i) % toRevoke.length];
                const reason = reasons[i % reasons.length];
                const r = await fetch(`${url}/api/v1/certificates/${serial}/revoke`, {
                  method: 'POST',
                  headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
                  body: JSON.stringify({ reason }),
                });
                if (r.status === 200) revoked.set(serial, reason);
                else await r.body?.cancel();
              } else {
                const r = await fetch(`${url}/api/v1/certificates`, {
                  method: 'POST',
                  headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
                  body: JSON.stringify({ csr: csrs[(w + i) % csrs.length] }),
                });
                if (r.status === 201) {
                  const b = (await r.json()) as any;
                  expect(received.has(b.serialNumber)).toBe(false);
                  received.set(b.serialNumber, b.certificate);
                }
              }
            } catch {
              // the connection died with the server: nothing was acknowledged
            }
          }
        };
        const workers = Array.from({ length: 6 }, (_, w) => worker(w));
        await new Promise((r) => setTimeout(r, 300 + Math.random() * 900));
        child.kill('SIGKILL');
        kills++;
        await new Promise((r) => child.once('exit', r));
        stop = true;
        await Promise.all(workers);
      }
      expect(kills).toBe(ROUNDS);
      expect(received.size).toBeGreaterThan(20);
      expect(revoked.size).toBeGreaterThan(3);
    } finally {
      if (pg) await pg.drop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

async function verify(url: string, token: string, received: Map<string, string>, revoked: Map<string, string>): Promise<void> {
  const h = { authorization: `Bearer ${token}` };
  // every certificate a client received is stored, byte for byte, with the right status
  for (const [serial, pem] of received) {
    const r = await fetch(`${url}/api/v1/certificates/${serial}`, { headers: h });
    expect(r.status).toBe(200);
    const b = (await r.json()) as any;
    expect(new X509Certificate(b.certificate).raw.equals(new X509Certificate(pem).raw)).toBe(true);
    if (revoked.has(serial)) {
      expect(b.status).toBe('revoked');
      expect(b.revocationReason).toBe(revoked.get(serial));
    }
  }
  // no serial repeats, and nothing stored that looks valid without a certificate
  const seen = new Set<string>();
  let cursor: string | null = null;
  do {
    const r: Response = await fetch(`${url}/api/v1/certificates?limit=500${cursor ? `&cursor=${cursor}` : ''}`, { headers: h });
    const b = (await r.json()) as any;
    for (const item of b.items) {
      expect(seen.has(item.serialNumber)).toBe(false);
      seen.add(item.serialNumber);
      expect(item.certificate).toMatch(/BEGIN CERTIFICATE/);
    }
    cursor = b.nextCursor;
  } while (cursor);
  for (const s of received.keys()) expect(seen.has(s)).toBe(true);
  // every certificate a client received was audited before it was answered
  const audited = new Set<string>();
  let auditCursor: string | null = null;
  do {
    const r: Response = await fetch(`${url}/api/v1/audit?limit=500${auditCursor ? `&cursor=${auditCursor}` : ''}`, { headers: h });
    expect(r.status).toBe(200);
    const b = (await r.json()) as any;
    for (const e of b.items) if (e.type === 'certificateIssued') audited.add(e.subject);
    auditCursor = b.nextCursor;
  } while (auditCursor);
  for (const s of received.keys()) expect(audited.has(s)).toBe(true);
}
