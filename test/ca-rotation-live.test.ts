import { ChildProcess, execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { backends, freePort, freshPostgres, runAsync, runStatus, tempDir } from './helpers/harness';
import { makeCsr, writeTemp } from './helpers/csr';
import { BIN, startServer, stopServer } from './helpers/server-process';

/** How long the clients keep issuing before, between and after the rotations. */
const PHASE_MS = 3000;
/** Every process adopts a rotation within this (ISSUERS_RELOAD_MS, 2 s, plus a margin). */
const ADOPT_MS = 3000;
const CLIENTS = 6;

/**
 * Rotation under load (issue 17): clients issue certificates without pause
 * through a real `hsmca serve` with two worker processes while the issuing CA
 * is rotated twice, once over the API and once by the hsmca CLI from a third
 * process. No request fails; a certificate asked for after every worker had
 * time to adopt the rotation comes from the new issuer; openssl verifies
 * certificates of every issuer and OCSP answers for each.
 */
describe.each(backends({ pkcs11: false }))('rotation under load ($name)', (backend) => {
  let child: ChildProcess | undefined;
  let pg: { drop(): Promise<void> } | undefined;
  let dir: string;

  let stopClients = () => undefined as void;

  afterAll(async () => {
    stopClients();
    if (child) await stopServer(child, 'SIGTERM');
    await pg?.drop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('issues throughout two rotations, none fails, each certificate validates under its own issuer', async () => {
    dir = tempDir();
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const env: Record<string, string> = {
      ...(process.env as Record<string, string>),
      HSMCA_DATA_DIR: path.join(dir, 'data'),
      HSMCA_PORT: String(port),
      HSMCA_PUBLIC_URL: url,
      HSMCA_HTTPS_PORT: '0',
      HSMCA_LOG_LEVEL: 'warn',
      HSMCA_WORKERS: '2',
      HSMCA_ISSUE_RATE_PER_TOKEN: '0',
      HSMCA_ISSUE_RATE_PER_ADDRESS: '0',
    };
    if (backend.database === 'postgres') {
      const db = await freshPostgres();
      pg = db;
      env.HSMCA_DATABASE_URL = db.url;
    }
    child = await startServer(env, url);
    const token = fs.readFileSync(path.join(dir, 'data', 'admin.token'), 'utf8').trim();
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const csrs = Array.from({ length: CLIENTS }, (_, i) => JSON.stringify({ csr: makeCsr({ slot: 400 + i, sans: `DNS:load-${i}.example` }).csr }));

    const issued: { at: number; issuer: string; certificate: string; serial: string }[] = [];
    const failures: string[] = [];
    let running = true;
    stopClients = () => void (running = false);
    const client = async (i: number) => {
      while (running) {
        const at = Date.now();
        try {
          const r = await fetch(`${url}/api/v1/certificates`, { method: 'POST', headers, body: csrs[i] });
          const body = (await r.json()) as { chain: string[]; certificate: string; serialNumber: string };
          if (r.status !== 201) failures.push(`${r.status} ${JSON.stringify(body).slice(0, 200)}`);
          else issued.push({ at, issuer: body.chain[0], certificate: body.certificate, serial: body.serialNumber });
        } catch (e) {
          failures.push(String(e));
        }
      }
    };
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const clients = Array.from({ length: CLIENTS }, (_, i) => client(i));

    await sleep(PHASE_MS);
    const viaApi = await fetch(`${url}/api/v1/ca/rotate`, { method: 'POST', headers });
    const rotation = (await viaApi.json()) as { certificate: string };
    expect([viaApi.status, rotation]).toEqual([201, expect.objectContaining({ certificate: expect.any(String) })]);
    const rotatedAt1 = Date.now();
    const issuer2 = rotation.certificate;
    await sleep(PHASE_MS);
    const cliStartedAt = Date.now();
    const viaCli = await new Promise<{ code: number; out: string; err: string }>((resolve) =>
      execFile(process.execPath, [BIN, 'ca', 'rotate'], { env: { ...env, HSMCA_LOG_LEVEL: 'silent' }, timeout: 120_000 }, (e, out, err) => resolve({ code: e ? 1 : 0, out, err })),
    );
    expect(viaCli.err).toMatch(/issuing CA 3 is active/);
    expect(viaCli.code).toBe(0);
    const rotatedAt2 = Date.now();
    const issuer3 = (JSON.parse(viaCli.out) as { certificate: string }).certificate;
    await sleep(PHASE_MS + ADOPT_MS);
    running = false;
    await Promise.all(clients);

    const caBody = (await (await fetch(`${url}/api/v1/ca/issuers`)).json()) as { items: { id: number; certificate: string; status: string }[] };
    const issuer1 = caBody.items[0].certificate;
    expect(caBody.items.map((i) => [i.id, i.status])).toEqual([
      [1, 'previous'],
      [2, 'previous'],
      [3, 'active'],
    ]);
    const counts = [issuer1, issuer2, issuer3].map((p) => issued.filter((c) => c.issuer === p).length);
    // the figures of this run
    console.log(`rotation under load (${backend.name}, 2 workers, ${CLIENTS} clients): ${issued.length} certificates, ${failures.length} failures; issuer 1: ${counts[0]}, issuer 2: ${counts[1]}, issuer 3: ${counts[2]}`);
    expect(failures).toEqual([]);
    expect(counts.every((n) => n > 0)).toBe(true);
    expect(counts[0] + counts[1] + counts[2]).toBe(issued.length);
    // every worker adopted each rotation within ADOPT_MS: later requests all got the new issuer
    // (issuer 3 becomes active while the CLI runs, before it returns)
    expect(issued.filter((c) => c.at > rotatedAt1 + ADOPT_MS && c.at < cliStartedAt).every((c) => c.issuer === issuer2)).toBe(true);
    expect(issued.filter((c) => c.at > rotatedAt1 + ADOPT_MS).every((c) => c.issuer !== issuer1)).toBe(true);
    expect(issued.filter((c) => c.at > rotatedAt2 + ADOPT_MS).every((c) => c.issuer === issuer3)).toBe(true);

    // openssl: certificates of every issuer validate under their own chain, and OCSP answers for each
    const root = writeTemp('live-root.pem', ((await (await fetch(`${url}/api/v1/ca`)).json()) as { root: string }).root);
    for (const [n, issuerPem] of [issuer1, issuer2, issuer3].entries()) {
      const mine = issued.filter((c) => c.issuer === issuerPem);
      const issuerFile = writeTemp(`live-issuer-${n + 1}.pem`, issuerPem);
      for (const c of [mine[0], mine[mine.length - 1]]) {
        const f = writeTemp(`live-${c.serial}.pem`, c.certificate);
        expect(new X509Certificate(c.certificate).checkIssued(new X509Certificate(issuerPem))).toBe(true);
        expect(runStatus('openssl', ['verify', '-CAfile', root, '-untrusted', issuerFile, f]).out).toMatch(/: OK/);
        const o = await runAsync('openssl', ['ocsp', '-issuer', issuerFile, '-CAfile', root, '-url', `${url}/ocsp`, '-cert', f]);
        expect(o.out).toMatch(/Response verify OK/);
        expect(o.out).toMatch(new RegExp(`${f}: good`));
      }
    }
  });
});
