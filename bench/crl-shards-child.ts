/**
 * Partitioned CRL build time and peak memory (HSMCA_CRL_SHARDS), in fresh
 * processes like crl-child.ts:
 *
 * - `all`: one process rebuilds every shard in turn, as the periodic refresh
 *   does (CrlShards.rebuild(true)): each shard's time, the total time and the
 *   process's peak RSS;
 * - `one K`: one process builds shard K alone: that shard's own peak RSS
 *   (maxRSS covers the whole life of a process, so a per-shard peak needs a
 *   process per shard).
 */
import { fork } from 'node:child_process';
import * as os from 'node:os';
import { CrlShardPlan, CrlShards } from '../src/ca/crl-shards';
import { systemClock } from '../src/clock';
import { silentLogger } from '../src/log';
import { CertificateStore } from '../src/storage/certificate-store';
import { CrlStore } from '../src/storage/crl-store';
import { openDatabase } from '../src/storage/database';
import { p256Issuer } from './crl-child';

export interface ShardBuild {
  shard: number;
  entries: number;
  seconds: number;
  crlBytes: number;
}

export interface CrlShardsChildResult {
  builds: ShardBuild[];
  /** wall time of every build of this process */
  seconds: number;
  /** RSS once the database is open, before the builds */
  startRssMB: number;
  /** peak RSS of the process (maxRSS) */
  peakRssMB: number;
}

async function measure(file: string, count: number, only: number | undefined): Promise<CrlShardsChildResult> {
  const db = await openDatabase({ url: `sqlite:${file}`, dataDir: os.tmpdir() });
  try {
    const shards = new CrlShards({
      plan: new CrlShardPlan(count, 'http://127.0.0.1/crl'),
      issuer: p256Issuer(),
      certificates: new CertificateStore(db),
      crls: new CrlStore(db),
      clock: systemClock,
      log: silentLogger,
      settings: { validitySeconds: 86400, retentionSeconds: 0 },
    });
    const startRss = process.memoryUsage().rss;
    const builds: ShardBuild[] = [];
    const t0 = process.hrtime.bigint();
    for (let k = only ?? 0; k < (only === undefined ? count : only + 1); k++) {
      const t = process.hrtime.bigint();
      const rec = await shards.build(k);
      builds.push({ shard: k, entries: rec.entries, seconds: Number(process.hrtime.bigint() - t) / 1e9, crlBytes: rec.der.length });
    }
    return {
      builds,
      seconds: Number(process.hrtime.bigint() - t0) / 1e9,
      startRssMB: startRss / 2 ** 20,
      peakRssMB: process.resourceUsage().maxRSS / 1024,
    };
  } finally {
    await db.close();
  }
}

/** Builds every shard (`only` undefined) or one shard in a fresh child process. */
export function measureCrlShardsInChild(file: string, count: number, only?: number): Promise<CrlShardsChildResult> {
  return new Promise((resolve, reject) => {
    const args = [file, String(count), ...(only === undefined ? [] : [String(only)])];
    const child = fork(__filename, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let result: CrlShardsChildResult | undefined;
    child.on('message', (m: CrlShardsChildResult) => (result = m));
    child.on('error', reject);
    child.on('exit', (code) => (result && code === 0 ? resolve(result) : reject(new Error(`CRL shards child exited with ${code}`))));
  });
}

if (require.main === module) {
  const [file, count, only] = process.argv.slice(2);
  measure(file, Number(count), only === undefined ? undefined : Number(only)).then(
    (r) => process.send!(r, () => process.exit(0)),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
