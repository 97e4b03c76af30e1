/**
 * npm run bench:cluster — several hsmca instances behind HAProxy on one
 * PostgreSQL database (issue 15, contract section 8): issuance and OCSP
 * throughput through the balancer with 1, 2 and 3 instances, and the CPU
 * time the hsmca processes spend per certificate and per OCSP response
 * (utime + stime from /proc/PID/stat), so a reader can size a deployment.
 *
 * Parts: the PostgreSQL server of HSMCA_BENCH_DATABASE_URL (default
 * postgres://postgres@127.0.0.1:5432/test; a fresh database is created and
 * dropped), the software HSM (initialised once, its store copied read-only
 * to each instance's data folder, as docs/hsm.md describes), HAProxy
 * (Debian), autocannon in its own process (load-worker.ts).
 *
 * Settings: BENCH_CLUSTER_SECONDS (measured seconds per phase, default 10),
 * BENCH_CLUSTER_CONNECTIONS (default 16), BENCH_CLUSTER_SIZES (default 1,2,3).
 */
import { ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';
import { LoadGenerator, LoadResult } from './load';
import { freePort, have, sleep, tempDir } from './proc';
import { issuerInfo, makeCsrsCached, ocspGetPath, ocspRequest, pemToDer } from './pki';

const SECONDS = Number(process.env.BENCH_CLUSTER_SECONDS ?? 10);
const CONNECTIONS = Number(process.env.BENCH_CLUSTER_CONNECTIONS ?? 16);
const SIZES = (process.env.BENCH_CLUSTER_SIZES ?? '1,2,3').split(',').map(Number);
const BASE_URL = process.env.HSMCA_BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const BIN = path.join(__dirname, '..', '..', 'bin', 'hsmca.js');
const ADMIN = createHash('sha256').update('bench cluster admin').digest('hex');
const PIN = 'bench-cluster-pin-0123456789';
const CLK_TCK = 100;

interface Phase {
  instances: number;
  what: 'issuance' | 'OCSP';
  result: LoadResult;
  /** CPU seconds of all hsmca processes during the measured run */
  cpuSeconds: number;
  /** the PostgreSQL server's processes, CPU seconds (all backends) */
  pgCpuSeconds: number;
}

/** utime + stime of one process, in seconds. */
function cpuOf(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

/** CPU seconds of every process whose command is postgres (the server and its backends). */
function postgresCpu(): number {
  let sum = 0;
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (fs.readFileSync(`/proc/${name}/comm`, 'latin1').trim() !== 'postgres') continue;
      sum += cpuOf(Number(name));
    } catch {
      /* exited */
    }
  }
  return sum;
}

async function waitReady(url: string, child: ChildProcess, log: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      if ((await fetch(`${url}/readyz`)).status === 200) return;
    } catch {
      /* not yet */
    }
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`hsmca did not start:\n${fs.readFileSync(log, 'utf8').slice(-2000)}`);
    await sleep(100);
  }
}

