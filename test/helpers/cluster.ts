/**
 * A whole hsmca deployment on one machine, out of real parts (issue 15,
 * contract section 8):
 *
 * - a private PostgreSQL cluster (initdb and pg_ctl of the Debian postgresql
 *   package) on its own port and in its own folder, so a test can stop and
 *   restart it without touching the shared server;
 * - a SoftHSM2 cluster of two tokens (helpers/softhsm.ts);
 * - N `hsmca serve` processes (the built CLI), each with its own data folder
 *   and port, all on that database and those tokens;
 * - HAProxy in front: round robin, health check on /readyz, retries and
 *   redispatch on a failed connection.
 *
 * Everything is removed by `stop()`.
 */
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';
import { AsnConvert } from '@peculiar/asn1-schema';
import { Certificate } from '@peculiar/asn1-x509';
import { BIN } from './server-process';
import { freePort } from './harness';
import { createSoftHsmTokens, SoftHsmTokens } from './softhsm';

/** The Debian postgresql package's server programs (the newest version installed). */
export function postgresBin(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!fs.existsSync(root)) return undefined;
  const versions = fs.readdirSync(root).filter((v) => fs.existsSync(path.join(root, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a));
  return versions.length ? path.join(root, versions[0], 'bin') : undefined;
}

export function haproxyBin(): string | undefined {
  return ['/usr/sbin/haproxy', '/usr/bin/haproxy', '/usr/local/sbin/haproxy'].find((p) => fs.existsSync(p));
}

