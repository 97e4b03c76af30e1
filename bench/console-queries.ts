/**
 * What the admin console's queries cost at scale: `npm run bench:console`
 * (`-- --count=N`, default 1,000,000). Fills a SQLite database with N good
 * certificates and N/100 revoked ones (bench/fill.ts), then times each query
 * the console makes per page view, the median of 5 runs, through the same
 * storage code the API uses. See docs/performance.md.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CertificateStats } from '../src/storage/certificate-stats';
import { CertificateStore } from '../src/storage/certificate-store';
import { fillCertificates, openBenchDatabase } from './fill';

const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];

async function median(f: () => Promise<unknown>, runs = 5): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    await f();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return times.sort((a, b) => a - b)[Math.floor(runs / 2)];
}

async function main(): Promise<void> {
  const count = Number(arg('count') ?? 1_000_000);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hsmca-bench-console-'));
  try {
    const db = await openBenchDatabase(dir);
    const der = Buffer.alloc(700, 1);
    const t0 = Date.now();
    const sample = await fillCertificates(db, { count, revoked: false, der, sampleEvery: Math.max(1, Math.floor(count / 10)) });
    await fillCertificates(db, { count: Math.max(1, Math.floor(count / 100)), revoked: true, der });
    await db.knex.raw('ANALYZE');
    process.stdout.write(`filled ${count} + ${Math.floor(count / 100)} revoked certificates in ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
    const store = new CertificateStore(db);
    const stats = new CertificateStats(db, () => new Date(), 0);
    const first = await store.list({ limit: 50 });
    const middle = await store.list({ limit: 1, afterId: Math.floor(count / 2) });
    const rows: [string, () => Promise<unknown>][] = [
      ['list: first page (50)', () => store.list({ limit: 50 })],
      ['list: a page in the middle (cursor)', () => store.list({ limit: 50, afterId: middle.lastId })],
      ['list: revoked, first page', () => store.list({ limit: 50, status: 'revoked' })],
      ['list: a requester, first page', () => store.list({ limit: 50, requesterId: 'nobody' })],
      ['search: a serial (unique index)', () => store.get(sample[0])],
      ['search: a name on every certificate ("bench.test")', () => store.list({ limit: 50, contains: 'bench.test' })],
      ['search: a rare name (one window of 20,000 ids)', () => store.list({ limit: 50, contains: `fill${count - 5}.` })],
      ['search: a name matching nothing (one window)', () => store.list({ limit: 50, contains: 'no-such-name' })],
      ['overview: counts by status (once a minute)', () => new CertificateStats(db, () => new Date()).statusCounts()],
      ['overview: per hour, 7 days, all (once a minute)', () => stats.perHour(168)],
      ['overview: per hour, 7 days, one requester', () => stats.perHour(168, 'nobody')],
    ];
    if (first.items.length !== 50) throw new Error('the fill did not work');
    process.stdout.write(`| query (${count.toLocaleString('en-US')} certificates, SQLite) | median ms |\n|---|---|\n`);
    for (const [name, f] of rows) process.stdout.write(`| ${name} | ${(await median(f)).toFixed(1)} |\n`);
    // what migration 010 costs on an existing table of this size
    const { CREATED_INDEX, up } = await import('../migrations/010_certificate_created_index');
    await db.knex.raw(`DROP INDEX ${CREATED_INDEX}`);
    const m0 = Date.now();
    await up(db.knex);
    process.stdout.write(`| migration 010 (building its index) | ${Date.now() - m0} |\n`);
    await db.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
