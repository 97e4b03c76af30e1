/**
 * The pre-issuance lint's cost per certificate and per CRL entry, in process:
 * `node dist/bench/lint-cost.js`. It lints a real tls-server TBS (P-256 key,
 * SANs, as issuance writes it) and a CRL TBS of 100,000 entries.
 */
import { randomSerial } from '../src/ca/certificate';
import { buildCrl } from '../src/ca/crl-encoder';
import { lintCertificateTbs, lintCrlTbs } from '../src/ca/lint/run-lints';
import { sampleTlsServerTbs } from './lint-sample';

async function main(): Promise<void> {
  const { tbs, ctx, spki, name, issuerKeyId } = sampleTlsServerTbs();
  const now = Date.now();
  if (lintCertificateTbs(tbs, ctx).errors.length) throw new Error('the sample certificate fails a lint');
  for (let i = 0; i < 2000; i++) lintCertificateTbs(tbs, ctx);
  const n = 20_000;
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) lintCertificateTbs(tbs, ctx);
  const c = process.cpuUsage(c0);
  console.log(`certificate lint: ${((c.user + c.system) / n).toFixed(1)} µs CPU per tls-server certificate`);

  let crlTbs = Buffer.alloc(0);
  const signer = { label: 'x', algorithm: 'ecdsa-p256' as const, publicKey: spki, sign: async (d: Buffer) => ((crlTbs = Buffer.from(d)), Buffer.alloc(64)) };
  const entries = Array.from({ length: 100_000 }, (_, i) => ({ serial: randomSerial(), revokedAt: new Date(now), reason: i % 2 ? 1 : undefined }));
  async function* pages() {
    for (let i = 0; i < entries.length; i += 1000) yield entries.slice(i, i + 1000);
  }
  await buildCrl({ issuerName: name, authorityKeyId: issuerKeyId, crlNumber: 7n, thisUpdate: new Date(now), nextUpdate: new Date(now + 86_400_000), signer }, pages(), entries.length);
  const t0 = performance.now();
  const r = lintCrlTbs(crlTbs, { issuerKeyId, previousNumber: 6n });
  const ms = performance.now() - t0;
  if (r.errors.length) throw new Error('the sample CRL fails a lint');
  console.log(`CRL lint: ${ms.toFixed(0)} ms for 100,000 entries (${((ms * 1000) / 100_000).toFixed(2)} µs per entry)`);
}

void main();