/** Whether the parts are installed; HSMCA_TEST_REQUIRE=postgres makes a missing one a failure, not a skip. */
export function clusterDescribe(): (name: string, fn: () => void) => void {
  if (postgresBin() && haproxyBin()) return describe;
  const need = /(^|,)\s*postgres\s*($|,)/.test(process.env.HSMCA_TEST_REQUIRE ?? '');
  return (name: string) =>
    describe(name, () => {
      it('needs initdb/pg_ctl (postgresql) and haproxy', () => {
        if (need) throw new Error('postgresql server programs or haproxy are missing, and HSMCA_TEST_REQUIRE names postgres');
        console.warn(`SKIPPED: ${name}: postgresql server programs or haproxy are missing`);
      });
    });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs a command as the postgres user when we are root (initdb refuses root). */
function asPostgres(cmd: string, args: string[]): string {
  if (process.getuid?.() === 0) return execFileSync('runuser', ['-u', 'postgres', '--', cmd, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export interface PrivatePostgres {
  url: string;
  port: number;
  start(): Promise<void>;
  /** fast shutdown: sessions are ended, committed data stays */
  stop(): Promise<void>;
  destroy(): Promise<void>;
}

/** A PostgreSQL cluster of its own: initdb in a temporary folder, started by pg_ctl on a free port. */
export async function privatePostgres(root: string): Promise<PrivatePostgres> {
  const bin = postgresBin();
  if (!bin) throw new Error('the postgresql server programs are not installed');
  const dir = path.join(root, 'pg');
  fs.mkdirSync(dir, { mode: 0o700 });
  if (process.getuid?.() === 0) {
    execFileSync('chown', ['-R', 'postgres:postgres', dir]);
    fs.chmodSync(root, 0o755);
  }
  const data = path.join(dir, 'data');
  asPostgres(path.join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  const port = await freePort();
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=200`;
  const pgCtl = (...args: string[]) => asPostgres(path.join(bin, 'pg_ctl'), ['-D', data, '-l', path.join(dir, 'log'), '-w', ...args]);
  const pg: PrivatePostgres = {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    async start() {
      pgCtl('-o', opts, 'start');
    },
    async stop() {
      pgCtl('-m', 'fast', 'stop');
    },
    async destroy() {
      try {
        pgCtl('-m', 'immediate', 'stop');
      } catch {
        /* not running */
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  await pg.start();
  return pg;
}

export interface Instance {
  name: string;
  port: number;
  url: string;
  dataDir: string;
  child?: ChildProcess;
  /** its stderr (logs), for a failing test's message */
  logFile: string;
}

export interface HsmcaCluster {
  root: string;
  pg: PrivatePostgres;
  tokens: SoftHsmTokens;
  instances: Instance[];
  /** the balancer's URL: what clients use */
  url: string;
  adminToken: string;
  /** the environment every instance shares (for the CLI too: `hsmca audit verify`) */
  env: Record<string, string>;
  startInstance(i: Instance): Promise<void>;
  /** SIGTERM (graceful) or SIGKILL; resolves when the process has exited */
  stopInstance(i: Instance, sig?: NodeJS.Signals): Promise<void>;
  /** the instance that holds the leader lease now (from cluster_leader and cluster_instances) */
  leader(): Promise<Instance | undefined>;
  /** a query on the cluster's database */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  /** JSON request through the balancer (or to `base`) */
  api(method: string, p: string, opts?: { body?: unknown; token?: string | null; base?: string }): Promise<{ status: number; body: any }>;
  stop(): Promise<void>;
}

/** 64 hex characters: the first admin's token, the same for every instance. */
const ADMIN_TOKEN = createHash('sha256').update('hsmca cluster test admin').digest('hex');

export async function startCluster(opts: { instances?: number; env?: Record<string, string> } = {}): Promise<HsmcaCluster> {
  const n = opts.instances ?? 3;
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'hsmca-cluster-'));
  const pg = await privatePostgres(root);
  const tokens = await createSoftHsmTokens(['cluster-a', 'cluster-b']);
  const lbPort = await freePort();
  const url = `http://127.0.0.1:${lbPort}`;
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? root,
    SOFTHSM2_CONF: tokens.confPath,
    HSMCA_DATABASE_URL: pg.url,
    HSMCA_HSM: 'pkcs11',
    HSMCA_PKCS11_MODULE: tokens.module,
    HSMCA_PKCS11_TOKEN_LABEL: 'cluster-a,cluster-b',
    HSMCA_PKCS11_PIN: tokens.pin,
    HSMCA_PKCS11_SO_PIN: tokens.soPin,
    HSMCA_ADMIN_TOKEN: ADMIN_TOKEN,
    HSMCA_PUBLIC_URL: url,
    HSMCA_HTTPS_PORT: '0',
    HSMCA_INSTANCES: String(n),
    HSMCA_ISSUE_RATE_PER_TOKEN: '0',
    HSMCA_ISSUE_RATE_PER_ADDRESS: '0',
    HSMCA_AUTH_FAILURE_LIMIT: '0',
    HSMCA_LEADER_LEASE_SECONDS: '4',
    // at least the balancer's inter × fall, plus a slow check on a busy machine
    HSMCA_SHUTDOWN_DELAY_SECONDS: '2',
    HSMCA_SHUTDOWN_GRACE_SECONDS: '10',
    HSMCA_CRL_REFRESH_SECONDS: '300',
    HSMCA_LOG_LEVEL: 'info',
    ...opts.env,
  };
  const instances: Instance[] = [];
  for (let i = 0; i < n; i++) {
    const name = String.fromCharCode(97 + i);
    const port = await freePort();
    const dataDir = path.join(root, `instance-${name}`);
    instances.push({ name, port, url: `http://127.0.0.1:${port}`, dataDir, logFile: path.join(root, `instance-${name}.log`) });
  }
  const haproxyCfg = path.join(root, 'haproxy.cfg');
  fs.writeFileSync(
    haproxyCfg,
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
      'frontend hsmca',
      `  bind 127.0.0.1:${lbPort}`,
      '  default_backend instances',
      'backend instances',
      '  balance roundrobin',
      '  option httpchk GET /readyz',
      '  http-check expect status 200',
      '  timeout check 3s',
      '  default-server inter 250ms fastinter 250ms downinter 250ms fall 2 rise 2',
      ...instances.map((i) => `  server ${i.name} 127.0.0.1:${i.port} check`),
      '',
    ].join('\n'),
  );
  const haproxy = spawn(haproxyBin()!, ['-f', haproxyCfg, '-db'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let haproxyLog = '';
  haproxy.stderr!.on('data', (d) => (haproxyLog += d));

  let db: Client | undefined;
  const query = async <T>(sql: string, params: unknown[] = []): Promise<T[]> => {
    for (let attempt = 0; ; attempt++) {
      try {
        if (!db) {
          const c = new Client({ connectionString: pg.url });
          c.on('error', () => undefined);
          await c.connect();
          db = c;
        }
        return (await db.query(sql, params)).rows as T[];
      } catch (e) {
        await db?.end().catch(() => undefined);
        db = undefined;
        if (attempt >= 20) throw e;
        await sleep(250);
      }
    }
  };

  const startInstance = async (i: Instance) => {
    const log = fs.openSync(i.logFile, 'a');
    const child = spawn(process.execPath, [BIN, 'serve'], {
      env: { ...env, HSMCA_DATA_DIR: i.dataDir, HSMCA_PORT: String(i.port) },
      stdio: ['ignore', log, log],
    });
    fs.closeSync(log);
    i.child = child;
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        if ((await fetch(`${i.url}/readyz`)).status === 200) return;
      } catch {
        /* not up yet */
      }
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`instance ${i.name} did not start:\n${fs.readFileSync(i.logFile, 'utf8').slice(-3000)}`);
      await sleep(100);
    }
  };
  const stopInstance = async (i: Instance, sig: NodeJS.Signals = 'SIGTERM') => {
    const child = i.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill(sig);
    await exited;
  };

  const cluster: HsmcaCluster = {
    root,
    pg,
    tokens,
    instances,
    url,
    adminToken: ADMIN_TOKEN,
    env,
    startInstance,
    stopInstance,
    query,
    async leader() {
      const rows = await query<{ port: number }>(
        `SELECT i.port FROM cluster_leader l JOIN cluster_instances i ON i.id = l.instance_id WHERE l.id = 1 AND l.lease_until > $1`,
        [Date.now()],
      );
      return rows.length ? instances.find((i) => i.port === Number(rows[0].port)) : undefined;
    },
    async api(method, p, o = {}) {
      const headers: Record<string, string> = {};
      const token = o.token === undefined ? ADMIN_TOKEN : o.token;
      if (token) headers.authorization = `Bearer ${token}`;
      let body: string | undefined;
      if (o.body !== undefined) {
        body = JSON.stringify(o.body);
        headers['content-type'] = 'application/json';
      }
      const res = await fetch((o.base ?? url) + p, { method, headers, body });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        /* not JSON */
      }
      return { status: res.status, body: parsed };
    },
    async stop() {
      await Promise.all(instances.map((i) => stopInstance(i, 'SIGKILL')));
      if (haproxy.exitCode === null && haproxy.signalCode === null) {
        const gone = new Promise((r) => haproxy.once('exit', r));
        haproxy.kill('SIGKILL');
        await gone;
      }
      await db?.end().catch(() => undefined);
      await pg.destroy();
      await tokens.cleanup();
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
  try {
    // all at once: the start-up lock lets one initialise the CA while the others wait, then adopt it
    await Promise.all(instances.map(startInstance));
    // the balancer's health checks see them
    const deadline = Date.now() + 10_000;
    while ((await fetch(`${url}/readyz`).then((r) => r.status, () => 0)) !== 200) {
      if (Date.now() > deadline) throw new Error(`haproxy is not serving: ${haproxyLog}`);
      await sleep(100);
    }
  } catch (e) {
    await cluster.stop().catch(() => undefined);
    throw e;
  }
  return cluster;
}

/** A DER OCSP request (SHA-1 CertID, no nonce) for one serial of `issuerPem`, for GET /ocsp/{base64}. */
export function ocspRequestDer(issuerPem: string, serialHex: string): Buffer {
  const issuer = AsnConvert.parse(Buffer.from(issuerPem.replace(/-----[^-]+-----|\s/g, ''), 'base64'), Certificate);
  const nameHash = createHash('sha1').update(Buffer.from(AsnConvert.serialize(issuer.tbsCertificate.subject))).digest();
  const keyHash = createHash('sha1').update(Buffer.from(issuer.tbsCertificate.subjectPublicKeyInfo.subjectPublicKey)).digest();
  let serial = Buffer.from(serialHex.length % 2 ? '0' + serialHex : serialHex, 'hex');
  if (serial[0] & 0x80) serial = Buffer.concat([Buffer.from([0]), serial]);
  const tlv = (tag: number, body: Buffer) => {
    const len = body.length < 128 ? Buffer.from([body.length]) : body.length < 256 ? Buffer.from([0x81, body.length]) : Buffer.from([0x82, body.length >> 8, body.length & 255]);
    return Buffer.concat([Buffer.from([tag]), len, body]);
  };
  const sha1Alg = tlv(0x30, Buffer.concat([Buffer.from('06052b0e03021a', 'hex'), Buffer.from('0500', 'hex')]));
  const certId = tlv(0x30, Buffer.concat([sha1Alg, tlv(0x04, nameHash), tlv(0x04, keyHash), tlv(0x02, serial)]));
  const request = tlv(0x30, certId);
  const tbs = tlv(0x30, tlv(0x30, request));
  return tlv(0x30, tbs);
}

/** The certStatus of a one-response OCSP answer, read by the openssl CLI: good, revoked or unknown. */
export function ocspStatusByOpenssl(response: Buffer, dir: string): string {
  const file = path.join(dir, `ocsp-${process.hrtime.bigint()}.der`);
  fs.writeFileSync(file, response);
  const text = execFileSync('openssl', ['ocsp', '-respin', file, '-resp_text', '-noverify'], { encoding: 'utf8' });
  fs.rmSync(file);
  const m = text.match(/Cert Status: (\w+)/);
  return m ? m[1] : `unparsed: ${text.slice(0, 200)}`;
}

/** The CRL an instance (or the balancer) serves: its number and its serials (lowercase hex), read by the openssl CLI. */
export async function crlFrom(base: string, dir: string): Promise<{ number: number; serials: string[] }> {
  const res = await fetch(`${base}/crl`);
  if (res.status !== 200) throw new Error(`GET ${base}/crl: ${res.status}`);
  const file = path.join(dir, `crl-${process.hrtime.bigint()}.der`);
  fs.writeFileSync(file, Buffer.from(await res.arrayBuffer()));
  const text = execFileSync('openssl', ['crl', '-inform', 'DER', '-in', file, '-noout', '-text'], { encoding: 'utf8' });
  fs.rmSync(file);
  const number = Number(text.match(/X509v3 CRL Number:\s*\n\s*(\d+)/)?.[1] ?? NaN);
  const serials = [...text.matchAll(/Serial Number: ([0-9A-F]+)/g)].map((m) => m[1].toLowerCase().replace(/^0+/, ''));
  return { number, serials };
}

/** The status OCSP answers for `serial` on `base` (GET, as a browser would), judged by the openssl CLI. */
export async function ocspStatusAt(base: string, issuerPem: string, serial: string, dir: string): Promise<string> {
  const req = ocspRequestDer(issuerPem, serial).toString('base64');
  const res = await fetch(`${base}/ocsp/${encodeURIComponent(req)}`);
  if (res.status !== 200) return `http ${res.status}`;
  return ocspStatusByOpenssl(Buffer.from(await res.arrayBuffer()), dir);
}

/** Polls `check` every 100 ms until it holds or `ms` pass; returns how long it took (or throws with `what`). */
export async function within(ms: number, what: string, check: () => Promise<boolean>): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    if (await check().catch(() => false)) return Date.now() - t0;
    if (Date.now() - t0 > ms) throw new Error(`not within ${ms} ms: ${what}`);
    await sleep(100);
  }
}
