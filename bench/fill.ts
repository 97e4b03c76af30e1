/**
 * Bulk rows for the CRL and scale figures, inserted straight into the SQLite
 * database with the columns of migrations/001_initial.ts: knex batches of
 * multi-row INSERTs with bound values (knex's own multi-row insert for SQLite
 * is a UNION ALL of at most 500 SELECTs with every value inlined, blobs as hex
 * literals), one transaction per 50,000 rows. The server must not be running on
 * the database while it is filled.
 */
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { CrlShardPlan } from '../src/ca/crl-shards';
import { Database, openDatabase } from '../src/storage/database';

const DAY = 86_400_000;
const COLUMNS = [
  'serial',
  'state',
  'profile',
  'subject',
  'sans',
  'not_before',
  'not_after',
  'der',
  'requester_id',
  'created_at',
  'revoked_at',
  'revocation_reason',
  'invalidity_date',
  'crl_shard',
] as const;
/** rows per INSERT statement: 14 bound values each, well under SQLite's 32766 */
const ROWS_PER_INSERT = 1000;
const ROW_PLACEHOLDERS = `(${COLUMNS.map(() => '?').join(',')})`;
const insertSql = (rows: number) => `insert into certificates (${COLUMNS.join(',')}) values ${new Array(rows).fill(ROW_PLACEHOLDERS).join(',')}`;
/** rows per transaction */
const ROWS_PER_TX = 50_000;

export interface FillOptions {
  /** rows to add */
  count: number;
  /** revoked rows (for CRLs) or good ones */
  revoked: boolean;
  /** the `der` column of every row: a real certificate of typical size, or filler bytes of that size */
  der: Buffer;
  /** keep every n-th serial (hex) for lookups; 0 keeps none */
  sampleEvery?: number;
  /** partitioned CRLs: each row gets the shard issuance would give it among this many (crl-shards.ts) */
  crlShards?: number;
  /** called after each transaction with the rows written so far */
  onProgress?: (done: number) => void;
}

/**
 * Opens (and migrates) the SQLite database of a data folder, or the file
 * given. For filling only, its one connection trades durability for speed
 * (synchronous OFF, a 256 MiB page cache); the server opens the file with its
 * own settings afterwards.
 */
export async function openBenchDatabase(dataDir: string, file?: string): Promise<Database> {
  const db = await openDatabase({ dataDir, url: file ? `sqlite:${file}` : undefined });
  await db.knex.raw('PRAGMA synchronous = OFF');
  await db.knex.raw('PRAGMA cache_size = -262144');
  return db;
}

/**
 * Inserts `count` issued certificates with random 16-octet serials, valid for
 * 90 days around now. Revoked rows carry revocation times over the past year,
 * a reason on two thirds of them and an invalidity date on one in five (the
 * mix bench/crl-build.ts uses). Returns the sampled serials.
 */
export async function fillCertificates(db: Database, o: FillOptions): Promise<string[]> {
  const now = Date.now();
  const sample: string[] = [];
  const reasons = [1, 3, 4, 5];
  const shards = o.crlShards && o.crlShards > 1 ? new CrlShardPlan(o.crlShards, 'http://bench.invalid/crl') : undefined;
  let done = 0;
  while (done < o.count) {
    const txRows = Math.min(ROWS_PER_TX, o.count - done);
    await db.knex.transaction(async (trx) => {
      for (let off = 0; off < txRows; off += ROWS_PER_INSERT) {
        const n = Math.min(ROWS_PER_INSERT, txRows - off);
        const serials = randomBytes(16 * n);
        const values: (string | number | Buffer | null)[] = [];
        for (let i = 0; i < n; i++) {
          const k = done + off + i;
          serials[16 * i] = (serials[16 * i] & 0x7f) | 0x40;
          const serial = serials.subarray(16 * i, 16 * i + 16).toString('hex');
          if (o.sampleEvery && k % o.sampleEvery === 0) sample.push(serial);
          const host = `fill${k}.bench.test`;
          const revokedAt = o.revoked ? now - DAY - (k % 365) * DAY - (k % 86_400) * 1000 : null;
          // in the order of COLUMNS
          values.push(
            serial,
            'issued',
            'tls-server',
            `CN=${host}`,
            `{"dns":["${host}"],"ip":[],"email":[],"uri":[]}`,
            now - DAY,
            now + 89 * DAY,
            o.der,
            null,
            now - DAY,
            revokedAt,
            o.revoked ? (k % 3 === 0 ? 0 : reasons[k % 4]) : null,
            o.revoked && k % 5 === 0 ? revokedAt! - DAY : null,
            shards ? shards.shardOf(serials.subarray(16 * i, 16 * i + 16)) : null,
          );
        }
        await trx.raw(insertSql(n), values);
      }
    });
    done += txRows;
    o.onProgress?.(done);
  }
  return sample;
}

export interface FillJob {
  /** the data folder of an hsmca server (its hsmca.db), or any folder when `file` is given */
  dataDir: string;
  /** a SQLite file of its own (CRL figure); created with the schema when absent */
  file?: string;
  count: number;
  revoked: boolean;
  /** base64 of FillOptions.der */
  der: string;
  sampleEvery?: number;
  crlShards?: number;
}

export type FillMessage = { kind: 'progress'; done: number } | { kind: 'done'; sample: string[]; seconds: number };

/**
 * Fills a database from a fresh process, loaded from dist/ as it is now: the
 * same code the server or CRL process that uses the database next runs (the
 * benchmark itself may have been loaded before a rebuild with new migrations).
 */
export function fillInChild(job: FillJob, onProgress?: (done: number) => void): Promise<{ sample: string[]; seconds: number }> {
  return new Promise((resolve, reject) => {
    const child = fork(__filename, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let result: { sample: string[]; seconds: number } | undefined;
    child.on('message', (m: FillMessage) => {
      if (m.kind === 'progress') onProgress?.(m.done);
      else result = { sample: m.sample, seconds: m.seconds };
    });
    child.on('error', reject);
    child.on('exit', (code) => (result && code === 0 ? resolve(result) : reject(new Error(`fill process exited with ${code}`))));
    child.send(job);
  });
}

async function fillJob(job: FillJob): Promise<void> {
  const t0 = Date.now();
  const db = await openBenchDatabase(job.dataDir, job.file);
  try {
    const sample = await fillCertificates(db, {
      count: job.count,
      revoked: job.revoked,
      der: Buffer.from(job.der, 'base64'),
      sampleEvery: job.sampleEvery,
      crlShards: job.crlShards,
      onProgress: (done) => process.send!({ kind: 'progress', done } satisfies FillMessage),
    });
    await new Promise<void>((r) => process.send!({ kind: 'done', sample, seconds: (Date.now() - t0) / 1000 } satisfies FillMessage, () => r()));
  } finally {
    await db.close();
  }
}

if (require.main === module) {
  process.once('message', (job: FillJob) => {
    fillJob(job).then(
      () => process.exit(0),
      (e: unknown) => {
        const text = e instanceof Error ? e.message : String(e);
        console.error(`fill: ${text.slice(0, 2000)}`);
        process.exit(1);
      },
    );
  });
}
