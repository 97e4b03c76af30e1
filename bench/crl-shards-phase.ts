/**
 * The partitioned-CRL figure of `npm run bench` (phase crl): a database of
 * revoked certificates spread over 16 shards as issuance spreads them (1M, or
 * 100k with --quick), then (a) one fresh process rebuilding every shard in
 * turn, as the periodic refresh does: time per shard, total time, peak RSS;
 * (b) each shard built alone in a fresh process: its own peak RSS, which is
 * what a revocation costs (it rebuilds only its shard).
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CrlShardsChildResult, measureCrlShardsInChild } from './crl-shards-child';
import { fillInChild } from './fill';
import { tempDir } from './proc';
import { Summary, fmt, summarize } from './stats';

export interface CrlShardsRow {
  entries: number;
  shards: number;
  fillSeconds: number;
  /** every shard rebuilt by one process */
  all: { seconds: number; peakRssMB: number; startRssMB: number; crlMB: number };
  /** per shard, each in a process of its own */
  perShard: { entries: Summary; seconds: Summary; peakRssMB: Summary; crlMB: Summary };
  rows: { shard: number; entries: number; seconds: number; peakRssMB: number; crlBytes: number }[];
}

export async function phaseCrlShards(entries: number, shards: number, progress: (msg: string) => void): Promise<CrlShardsRow> {
  const dir = tempDir('hsmca-bench-crl-shards-');
  try {
    const file = path.join(dir, 'crl.db');
    progress(`4b. CRL shards: ${entries.toLocaleString('en')} revoked across ${shards} shards: inserting`);
    const { seconds: fillSeconds } = await fillInChild(
      { dataDir: dir, file, count: entries, revoked: true, der: crypto.randomBytes(640).toString('base64'), crlShards: shards },
      (d) => d % 250_000 === 0 && d < entries && progress(`  inserted ${d.toLocaleString('en')}`),
    );
    progress(`  inserted in ${fillSeconds.toFixed(1)} s`);
    const all: CrlShardsChildResult = await measureCrlShardsInChild(file, shards);
    const listed = all.builds.reduce((n, b) => n + b.entries, 0);
    if (listed !== entries) throw new Error(`the shard CRLs list ${listed} entries, not ${entries}`);
    progress(`  all ${shards} shards in one process: ${all.seconds.toFixed(2)} s, peak RSS ${all.peakRssMB.toFixed(0)} MB`);
    const rows: CrlShardsRow['rows'] = [];
    for (let k = 0; k < shards; k++) {
      const one = await measureCrlShardsInChild(file, shards, k);
      const b = one.builds[0];
      rows.push({ shard: k, entries: b.entries, seconds: b.seconds, peakRssMB: one.peakRssMB, crlBytes: b.crlBytes });
    }
    progress(`  each shard alone: up to ${Math.max(...rows.map((r) => r.seconds)).toFixed(2)} s, peak RSS up to ${Math.max(...rows.map((r) => r.peakRssMB)).toFixed(0)} MB`);
    return {
      entries,
      shards,
      fillSeconds,
      all: { seconds: all.seconds, peakRssMB: all.peakRssMB, startRssMB: all.startRssMB, crlMB: all.builds.reduce((n, b) => n + b.crlBytes, 0) / 2 ** 20 },
      perShard: {
        entries: summarize(rows.map((r) => r.entries)),
        seconds: summarize(rows.map((r) => r.seconds)),
        peakRssMB: summarize(rows.map((r) => r.peakRssMB)),
        crlMB: summarize(rows.map((r) => r.crlBytes / 2 ** 20)),
      },
      rows,
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export function reportCrlShards(r: CrlShardsRow, write: (l: string) => void): void {
  write('');
  write(`4b. Partitioned CRLs — ${r.entries.toLocaleString('en')} revoked across ${r.shards} shards (seconds, peak RSS MB; median and min–max over the shards)`);
  write(`  one shard alone (a revocation): ${fmt(r.perShard.seconds)} s, peak RSS ${fmt(r.perShard.peakRssMB)}, ${fmt(r.perShard.entries)} entries, CRL ${fmt(r.perShard.crlMB)} MB`);
  write(`  all ${r.shards} shards in one process (the periodic refresh): ${r.all.seconds.toFixed(2)} s, peak RSS ${r.all.peakRssMB.toFixed(0)} (at start ${r.all.startRssMB.toFixed(0)}), CRLs ${r.all.crlMB.toFixed(1)} MB in all`);
}
