/**
 * Figure 2b, in a fresh process: the issuance pipeline without HTTP, to show
 * where a certificate's CPU time goes.
 *
 * - The CSR check alone: parseCsrSync (structure, key import, proof of
 *   possession) over the P-256 CSRs, one after the other.
 * - The whole pipeline: IssuanceService.issue with 32 issuances in flight on
 *   an initialised CA (software HSM, SQLite in a fresh data folder), that is
 *   CSR check, profile, TBS encoding, the HSM signature, the reservation and
 *   the certificate with its audit event, and the shared fsync: everything
 *   POST /api/v1/certificates does but HTTP, token lookup and JSON. CPU time
 *   is process.cpuUsage(): every thread of the process (the fsyncs on the
 *   thread pool, the checkpointer).
 *
 * Rounds alternate the two, so both share the machine's noise.
 */
import { fork } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { csrFromPem, parseCsrSync } from '../src/ca/csr';
import type { Principal } from '../src/ca/issuance';
import { loadConfig } from '../src/config';
import { silentLogger } from '../src/log';
import { openCore } from '../src/core';
import { makeCsrsCached } from './pki';
import { tempDir } from './proc';

export interface PipelineRound {
  /** CPU time of one CSR check, µs (sequential) */
  csrCheckUs: number;
  /** certificates issued per second by the whole pipeline, 32 in flight */
  issuedPerSec: number;
  /** CPU time of the process per certificate, µs */
  cpuUsPerCert: number;
}

const IN_FLIGHT = 32;

function csrCheckUs(ders: Buffer[], seconds: number): number {
  const c0 = process.cpuUsage();
  const end = performance.now() + seconds * 1000;
  let n = 0;
  while (performance.now() < end) parseCsrSync(ders[n++ % ders.length]);
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / n;
}

async function measure(rounds: number, seconds: number, csrCount: number): Promise<PipelineRound[]> {
  const { csrs } = await makeCsrsCached('p256', csrCount);
  const ders = csrs.map(csrFromPem);
  const dir = tempDir('hsmca-bench-pipeline-');
  try {
    const core = await openCore(loadConfig({ HSMCA_DATA_DIR: dir }), { log: silentLogger, announce: () => undefined });
    try {
      const token = fs.readFileSync(path.join(dir, 'admin.token'), 'utf8').trim();
      const p = await core.tokens.authenticate(`Bearer ${token}`);
      const principal: Principal = { tokenId: p.id, name: p.name, role: p.role, scope: p.scope };
      const pipeline = async (secs: number) => {
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        const end = t0 + secs * 1000;
        let n = 0;
        await Promise.all(
          Array.from({ length: IN_FLIGHT }, async () => {
            while (performance.now() < end) {
              // the body as the HTTP route would hand it over: freshly parsed
              await core.issuance.issue({ csr: csrs[n % csrs.length] }, principal);
              n++;
            }
          }),
        );
        const c = process.cpuUsage(c0);
        return { issuedPerSec: n / ((performance.now() - t0) / 1000), cpuUsPerCert: (c.user + c.system) / n };
      };
      // warm-up of both
      csrCheckUs(ders, 0.2);
      await pipeline(0.5);
      const out: PipelineRound[] = [];
      for (let r = 0; r < rounds; r++) out.push({ csrCheckUs: csrCheckUs(ders, seconds), ...(await pipeline(seconds)) });
      return out;
    } finally {
      await core.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs the rounds in a fresh child process. */
export function measurePipelineInChild(rounds: number, seconds: number, csrCount: number): Promise<PipelineRound[]> {
  return new Promise((resolve, reject) => {
    const child = fork(__filename, [String(rounds), String(seconds), String(csrCount)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let result: PipelineRound[] | undefined;
    child.on('message', (m: PipelineRound[]) => (result = m));
    child.on('error', reject);
    child.on('exit', (code) => (result && code === 0 ? resolve(result) : reject(new Error(`issuance pipeline child exited with ${code}`))));
  });
}

if (require.main === module) {
  measure(Number(process.argv[2] ?? 3), Number(process.argv[3] ?? 2), Number(process.argv[4] ?? 50)).then(
    (r) => process.send!(r, () => process.exit(0)),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
