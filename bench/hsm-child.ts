/**
 * HSM baseline, in a fresh process: raw node:crypto P-256 signatures per second
 * on one thread (crypto.sign with a KeyObject, a sequential loop) against the
 * software HSM's signer (SoftHsm.open + generateKey + signer().sign, 32 in
 * flight), interleaved round by round so both share the machine's noise.
 */
import { fork } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SoftHsm } from '../src/hsm/soft/soft-hsm';
import { tempDir } from './proc';

export interface HsmRound {
  rawPerSec: number;
  softPerSec: number;
}

/** about the size of a leaf TBSCertificate */
const DATA = crypto.randomBytes(420);

function rawRate(seconds: number): number {
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const start = performance.now();
  const end = start + seconds * 1000;
  let n = 0;
  while (performance.now() < end) {
    crypto.sign('sha256', DATA, { key: privateKey, dsaEncoding: 'der' });
    n++;
  }
  return n / ((performance.now() - start) / 1000);
}

async function softRate(hsm: SoftHsm, label: string, seconds: number, inFlight: number): Promise<number> {
  const signer = await hsm.signer(label);
  const start = performance.now();
  const end = start + seconds * 1000;
  let n = 0;
  const worker = async () => {
    while (performance.now() < end) {
      await signer.sign(DATA);
      n++;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return n / ((performance.now() - start) / 1000);
}

async function measure(rounds: number, seconds: number): Promise<HsmRound[]> {
  const dir = tempDir('hsmca-bench-softhsm-');
  try {
    const hsm = await SoftHsm.open({ storePath: path.join(dir, 'soft-hsm.json'), pin: crypto.randomBytes(16).toString('hex') });
    try {
      await hsm.generateKey('bench-p256', 'ecdsa-p256');
      // warm-up of both paths
      rawRate(0.2);
      await softRate(hsm, 'bench-p256', 0.2, 32);
      const out: HsmRound[] = [];
      for (let r = 0; r < rounds; r++) {
        const rawPerSec = rawRate(seconds);
        const softPerSec = await softRate(hsm, 'bench-p256', seconds, 32);
        out.push({ rawPerSec, softPerSec });
      }
      return out;
    } finally {
      await hsm.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs the rounds in a fresh child process. */
export function measureHsmInChild(rounds: number, seconds: number): Promise<HsmRound[]> {
  return new Promise((resolve, reject) => {
    const child = fork(__filename, [String(rounds), String(seconds)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let result: HsmRound[] | undefined;
    child.on('message', (m: HsmRound[]) => (result = m));
    child.on('error', reject);
    child.on('exit', (code) => (result && code === 0 ? resolve(result) : reject(new Error(`HSM baseline child exited with ${code}`))));
  });
}

if (require.main === module) {
  measure(Number(process.argv[2] ?? 3), Number(process.argv[3] ?? 2)).then(
    (r) => process.send!(r, () => process.exit(0)),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
