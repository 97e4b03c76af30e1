/**
 * What hsmca does per certificate above the floor server (figure 2c), part
 * by part, in a fresh process on an initialised CA (software HSM, SQLite):
 * the token lookup, the JSON body, the pre-issuance lint, the reservation,
 * the audit event's preparation and hashing, the answer's encoding, and the
 * certificate's storage with its event. Each part runs in a sequential loop and is timed
 * by process.cpuUsage() (CPU µs per certificate); the floor's own work (CSR
 * check, TBS encoding, the signature) is timed too, for scale. Five rounds,
 * medians. Prints JSON [{ part, us }] on stdout. Run by speed.ts.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { chainRows } from '../src/audit/chain';
import * as der from '../src/asn1/der';
import { csrFromPem, parseCsrSync } from '../src/ca/csr';
import { lintCertificateTbs } from '../src/ca/lint/run-lints';
import { sampleTlsServerTbs } from './lint-sample';
import { randomSerial, serialHex } from '../src/ca/certificate';
import { loadConfig } from '../src/config';
import { openCore } from '../src/core';
import { silentLogger } from '../src/log';
import { makeCsrsCached } from './pki';
import { tempDir } from './proc';
import { median } from './stats';

async function main(): Promise<void> {
  const { csrs } = await makeCsrsCached('p256', 200);
  const dir = tempDir('hsmca-bench-parts-');
  const core = await openCore(loadConfig({ HSMCA_DATA_DIR: dir }), { log: silentLogger, announce: () => undefined });
  const token = fs.readFileSync(path.join(dir, 'admin.token'), 'utf8').trim();
  const bodies = csrs.map((csr) => JSON.stringify({ csr }));
  const certPem = core.hierarchy.issuing.certificate;

  /** CPU µs per call of `fn`, over `n` sequential calls (awaited when it returns a promise). */
  const time = async (n: number, fn: (i: number) => unknown): Promise<number> => {
    const c0 = process.cpuUsage();
    for (let i = 0; i < n; i++) {
      const r = fn(i);
      if (r instanceof Promise) await r;
    }
    const c = process.cpuUsage(c0);
    return (c.user + c.system) / n;
  };
  const now = new Date();
  const reservation = () => ({
    serial: serialHex(randomSerial()),
    profile: 'tls-server',
    subject: 'CN=host.bench.test',
    sans: { dns: ['host.bench.test'], ip: [], email: [], uri: [] },
    notBefore: now,
    notAfter: new Date(now.getTime() + 90 * 86_400_000),
    requesterId: 'bench',
    createdAt: now,
  });
  const parts: Record<string, number[]> = {};
  const add = (k: string, v: number) => (parts[k] ??= []).push(v);
  const N = 2000;
  const lint = sampleTlsServerTbs();
  for (let round = 0; round < 5; round++) {
    add('token lookup (hash, SQLite reader)', await time(N, () => core.tokens.authenticate(`Bearer ${token}`)));
    add('JSON body parse', await time(N, (i) => JSON.parse(bodies[i % bodies.length])));
    add('CSR check (floor too)', await time(N / 4, (i) => parseCsrSync(csrFromPem(csrs[i % csrs.length]))));
    add('pre-issuance lint (tls-server, P-256)', await time(N, () => lintCertificateTbs(lint.tbs, lint.ctx)));
    add('audit event: prepare (canonical JSON)', await time(N, (i) => core.audit.prepare({ type: 'certificateIssued', actor: 'bench', subject: `CN=host${i}`, details: { serial: `${i}`, profile: 'tls-server', sans: { dns: ['host.bench.test'] } } })));
    const ev = core.audit.prepare({ type: 'certificateIssued', actor: 'bench', subject: 'CN=x', details: { serial: '1' } });
    add('audit event: chain hash', await time(N, () => chainRows({ seq: 1, hash: '0'.repeat(64) }, [ev])));
    add('answer: PEM and JSON', await time(N, () => JSON.stringify({ serialNumber: 'ab', certificate: der.pemEncode('CERTIFICATE', certPem), chain: ['x', 'y'], notBefore: now.toISOString(), notAfter: now.toISOString() })));
    // reservation then completion with its event, 32 in flight as under load (the shared fsync included)
    const rs = Array.from({ length: 512 }, reservation);
    add('reservation (32 in flight)', (await timeBatched(rs, (r) => core.certificates.reserve(r))));
    add('store certificate + event, fsync shared (32 in flight)', await timeBatched(rs, (r) => core.certificates.complete(r.serial, certPem, ev)));
  }
  const out = Object.entries(parts).map(([part, v]) => ({ part, us: median(v) }));
  await core.close();
  fs.rmSync(dir, { recursive: true, force: true });
  process.stdout.write(JSON.stringify(out));
}

/** CPU µs per item, 32 in flight. */
async function timeBatched<T>(items: T[], fn: (x: T) => Promise<unknown>): Promise<number> {
  const c0 = process.cpuUsage();
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      for (let i = next++; i < items.length; i = next++) await fn(items[i]);
    }),
  );
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / items.length;
}

main().catch((e) => {
  process.stderr.write(String((e as Error)?.stack ?? e));
  process.exit(1);
});
