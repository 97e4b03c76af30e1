/**
 * CRL build time and peak memory, one fresh process per measurement:
 * `node dist/bench/crl-child.js <sqlite file>` opens the database, then times
 * CrlService.refresh() — count, stream the revoked rows page by page, encode,
 * sign (P-256, node:crypto), store the full CRL and its delta — and reports
 * process.resourceUsage().maxRSS, which covers the whole process life.
 */
import { fork } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as os from 'node:os';
import * as der from '../src/asn1/der';
import { CrlService } from '../src/ca/crl-service';
import type { CaIdentity } from '../src/ca/hierarchy';
import { systemClock } from '../src/clock';
import type { Signer } from '../src/hsm/hsm';
import { silentLogger } from '../src/log';
import { CertificateStore } from '../src/storage/certificate-store';
import { CrlStore } from '../src/storage/crl-store';
import { openDatabase } from '../src/storage/database';

export interface CrlChildResult {
  entries: number;
  seconds: number;
  crlBytes: number;
  /** RSS once the database is open, before the build */
  startRssMB: number;
  /** peak RSS of the process (maxRSS) */
  peakRssMB: number;
}

export function p256Issuer(): CaIdentity {
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const publicKey = crypto.createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  const signer: Signer = {
    label: 'bench-crl',
    algorithm: 'ecdsa-p256',
    publicKey,
    sign: async (data) => crypto.sign('sha256', data, { key: privateKey, dsaEncoding: 'der' }),
  };
  return {
    certificate: Buffer.alloc(0),
    name: der.seq(der.set(der.seq(der.oid('2.5.4.3'), der.utf8('hsmca bench Issuing CA')))),
    spki: publicKey,
    keyId: crypto.randomBytes(20),
    notAfter: new Date(Date.now() + 365 * 86400_000),
    signer,
  };
}

async function measure(file: string): Promise<CrlChildResult> {
  const db = await openDatabase({ url: `sqlite:${file}`, dataDir: os.tmpdir() });
  try {
    const crls = new CrlService({
      issuer: p256Issuer(),
      certificates: new CertificateStore(db),
      crls: new CrlStore(db),
      clock: systemClock,
      log: silentLogger,
      settings: { validitySeconds: 86400, retentionSeconds: 0, crlUrl: 'http://127.0.0.1/crl', deltaCrlUrl: 'http://127.0.0.1/crl/delta' },
    });
    const startRss = process.memoryUsage().rss;
    const t0 = process.hrtime.bigint();
    const rec = await crls.refresh();
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    return {
      entries: rec.entries,
      seconds,
      crlBytes: rec.der.length,
      startRssMB: startRss / 2 ** 20,
      peakRssMB: process.resourceUsage().maxRSS / 1024,
    };
  } finally {
    await db.close();
  }
}

/** Runs one measurement in a fresh child process. */
export function measureCrlInChild(file: string): Promise<CrlChildResult> {
  return new Promise((resolve, reject) => {
    const child = fork(__filename, [file], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let result: CrlChildResult | undefined;
    child.on('message', (m: CrlChildResult) => (result = m));
    child.on('error', reject);
    child.on('exit', (code) => (result && code === 0 ? resolve(result) : reject(new Error(`CRL child exited with ${code}`))));
  });
}

if (require.main === module) {
  measure(process.argv[2]).then(
    (r) => process.send!(r, () => process.exit(0)),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
