/**
 * Measures buildCrl time and peak RSS for large CRLs with a P-256 signer.
 *
 *   npx tsc --outDir /tmp/hsmca-bench --target ES2022 --module commonjs --esModuleInterop --skipLibCheck bench/crl-build.ts
 *   node /tmp/hsmca-bench/bench/crl-build.js            # 10k, 100k and 1M, one child process each
 *   node /tmp/hsmca-bench/bench/crl-build.js 1000000    # one size, in this process
 *   node /tmp/hsmca-bench/bench/crl-build.js 1000000 --no-hint   # without expectedCount
 *
 * Entries are generated page by page (1,000 per page, like a database cursor):
 * 16-octet serials, a reason on two thirds of them, an invalidity date on one
 * in five. Peak RSS is the process's maxRSS, so each size runs in its own process.
 */
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import { RevokedEntry, buildCrl } from '../src/ca/crl-encoder';
import * as der from '../src/asn1/der';
import type { Signer } from '../src/hsm/hsm';

const PAGE = 1000;

function p256Signer(): Signer {
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return {
    label: 'bench',
    algorithm: 'ecdsa-p256',
    publicKey: crypto.createPublicKey(privateKey).export({ format: 'der', type: 'spki' }),
    sign: async (data) => crypto.sign('sha256', data, { key: privateKey, dsaEncoding: 'der' }),
  };
}

async function* revokedPages(count: number): AsyncIterable<RevokedEntry[]> {
  const base = Date.UTC(2024, 0, 1);
  for (let done = 0; done < count; ) {
    const n = Math.min(PAGE, count - done);
    const serials = crypto.randomBytes(16 * n);
    const page: RevokedEntry[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const k = done + i;
      const serial = serials.subarray(16 * i, 16 * i + 16);
      serial[0] = (serial[0] & 0x7f) | 1;
      page[i] = {
        serial,
        revokedAt: new Date(base + k * 1000),
        reason: k % 3 === 0 ? undefined : [1, 3, 4, 5][k % 4],
        invalidityDate: k % 5 === 0 ? new Date(base - k * 1000) : undefined,
      };
    }
    done += n;
    yield page;
  }
}

async function runOne(count: number, hint: boolean): Promise<void> {
  const signer = p256Signer();
  const issuerName = der.seq(der.set(der.seq(der.oid('2.5.4.3'), der.utf8('Bench Issuing CA'))));
  const rssBefore = process.memoryUsage().rss;
  const t0 = process.hrtime.bigint();
  const crl = await buildCrl(
    {
      issuerName,
      authorityKeyId: crypto.randomBytes(20),
      crlNumber: 1234n,
      thisUpdate: new Date(),
      nextUpdate: new Date(Date.now() + 7 * 86400e3),
      signer,
      issuingDistributionPoint: 'http://crl.example.test/bench.crl',
      freshestCrl: 'http://crl.example.test/bench-delta.crl',
    },
    revokedPages(count),
    hint ? count : undefined,
  );
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const peakMb = process.resourceUsage().maxRSS / 1024;
  // generation alone, for reference
  const g0 = process.hrtime.bigint();
  let seen = 0;
  for await (const page of revokedPages(count)) seen += page.length;
  const genMs = Number(process.hrtime.bigint() - g0) / 1e6;
  console.log(
    JSON.stringify({
      entries: count,
      expectedCount: hint,
      ms: Math.round(ms),
      generateOnlyMs: Math.round(genMs), // time to produce the pages alone (included in ms)
      crlMB: +(crl.length / 2 ** 20).toFixed(1),
      startRssMB: +(rssBefore / 2 ** 20).toFixed(1),
      peakRssMB: +peakMb.toFixed(1),
      seen,
    }),
  );
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const hint = !args.includes('--no-hint');
  const sizes = args.filter((a) => /^\d+$/.test(a)).map(Number);
  if (sizes.length === 1) return runOne(sizes[0], hint);
  for (const h of ['', '--no-hint']) {
    for (const n of sizes.length ? sizes : [10_000, 100_000, 1_000_000]) {
      const r = spawnSync(process.execPath, [__filename, String(n), ...(h ? [h] : [])], { stdio: 'inherit' });
      if (r.status !== 0) process.exitCode = 1;
    }
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