async function main(): Promise<void> {
  if (!have('haproxy') && !fs.existsSync('/usr/sbin/haproxy')) throw new Error('haproxy is not installed');
  const root = tempDir('hsmca-bench-cluster-');
  const dbName = `hsmca_bench_cluster_${randomBytes(4).toString('hex')}`;
  const admin = new Client({ connectionString: BASE_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  const u = new URL(BASE_URL);
  u.pathname = `/${dbName}`;
  const dbUrl = u.toString();
  const lbPort = await freePort();
  const lbUrl = `http://127.0.0.1:${lbPort}`;
  const dirs = [0, 1, 2].map((i) => path.join(root, `instance-${i}`));
  const env = (i: number, port: number): NodeJS.ProcessEnv => ({
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    HSMCA_DATA_DIR: dirs[i],
    HSMCA_PORT: String(port),
    HSMCA_HTTPS_PORT: '0',
    HSMCA_DATABASE_URL: dbUrl,
    HSMCA_HSM: 'soft',
    HSMCA_HSM_PIN: PIN,
    HSMCA_ADMIN_TOKEN: ADMIN,
    HSMCA_PUBLIC_URL: lbUrl,
    HSMCA_ISSUE_RATE_PER_TOKEN: '0',
    HSMCA_ISSUE_RATE_PER_ADDRESS: '0',
    HSMCA_AUTH_FAILURE_LIMIT: '0',
    HSMCA_LOG_LEVEL: 'warn',
  });
  const start = async (i: number, n: number) => {
    const port = await freePort();
    const log = path.join(root, `instance-${i}.log`);
    const fd = fs.openSync(log, 'a');
    const child = spawn(process.execPath, [BIN, 'serve'], { env: { ...env(i, port), HSMCA_INSTANCES: String(n) }, stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    await waitReady(`http://127.0.0.1:${port}`, child, log);
    return { child, port };
  };
  const stop = async (child: ChildProcess, sig: NodeJS.Signals = 'SIGTERM') => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((r) => child.once('exit', r));
    child.kill(sig);
    await gone;
  };

  const phases: Phase[] = [];
  const lg = new LoadGenerator();
  try {
    // init once; the software HSM's store is then copied read-only to every instance (docs/hsm.md)
    const init = await start(0, 1);
    await stop(init.child);
    for (const d of dirs.slice(1)) {
      fs.mkdirSync(d, { recursive: true, mode: 0o700 });
      fs.copyFileSync(path.join(dirs[0], 'soft-hsm.json'), path.join(d, 'soft-hsm.json'));
    }
    for (const d of dirs) fs.chmodSync(path.join(d, 'soft-hsm.json'), 0o444);
    const { csrs } = await makeCsrsCached('p256', 200);

    for (const n of SIZES) {
      const running: { child: ChildProcess; port: number }[] = [];
      for (let i = 0; i < n; i++) running.push(await start(i, n));
      const cfg = path.join(root, `haproxy-${n}.cfg`);
      fs.writeFileSync(
        cfg,
        [
          'global',
          '  maxconn 4096',
          'defaults',
          '  mode http',
          '  timeout connect 1s',
          '  timeout client 30s',
          '  timeout server 30s',
          '  retries 3',
          '  option redispatch 1',
          '  http-reuse always',
          'frontend hsmca',
          `  bind 127.0.0.1:${lbPort}`,
          '  default_backend instances',
          'backend instances',
          '  balance roundrobin',
          '  option httpchk GET /readyz',
          '  http-check expect status 200',
          '  default-server inter 500ms fall 1 rise 1',
          ...running.map((r, i) => `  server i${i} 127.0.0.1:${r.port} check`),
          '',
        ].join('\n'),
      );
      const haproxy = spawn(fs.existsSync('/usr/sbin/haproxy') ? '/usr/sbin/haproxy' : 'haproxy', ['-f', cfg, '-db'], { stdio: 'ignore' });
      try {
        while ((await fetch(`${lbUrl}/readyz`).then((r) => r.status, () => 0)) !== 200) await sleep(100);
        const headers = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };
        const issueSpec = {
          url: lbUrl,
          connections: CONNECTIONS,
          durationSec: SECONDS,
          headers,
          requests: csrs.map((csr) => ({ method: 'POST' as const, path: '/api/v1/certificates', body: Buffer.from(JSON.stringify({ csr })).toString('base64') })),
          expectStatus: 201,
        };
        await lg.run({ ...issueSpec, durationSec: 2 });
        const cpuOfAll = async () => {
          try {
            return running.reduce((s, r) => s + cpuOf(r.child.pid!), 0);
          } catch (e) {
            await sleep(500);
            const gone = running.map((r, i) => `instance ${i}: pid ${r.child.pid}, exit ${r.child.exitCode}, signal ${r.child.signalCode}`).join('; ');
            throw new Error(`an instance is gone (${gone}): ${(e as Error).message}`);
          }
        };
        const measure = async (what: Phase['what'], spec: Parameters<LoadGenerator['run']>[0]) => {
          const dead = running.findIndex((r) => r.child.exitCode !== null || r.child.signalCode !== null);
          if (dead >= 0) throw new Error(`instance ${dead} exited:\n${fs.readFileSync(path.join(root, `instance-${dead}.log`), 'utf8').slice(-3000)}`);
          const cpu0 = await cpuOfAll();
          const pg0 = postgresCpu();
          const result = await lg.run(spec);
          const cpuSeconds = (await cpuOfAll()) - cpu0;
          phases.push({ instances: n, what, result, cpuSeconds, pgCpuSeconds: postgresCpu() - pg0 });
          process.stderr.write(`bench:cluster: ${n} instance(s), ${what}: ${result.rps.toFixed(0)}/s, p50 ${result.p50.toFixed(1)} ms, p99 ${result.p99.toFixed(1)} ms, ${result.unexpected + result.errors} failed\n`);
        };
        await measure('issuance', issueSpec);
        // OCSP for certificates this CA issued (pre-signed responses, as clients mostly ask)
        const ca = (await (await fetch(`${lbUrl}/api/v1/ca`)).json()) as { issuer: string };
        const issuer = issuerInfo(pemToDer(ca.issuer));
        const list = (await (await fetch(`${lbUrl}/api/v1/certificates?limit=200`, { headers })).json()) as { items: { serialNumber: string }[] };
        const ocspRequests = list.items.map((c) => ({ method: 'GET' as const, path: ocspGetPath('/ocsp', ocspRequest(issuer, Buffer.from(c.serialNumber, 'hex'))) }));
        const ocspSpec = { url: lbUrl, connections: CONNECTIONS, durationSec: SECONDS, requests: ocspRequests, expectStatus: 200 };
        await lg.run({ ...ocspSpec, durationSec: 2 });
        await measure('OCSP', ocspSpec);
      } finally {
        haproxy.kill('SIGKILL');
        for (const r of running) await stop(r.child);
      }
    }
  } finally {
    await lg.close();
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch(() => undefined);
    await admin.end();
    if (phases.length === SIZES.length * 2) fs.rmSync(root, { recursive: true, force: true });
    else process.stderr.write(`bench:cluster: logs kept in ${root}\n`);
  }

  const cpus = os.cpus().length;
  const [load1] = os.loadavg();
  const lines = [
    `bench:cluster on ${cpus} CPUs (${os.cpus()[0]?.model ?? 'unknown'}), node ${process.version}, PostgreSQL at ${new URL(BASE_URL).host}, software HSM, HAProxy round robin, ${CONNECTIONS} connections, ${SECONDS} s per phase; load average at the end ${load1.toFixed(1)} (other processes share the CPUs: throughput is then lower than the machine can do, CPU per answer much less affected)`,
    '',
    '| instances | work | per second | p50 ms | p99 ms | failed | hsmca CPU ms per answer | PostgreSQL CPU ms per answer |',
    '|---|---|---|---|---|---|---|---|',
    ...phases.map((p) => {
      const answers = p.result.ok || 1;
      return `| ${p.instances} | ${p.what} | ${p.result.rps.toFixed(0)} | ${p.result.p50.toFixed(1)} | ${p.result.p99.toFixed(1)} | ${p.result.unexpected + p.result.errors} | ${((p.cpuSeconds * 1000) / answers).toFixed(2)} | ${((p.pgCpuSeconds * 1000) / answers).toFixed(2)} |`;
    }),
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

main().catch((e) => {
  process.stderr.write(`bench:cluster failed: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
