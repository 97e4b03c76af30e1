/**
 * Signing throughput of the PKCS#11 backend against a bare pkcs11js loop, on one
 * SoftHSM2 token (or a real token: set HSMCA_BENCH_PKCS11_MODULE, _TOKEN, _PIN).
 *
 *   npx tsc -p tsconfig.build.json && node dist/bench/pkcs11-sign.js [seconds=3] [inFlight=64] [poolSizes=8] [rounds=3] [signThreads=0,2]
 *
 * Without a token configured it makes a temporary SoftHSM2 token (SOFTHSM2_CONF
 * is set before the module is first initialised).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { bareSignLoop } from '../src/hsm/pkcs11/bare-sign-loop';
import { Pkcs11Hsm } from '../src/hsm/pkcs11/pkcs11-hsm';

export interface Pkcs11SignBenchResult {
  module: string;
  seconds: number;
  rounds: number;
  inFlight: number;
  /** plain synchronous C_SignInit/C_Sign loop on one session, P-256: median of the rounds */
  bareSignaturesPerSecond: number;
  /** the backend (hash, pool, async C_Sign, DER) by pool size: median of the rounds */
  backend: { sessionsPerToken: number; signThreads: number; signaturesPerSecond: number; ratioToBare: number }[];
  /** every measurement, in the order taken (bare and backend interleaved to share the machine's noise) */
  samples: { what: string; signaturesPerSecond: number }[];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function backendRate(hsm: Pkcs11Hsm, keyLabel: string, seconds: number, inFlight: number): Promise<number> {
  const signer = await hsm.signer(keyLabel);
  const data = Buffer.from('hsmca pkcs11 bench: a to-be-signed certificate of a typical size'.repeat(8));
  const start = performance.now();
  const end = start + seconds * 1000;
  let n = 0;
  const worker = async () => {
    while (performance.now() < end) {
      await signer.sign(data);
      n++;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return n / ((performance.now() - start) / 1000);
}

export async function runPkcs11SignBench(opts: {
  module: string;
  tokenLabel: string;
  pin: string;
  seconds?: number;
  inFlight?: number;
  poolSizes?: number[];
  /** Pkcs11Options.signThreads values to compare (0: C_SignInit on the event loop + libuv C_Sign) */
  signThreads?: number[];
  rounds?: number;
}): Promise<Pkcs11SignBenchResult> {
  const seconds = opts.seconds ?? 3;
  const inFlight = opts.inFlight ?? 64;
  const keyLabel = 'hsmca-bench-p256';
  const setup = await Pkcs11Hsm.open({ module: opts.module, tokenLabels: [opts.tokenLabel], pin: opts.pin });
  try {
    if (!(await setup.getKey(keyLabel))) await setup.generateKey(keyLabel, 'ecdsa-p256');
    // warm-up of both paths
    await bareSignLoop({ module: opts.module, tokenLabel: opts.tokenLabel, pin: opts.pin, keyLabel, seconds: 0.3 });
    await backendRate(setup, keyLabel, 0.3, inFlight);
  } finally {
    await setup.close();
  }
  const rounds = opts.rounds ?? 3;
  const configs = (opts.poolSizes ?? [8]).flatMap((sessionsPerToken) =>
    (opts.signThreads ?? [0, 2]).map((signThreads) => ({ sessionsPerToken, signThreads, key: `backend/${sessionsPerToken}s/${signThreads}t` })),
  );
  const samples: Pkcs11SignBenchResult['samples'] = [];
  const bare: number[] = [];
  const rates = new Map<string, number[]>(configs.map((c) => [c.key, []]));
  for (let round = 0; round < rounds; round++) {
    const b = await bareSignLoop({ module: opts.module, tokenLabel: opts.tokenLabel, pin: opts.pin, keyLabel, seconds });
    bare.push(b);
    samples.push({ what: 'bare', signaturesPerSecond: Math.round(b) });
    for (const c of configs) {
      const hsm = await Pkcs11Hsm.open({
        module: opts.module,
        tokenLabels: [opts.tokenLabel],
        pin: opts.pin,
        sessionsPerToken: c.sessionsPerToken,
        signThreads: c.signThreads,
      });
      try {
        const rate = await backendRate(hsm, keyLabel, seconds, inFlight);
        rates.get(c.key)!.push(rate);
        samples.push({ what: c.key, signaturesPerSecond: Math.round(rate) });
      } finally {
        await hsm.close();
      }
    }
  }
  const bareMedian = median(bare);
  return {
    module: opts.module,
    seconds,
    rounds,
    inFlight,
    bareSignaturesPerSecond: Math.round(bareMedian),
    backend: configs.map((c) => {
      const rate = median(rates.get(c.key)!);
      return {
        sessionsPerToken: c.sessionsPerToken,
        signThreads: c.signThreads,
        signaturesPerSecond: Math.round(rate),
        ratioToBare: Math.round((rate / bareMedian) * 100) / 100,
      };
    }),
    samples,
  };
}

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 3);
  const inFlight = Number(process.argv[3] ?? 64);
  const poolSizes = (process.argv[4] ?? '8').split(',').map(Number);
  const rounds = Number(process.argv[5] ?? 3);
  const signThreads = (process.argv[6] ?? '0,2').split(',').map(Number);
  let module = process.env.HSMCA_BENCH_PKCS11_MODULE;
  let tokenLabel = process.env.HSMCA_BENCH_PKCS11_TOKEN;
  let pin = process.env.HSMCA_BENCH_PKCS11_PIN;
  let tmp: string | undefined;
  if (!module || !tokenLabel || !pin) {
    module = ['/usr/lib/softhsm/libsofthsm2.so', '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so', '/usr/local/lib/softhsm/libsofthsm2.so'].find(
      (p) => existsSync(p),
    );
    if (!module) throw new Error('SoftHSM2 not found; set HSMCA_BENCH_PKCS11_MODULE, _TOKEN and _PIN');
    tmp = mkdtempSync(path.join(os.tmpdir(), 'hsmca-bench-softhsm-'));
    mkdirSync(path.join(tmp, 'tokens'));
    const conf = path.join(tmp, 'softhsm2.conf');
    writeFileSync(conf, `directories.tokendir = ${path.join(tmp, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\n`);
    process.env.SOFTHSM2_CONF = conf;
    tokenLabel = 'hsmca-bench';
    pin = 'bench-pin-1234';
    execFileSync('softhsm2-util', ['--init-token', '--free', '--label', tokenLabel, '--pin', pin, '--so-pin', 'bench-so-1234'], {
      stdio: 'ignore',
    });
  }
  try {
    const result = await runPkcs11SignBench({ module, tokenLabel, pin, seconds, inFlight, poolSizes, rounds, signThreads });
    console.log(JSON.stringify({ cpus: os.cpus().length, uvThreadpool: process.env.UV_THREADPOOL_SIZE ?? '4 (default)', ...result }, null, 2));
  } finally {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    process.exitCode = 1;
  });
}
