/**
 * Issue 18's figures, measured the way clients behave, each target beside
 * its peer in the same run, alternating round by round:
 *
 *   sqlite   issuance on SQLite (the default, every certificate durable): hsmca
 *            vs cfssl serve storing nothing, c=8 and 32
 *   pg       issuance on PostgreSQL: hsmca vs cfssl serve with its certdb on
 *            the same PostgreSQL server (cfssl's own table schema), c=8 and 32
 *   ocsp     OCSP with one request per connection (ab, HTTP/1.0, no
 *            keep-alive): hsmca vs openssl ocsp -multi 2 vs a bare node:http
 *            floor; and with keep-alive (50 distinct requests) vs cfssl
 *            ocspserve; GET and POST
 *   workers  issuance with HSMCA_WORKERS=1 vs 2, c=8 and 32, SQLite and PostgreSQL
 *   parts    hsmca's per-certificate work above the floor, part by part, in process
 *
 * Keep-alive load (issuance, OCSP keep-alive) is wrk with a Lua script that
 * rotates through the requests (bench/wrk.ts), as the outside run used;
 * without wrk, the autocannon worker of bench/load.ts. Each target gets one
 * unmeasured warm-up run (--warm seconds) before its measured rounds: the
 * first seconds of load after start-up run at 60-70% of the warm rate.
 * Every load figure comes with the server's CPU time per answer (its process
 * tree, from /proc/PID/stat). `npm run bench` runs this after its own phases.
 * Usage:
 *
 *   npm run bench:speed -- [--only=sqlite,pg,ocsp,workers,parts] [--seconds=5] [--rounds=3] [--warm=2]
 *
 * PostgreSQL: HSMCA_BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test)
 * names a server and a database to connect to; each run creates databases of
 * its own there and drops them at the end.
 */
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';
import { cpuSnapshot, cpuUse } from './cpu';
import { Hsmca, removeDataDir, startHsmca } from './hsmca';
import { LoadGenerator, LoadRequest, LoadSpec } from './load';
import { cfsslResponsesFile, cfsslSign, cfsslSignBody, makePeerPki, startCfsslOcspServe, startCfsslServe, startOpensslOcsp, writeOcspIndex } from './peers';
import { issuerInfo, makeCsrsCached, ocspGetPath, ocspRequest, pemToDer, randomSerial } from './pki';
import { Server, freePort, startServer, tempDir } from './proc';
import { median } from './stats';
import { hasWrk, wrk } from './wrk';
import { readCertificate } from '../src/ca/certificate';

const ROOT = path.resolve(__dirname, '..', '..');
const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? dflt;
const ONLY = opt('only', 'sqlite,pg,ocsp,workers,parts').split(',');
const SECONDS = Number(opt('seconds', '5'));
const ROUNDS = Number(opt('rounds', '3'));
const WARM = Number(opt('warm', '2'));
const WRK = hasWrk();
const PG_BASE = process.env.HSMCA_BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const HSMCA_ENV = { HSMCA_ISSUE_RATE_PER_TOKEN: '0', HSMCA_ISSUE_RATE_PER_ADDRESS: '0' };

const log = (m: string) => process.stderr.write(`[speed ${new Date().toISOString().slice(11, 19)}] ${m}\n`);
const b64 = (s: string | Buffer) => (typeof s === 'string' ? Buffer.from(s, 'utf8') : s).toString('base64');

interface Figure {
  rps: number[];
  cpuUs: number[];
  /** CPU µs per answer of the PostgreSQL server's processes (the pg phase reads it) */
  dbCpuUs: number[];
  /** CPUs' worth of the whole machine busy during the run (server, load generator, database, everything) */
  busyCores: number[];
  errors: number;
}
type Row = Record<string, Figure>;
const results: Record<string, unknown> = { started: new Date().toISOString(), seconds: SECONDS, rounds: ROUNDS, warm: WARM, keepAliveLoad: WRK ? 'wrk' : 'autocannon' };
type Run = (seconds: number) => Promise<{ ok: number; seconds: number; errors: number }>;

// ------------------------------------------------------------------ load and CPU

/** Runs `fn` (one load run answering `n` requests) and adds its rate and the server's CPU µs per answer to `fig`. */
async function measured(fig: Figure, pid: number, fn: Run): Promise<{ ok: number; seconds: number; errors: number }> {
  const a = cpuSnapshot(pid);
  const r = await fn(SECONDS);
  const use = cpuUse(a, cpuSnapshot(pid));
  if (r.ok > 0) fig.rps.push(r.ok / r.seconds);
  if (use?.serverSeconds !== undefined && r.ok > 0) fig.cpuUs.push((use.serverSeconds * 1e6) / r.ok);
  if (use && r.ok > 0) {
    fig.dbCpuUs.push((use.postgresSeconds * 1e6) / r.ok);
    fig.busyCores.push(use.busyCores);
  }
  fig.errors += r.errors;
  return r;
}

/** Keep-alive load: wrk where it is installed, else the autocannon worker. */
function keepAlive(lg: LoadGenerator, spec: LoadSpec): Run {
  if (WRK) {
    const requests = spec.requests.map((r) => ({ method: r.method, path: r.path, body: r.body === undefined ? undefined : Buffer.from(r.body, 'base64') }));
    return async (seconds) => {
      const r = await wrk({ url: spec.url, connections: spec.connections, seconds, headers: spec.headers, requests });
      if (r.errors > 0) log(`  errors: ${r.errors} (status 400 or more, connection errors, timeouts)`);
      return r;
    };
  }
  return async (seconds) => {
    const r = await lg.run({ ...spec, durationSec: seconds });
    if (r.errors + r.unexpected > 0) log(`  errors: status ${JSON.stringify(r.statusCodes)}, connection ${JSON.stringify(r.errorCodes)}`);
    return { ok: r.ok, seconds: r.durationSec, errors: r.errors + r.unexpected };
  };
}

/** ab: HTTP/1.0, a new connection per request (no -k). */
function ab(url: string, c: number, post?: { file: string }): Run {
  return async (wanted) => {
    // -s: a server that stops answering (openssl ocsp -multi does, now and then) fails the run, not the benchmark
    const a = ['-q', '-r', '-s', '10', '-c', String(c), '-t', String(wanted), '-n', '10000000'];
    if (post) a.push('-p', post.file, '-T', 'application/ocsp-request');
    a.push(url);
    const r = spawnSync('ab', a, { encoding: 'utf8', maxBuffer: 1 << 24 });
    const num = (re: RegExp) => Number(re.exec(r.stdout)?.[1] ?? NaN);
    const complete = num(/Complete requests:\s+(\d+)/);
    // ab counts an answer whose length differs from the first one's as failed ("Length"): an ECDSA
    // signature's DER length varies by a byte or two, so only connect, receive and exception failures count
    const kinds = /\(Connect: (\d+), Receive: (\d+), Length: (\d+), Exceptions: (\d+)\)/.exec(r.stdout);
    const failed = kinds ? Number(kinds[1]) + Number(kinds[2]) + Number(kinds[4]) : num(/Failed requests:\s+(\d+)/);
    const non2xx = Number(/Non-2xx responses:\s+(\d+)/.exec(r.stdout)?.[1] ?? 0);
    const seconds = num(/Time taken for tests:\s+([\d.]+)/);
    if (!Number.isFinite(complete) || !Number.isFinite(seconds)) {
      log(`  ab failed (counted as an error, no figure): ${(r.stdout + r.stderr).trim().split('\n').pop()}`);
      return { ok: 0, seconds: wanted, errors: 1 };
    }
    return { ok: complete - failed - non2xx, seconds, errors: failed + non2xx };
  };
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

const newFigure = (): Figure => ({ rps: [], cpuUs: [], dbCpuUs: [], busyCores: [], errors: 0 });

/** Measures each target in turn, round by round, so that noise falls on each alike. */
interface Target {
  pid: number | (() => number);
  run: Run;
  /** before each run, outside the measured time */
  before?: () => Promise<void>;
}

async function interleaved(targets: Record<string, Target>): Promise<Row> {
  const row: Row = {};
  for (const k of Object.keys(targets)) row[k] = newFigure();
  // one unmeasured run each: a server's first seconds under load are slower than the rest
  if (WARM > 0)
    for (const t of Object.values(targets)) {
      await t.before?.();
      await t.run(WARM);
    }
  for (let round = 0; round < ROUNDS; round++) {
    for (const [k, t] of Object.entries(targets)) {
      await t.before?.();
      const pid = typeof t.pid === 'function' ? t.pid() : t.pid;
      const r = await measured(row[k], pid, t.run);
      const f = row[k];
      // a run with no good answer adds no figure: say so (and whether the server still runs), rather than repeat the last figure
      if (r.ok === 0) log(`  ${k}: NO ANSWERS in ${r.seconds.toFixed(1)} s (${r.errors} errors; requests still unanswered at the end are not counted); process ${alive(pid) ? 'running' : 'gone'}`);
      else log(`  ${k}: ${Math.round(f.rps[f.rps.length - 1])}/s, ${Math.round(f.cpuUs[f.cpuUs.length - 1] ?? NaN)} µs CPU per answer`);
    }
  }
  return row;
}

const med = (f: Figure | undefined) => (f && f.rps.length ? Math.round(median(f.rps)) : NaN);
const medCpu = (f: Figure | undefined) => (f && f.cpuUs.length ? Math.round(median(f.cpuUs)) : NaN);
const medDbCpu = (f: Figure | undefined) => (f && f.dbCpuUs.length ? Math.round(median(f.dbCpuUs)) : NaN);
const medBusy = (f: Figure | undefined) => (f && f.busyCores.length ? median(f.busyCores).toFixed(2) : '—');
const ratio = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? (a / b).toFixed(2) + 'x' : '—');

const lines: string[] = [];
const out = (l: string) => {
  lines.push(l);
  process.stdout.write(l + '\n');
};

// ------------------------------------------------------------------ PostgreSQL databases

async function pgAdmin<T>(fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client({ connectionString: PG_BASE });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

const made: string[] = [];
async function freshDb(prefix: string): Promise<string> {
  const name = `${prefix}_${crypto.randomBytes(4).toString('hex')}`;
  await pgAdmin((c) => c.query(`CREATE DATABASE ${name}`));
  made.push(name);
  const u = new URL(PG_BASE);
  u.pathname = `/${name}`;
  return u.toString();
}

async function dropDbs(): Promise<void> {
  for (const name of made.splice(0)) await pgAdmin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).catch(() => undefined);
}

/** cfssl's certdb schema for PostgreSQL (certdb/pg/migrations of cfssl 1.2). */
const CFSSL_SCHEMA = `
CREATE TABLE certificates (
  serial_number            bytea NOT NULL,
  authority_key_identifier bytea NOT NULL,
  ca_label                 bytea,
  status                   bytea NOT NULL,
  reason                   int,
  expiry                   timestamptz,
  revoked_at               timestamptz,
  pem                      bytea NOT NULL,
  PRIMARY KEY(serial_number, authority_key_identifier)
);
CREATE TABLE ocsp_responses (
  serial_number            bytea NOT NULL,
  authority_key_identifier bytea NOT NULL,
  body                     bytea NOT NULL,
  expiry                   timestamptz,
  PRIMARY KEY(serial_number, authority_key_identifier),
  FOREIGN KEY(serial_number, authority_key_identifier) REFERENCES certificates(serial_number, authority_key_identifier)
);`;

async function cfsslDb(dir: string): Promise<{ url: string; configFile: string }> {
  const url = await freshDb('cfssl_bench');
  const c = new Client({ connectionString: url });
  await c.connect();
  await c.query(CFSSL_SCHEMA);
  await c.end();
  const u = new URL(url);
  // cfssl's driver (lib/pq) takes the key=value form
  const dsn = `host=${u.hostname} port=${u.port || 5432} user=${decodeURIComponent(u.username) || 'postgres'} dbname=${u.pathname.slice(1)} sslmode=disable${u.password ? ` password=${decodeURIComponent(u.password)}` : ''}`;
  const configFile = path.join(dir, 'cfssl-db.json');
  fs.writeFileSync(configFile, JSON.stringify({ driver: 'postgres', data_source: dsn }));
  return { url, configFile };
}

async function countRows(url: string, table: string): Promise<number> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return Number((await c.query(`SELECT count(*) AS n FROM ${table}`)).rows[0].n);
  } finally {
    await c.end();
  }
}

// ------------------------------------------------------------------ phases

const issueSpec = (ca: Hsmca, csrs: string[], c: number, durationSec = SECONDS, amount?: number): LoadSpec => ({
  url: ca.url,
  connections: c,
  durationSec,
  amount,
  headers: { 'content-type': 'application/json', authorization: `Bearer ${ca.adminToken}` },
  requests: csrs.map((csr) => ({ method: 'POST', path: '/api/v1/certificates', body: b64(JSON.stringify({ csr })) })),
  expectStatus: 201,
});

const cfsslSpec = (port: number, csrs: string[], c: number, amount?: number): LoadSpec => ({
  url: `http://127.0.0.1:${port}`,
  connections: c,
  durationSec: SECONDS,
  amount,
  headers: { 'content-type': 'application/json' },
  requests: csrs.map((csr) => ({ method: 'POST', path: '/api/v1/cfssl/sign', body: b64(cfsslSignBody(csr)) })),
  expectStatus: 200,
});

async function phaseSqlite(lg: LoadGenerator, csrs: string[]): Promise<void> {
  log('sqlite: hsmca on SQLite vs cfssl serve storing nothing');
  const dir = tempDir('hsmca-speed-sqlite-');
  const pki = makePeerPki(dir);
  const cfPort = await freePort();
  const cfssl = await startCfsslServe(pki, cfPort);
  const ca = await startHsmca({ env: HSMCA_ENV });
  // the floor (bench/floor-server.ts): the CSR check, the TBS and a signature on bare node:http, storing nothing
  const floors: Server[] = [];
  for (const procs of [1, 2]) {
    const port = await freePort();
    floors.push(await startServer({ name: `floor (${procs})`, cmd: process.execPath, args: [path.join(__dirname, 'floor-server.js')], port, env: { ...process.env, FLOOR_PORT: String(port), FLOOR_PROCS: String(procs) } }));
  }
  const floorSpec = (f: Server, c: number): LoadSpec => ({ ...cfsslSpec(f.port, csrs, c), requests: csrs.map((csr) => ({ method: 'POST', path: '/', body: b64(JSON.stringify({ csr })) })), expectStatus: 201 });
  try {
    await cfsslSign(cfPort, csrs[0]);
    const rows: Record<number, Row> = {};
    for (const c of [8, 32]) {
      log(`sqlite: c=${c}`);
      rows[c] = await interleaved({
        hsmca: { pid: ca.server.proc.pid!, run: keepAlive(lg, issueSpec(ca, csrs, c)) },
        cfssl: { pid: cfssl.proc.pid!, run: keepAlive(lg, cfsslSpec(cfPort, csrs, c)) },
        'floor 1': { pid: floors[0].proc.pid!, run: keepAlive(lg, floorSpec(floors[0], c)) },
        'floor 2': { pid: floors[1].proc.pid!, run: keepAlive(lg, floorSpec(floors[1], c)) },
      });
    }
    out('');
    out(`SQLite issuance, every certificate durable, against cfssl storing nothing and the node floor storing nothing, 1 and 2 processes (P-256 CSRs; per s, median of ${ROUNDS} x ${SECONDS} s after a ${WARM} s warm-up, load: ${WRK ? 'wrk' : 'autocannon'}; CPU µs per certificate)`);
    out('| c | hsmca | cfssl serve | ratio | floor, 1 process | floor, 2 processes | floor 1 / cfssl | hsmca / floor 1 | CPU µs hsmca / cfssl / floor 1 | errors |');
    out('|---|---|---|---|---|---|---|---|---|---|');
    for (const c of [8, 32]) {
      const r = rows[c];
      const f1 = r['floor 1'];
      const errors = Object.values(r).reduce((a, f) => a + f.errors, 0);
      out(`| ${c} | ${med(r.hsmca)} | ${med(r.cfssl)} | ${ratio(med(r.hsmca), med(r.cfssl))} | ${med(f1)} | ${med(r['floor 2'])} | ${ratio(med(f1), med(r.cfssl))} | ${ratio(med(r.hsmca), med(f1))} | ${medCpu(r.hsmca)} / ${medCpu(r.cfssl)} / ${medCpu(f1)} | ${errors} |`);
    }
    results.sqlite = rows;
  } finally {
    for (const f of floors) await f.stop();
    await ca.stop();
    removeDataDir(ca.dataDir);
    await cfssl.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function phasePg(lg: LoadGenerator, csrs: string[]): Promise<void> {
  log('pg: hsmca on PostgreSQL vs cfssl serve with its certdb on the same server');
  const dir = tempDir('hsmca-speed-pg-');
  const pki = makePeerPki(dir);
  const { url: cfUrl, configFile } = await cfsslDb(dir);
  const hsUrl = await freshDb('hsmca_bench');
  const cfPort = await freePort();
  const base = await startCfsslServe(pki, cfPort);
  await base.stop();
  // the same command as startCfsslServe, with the certdb
  const cfssl = await startServer({
    name: 'cfssl serve (certdb)',
    cmd: 'cfssl',
    args: ['serve', '-address', '127.0.0.1', '-port', String(cfPort), '-ca', pki.caCert, '-ca-key', pki.caKey, '-config', path.join(pki.dir, 'cfssl-config.json'), '-db-config', configFile, '-loglevel', '2'],
    port: cfPort,
  });
  const ca = await startHsmca({ env: { ...HSMCA_ENV, HSMCA_DATABASE_URL: hsUrl } });
  try {
    await cfsslSign(cfPort, csrs[0]);
    const rows: Record<number, Row> = {};
    for (const c of [8, 32]) {
      log(`pg: c=${c}`);
      rows[c] = await interleaved({
        hsmca: { pid: ca.server.proc.pid!, run: keepAlive(lg, issueSpec(ca, csrs, c)) },
        cfssl: { pid: cfssl.proc.pid!, run: keepAlive(lg, cfsslSpec(cfPort, csrs, c)) },
      });
    }
    const stored = await countRows(cfUrl, 'certificates');
    out('');
    out(`PostgreSQL issuance (P-256 CSRs; per s, median of ${ROUNDS} x ${SECONDS} s after a ${WARM} s warm-up, load: ${WRK ? 'wrk' : 'autocannon'}; CPU µs per certificate; cfssl certdb rows stored: ${stored})`);
    out(`(PostgreSQL CPU µs: the database server's processes per certificate; machine CPUs busy: everything on the machine, of ${os.cpus().length})`);
    out('| c | hsmca | cfssl serve + certdb | ratio | CPU µs hsmca / cfssl | PostgreSQL CPU µs hsmca / cfssl | machine CPUs busy hsmca / cfssl | errors |');
    out('|---|---|---|---|---|---|---|---|');
    for (const c of [8, 32]) {
      const r = rows[c];
      out(`| ${c} | ${med(r.hsmca)} | ${med(r.cfssl)} | ${ratio(med(r.hsmca), med(r.cfssl))} | ${medCpu(r.hsmca)} / ${medCpu(r.cfssl)} | ${medDbCpu(r.hsmca)} / ${medDbCpu(r.cfssl)} | ${medBusy(r.hsmca)} / ${medBusy(r.cfssl)} | ${r.hsmca.errors + r.cfssl.errors} |`);
    }
    results.pg = rows;
  } finally {
    await ca.stop();
    removeDataDir(ca.dataDir);
    await cfssl.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function phaseOcsp(lg: LoadGenerator, csrs: string[]): Promise<void> {
  log('ocsp: one request per connection and keep-alive');
  const dir = tempDir('hsmca-speed-ocsp-');
  const pki = makePeerPki(dir);
  const ca = await startHsmca({ env: HSMCA_ENV });
  const servers: Server[] = [];
  let ca2: Hsmca | undefined;
  try {
    // hsmca: 50 certificates it issued
    const serials: string[] = [];
    for (const csr of csrs.slice(0, 50)) {
      const r = await ca.api('POST', '/api/v1/certificates', { csr });
      serials.push((r.body as { serialNumber: string }).serialNumber);
    }
    const issuer = issuerInfo((await ca.api('GET', '/ca/issuer.crt')).raw);
    const reqs = serials.map((h) => ocspRequest(issuer, Buffer.from(h.length % 2 ? `0${h}` : h, 'hex')));
    const postFile = path.join(dir, 'hsmca-req.der');
    fs.writeFileSync(postFile, reqs[0]);
    const answer = Buffer.from(await (await fetch(`${ca.url}/ocsp`, { method: 'POST', headers: { 'content-type': 'application/ocsp-request' }, body: reqs[0] })).arrayBuffer());
    const respFile = path.join(dir, 'floor-resp.der');
    fs.writeFileSync(respFile, answer);
    // warm: every response pre-signed
    for (const r of reqs) await fetch(`${ca.url}/ocsp`, { method: 'POST', headers: { 'content-type': 'application/ocsp-request' }, body: r }).then((x) => x.arrayBuffer());

    // the same data folder served by two worker processes (after the first server stopped: one serve per folder)
    // is measured below as "hsmca w=2"; started after the one-process rows

    // openssl ocsp -multi 2, over 50 random serials of its own CA
    const peerIssuer = issuerInfo(pki.caDer);
    const oSerials = Array.from({ length: 50 }, () => randomSerial(crypto.randomBytes(16)));
    const oReqs = oSerials.map((s) => ocspRequest(peerIssuer, s));
    // openssl ocsp -multi stops answering for good after clients that close early (ab does, at the end of a run):
    // a fresh responder for every run, started outside the measured time
    const oIndex = writeOcspIndex(pki, oSerials);
    let openssl = await startOpensslOcsp(pki, oIndex, await freePort(), oReqs[0]);
    servers.push(openssl);
    const fresh = async () => {
      const old = openssl;
      await old.stop();
      openssl = await startOpensslOcsp(pki, oIndex, await freePort(), oReqs[0]);
      servers[servers.indexOf(old)] = openssl;
    };
    const oPostFile = path.join(dir, 'openssl-req.der');
    fs.writeFileSync(oPostFile, oReqs[0]);

    // the bare node:http floor
    const floorPort = await freePort();
    const floor = await startServer({
      name: 'ocsp floor',
      cmd: process.execPath,
      args: [path.join(__dirname, 'ocsp-floor-server.js')],
      port: floorPort,
      env: { ...process.env, FLOOR_PORT: String(floorPort), FLOOR_RESPONSE: respFile },
    });
    servers.push(floor);

    // cfssl ocspserve over 50 certificates cfssl signed
    const cfPort = await freePort();
    const cfServe = await startCfsslServe(pki, cfPort);
    const pems: string[] = [];
    for (const csr of csrs.slice(0, 50)) pems.push(await cfsslSign(cfPort, csr));
    await cfServe.stop();
    const cfFile = await cfsslResponsesFile(pki, pems);
    const cfOcsp = await startCfsslOcspServe(cfFile, await freePort());
    servers.push(cfOcsp);
    const cfReqs = pems.map((pem) => ocspRequest(peerIssuer, readCertificate(pemToDer(pem)).serial));

    const post = (reqList: Buffer[], p: string): LoadRequest[] => reqList.map((r) => ({ method: 'POST', path: p, body: b64(r) }));
    const get = (reqList: Buffer[], prefix: string): LoadRequest[] => reqList.map((r) => ({ method: 'GET', path: ocspGetPath(prefix, r) }));
    const kaSpec = (port: number, requests: LoadRequest[], c: number): LoadSpec => ({
      url: `http://127.0.0.1:${port}`,
      connections: c,
      durationSec: SECONDS,
      headers: { 'content-type': 'application/ocsp-request' },
      requests,
      expectStatus: 200,
    });
    const hPid = ca.server.proc.pid!;
    const rows: Record<string, Row> = {};
    for (const c of [8, 32]) {
      log(`ocsp: one request per connection, POST, c=${c}`);
      rows[`close POST c=${c}`] = await interleaved({
        hsmca: { pid: hPid, run: ab(`${ca.url}/ocsp`, c, { file: postFile }) },
        openssl: { pid: () => openssl.proc.pid!, before: fresh, run: (sec) => ab(`http://127.0.0.1:${openssl.port}/`, c, { file: oPostFile })(sec) },
        floor: { pid: floor.proc.pid!, run: ab(`http://127.0.0.1:${floorPort}/ocsp`, c, { file: postFile }) },
      });
      log(`ocsp: one request per connection, GET, c=${c}`);
      rows[`close GET c=${c}`] = await interleaved({
        hsmca: { pid: hPid, run: ab(`${ca.url}${ocspGetPath('/ocsp', reqs[0])}`, c) },
        openssl: { pid: () => openssl.proc.pid!, before: fresh, run: (sec) => ab(`http://127.0.0.1:${openssl.port}${ocspGetPath('', oReqs[0])}`, c)(sec) },
        floor: { pid: floor.proc.pid!, run: ab(`http://127.0.0.1:${floorPort}${ocspGetPath('/ocsp', reqs[0])}`, c) },
      });
      log(`ocsp: keep-alive, 50 distinct requests, c=${c}`);
      rows[`keep-alive POST c=${c}`] = await interleaved({
        hsmca: { pid: hPid, run: keepAlive(lg, kaSpec(ca.port, post(reqs, '/ocsp'), c)) },
        cfssl: { pid: cfOcsp.proc.pid!, run: keepAlive(lg, kaSpec(cfOcsp.port, post(cfReqs, '/'), c)) },
        floor: { pid: floor.proc.pid!, run: keepAlive(lg, kaSpec(floorPort, post(reqs, '/ocsp'), c)) },
      });
      rows[`keep-alive GET c=${c}`] = await interleaved({
        hsmca: { pid: hPid, run: keepAlive(lg, kaSpec(ca.port, get(reqs, '/ocsp'), c)) },
        floor: { pid: floor.proc.pid!, run: keepAlive(lg, kaSpec(floorPort, get(reqs, '/ocsp'), c)) },
      });
    }
    // both cores: the same data folder served by HSMCA_WORKERS=2
    await ca.stop();
    ca2 = await startHsmca({ dataDir: ca.dataDir, env: { ...HSMCA_ENV, HSMCA_WORKERS: '2' } });
    for (const r of reqs) await fetch(`${ca2.url}/ocsp`, { method: 'POST', headers: { 'content-type': 'application/ocsp-request' }, body: r }).then((x) => x.arrayBuffer());
    for (const c of [8, 32]) {
      log(`ocsp: HSMCA_WORKERS=2, one request per connection, c=${c}`);
      rows[`close POST c=${c}, hsmca w=2`] = await interleaved({
        hsmca: { pid: ca2.server.proc.pid!, run: ab(`${ca2.url}/ocsp`, c, { file: postFile }) },
        openssl: { pid: () => openssl.proc.pid!, before: fresh, run: (sec) => ab(`http://127.0.0.1:${openssl.port}/`, c, { file: oPostFile })(sec) },
        floor: { pid: floor.proc.pid!, run: ab(`http://127.0.0.1:${floorPort}/ocsp`, c, { file: postFile }) },
      });
      rows[`keep-alive POST c=${c}, hsmca w=2`] = await interleaved({
        hsmca: { pid: ca2.server.proc.pid!, run: keepAlive(lg, kaSpec(ca2.port, post(reqs, '/ocsp'), c)) },
        cfssl: { pid: cfOcsp.proc.pid!, run: keepAlive(lg, kaSpec(cfOcsp.port, post(cfReqs, '/'), c)) },
      });
    }
    out('');
    out(`OCSP (answers per s, median of ${ROUNDS} x ${SECONDS} s after a ${WARM} s warm-up; CPU µs per answer of each server's process tree; one request per connection: ab, HTTP/1.0; keep-alive: ${WRK ? 'wrk' : 'autocannon'})`);
    out('| load | hsmca | peer | ratio | bare node floor | hsmca / floor | CPU µs hsmca / peer / floor | errors |');
    out('|---|---|---|---|---|---|---|---|');
    for (const [k, r] of Object.entries(rows)) {
      const peer = r.openssl ?? r.cfssl;
      const peerName = r.openssl ? 'openssl -multi 2' : r.cfssl ? 'cfssl ocspserve' : '';
      const errors = Object.values(r).reduce((a, f) => a + f.errors, 0);
      out(`| ${k} | ${med(r.hsmca)} | ${peer ? `${peerName}: ${med(peer)}` : '— (cfssl: POST only)'} | ${ratio(med(r.hsmca), med(peer))} | ${med(r.floor)} | ${ratio(med(r.hsmca), med(r.floor))} | ${medCpu(r.hsmca)} / ${medCpu(peer)} / ${medCpu(r.floor)} | ${errors} |`);
    }
    results.ocsp = rows;
  } finally {
    for (const s of servers) await s.stop();
    await ca.stop();
    await ca2?.stop();
    removeDataDir(ca.dataDir);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function phaseWorkers(lg: LoadGenerator, csrs: string[]): Promise<void> {
  log('workers: HSMCA_WORKERS=1 vs 2');
  const table: string[] = [];
  const all: Record<string, Row> = {};
  for (const db of ['sqlite', 'postgres'] as const) {
    const env = async (): Promise<Record<string, string>> => (db === 'postgres' ? { HSMCA_DATABASE_URL: await freshDb('hsmca_bench') } : {});
    const one = await startHsmca({ env: { ...HSMCA_ENV, ...(await env()), HSMCA_WORKERS: '1' } });
    const two = await startHsmca({ env: { ...HSMCA_ENV, ...(await env()), HSMCA_WORKERS: '2' } });
    try {
      for (const c of [8, 32]) {
        log(`workers: ${db}, c=${c}`);
        const r = await interleaved({
          'workers=1': { pid: one.server.proc.pid!, run: keepAlive(lg, issueSpec(one, csrs, c)) },
          'workers=2': { pid: two.server.proc.pid!, run: keepAlive(lg, issueSpec(two, csrs, c)) },
        });
        all[`${db} c=${c}`] = r;
        table.push(`| ${db} | ${c} | ${med(r['workers=1'])} | ${med(r['workers=2'])} | ${ratio(med(r['workers=2']), med(r['workers=1']))} | ${medCpu(r['workers=1'])} / ${medCpu(r['workers=2'])} | ${db === 'postgres' ? `${medDbCpu(r['workers=1'])} / ${medDbCpu(r['workers=2'])}` : '—'} | ${medBusy(r['workers=1'])} / ${medBusy(r['workers=2'])} | ${r['workers=1'].errors + r['workers=2'].errors} |`);
      }
    } finally {
      for (const s of [one, two]) {
        await s.stop();
        removeDataDir(s.dataDir);
      }
    }
  }
  out('');
  out(`Issuance with HSMCA_WORKERS=1 and 2 (per s, median of ${ROUNDS} x ${SECONDS} s after a ${WARM} s warm-up, load: ${WRK ? 'wrk' : 'autocannon'})`);
  out(`(PostgreSQL CPU µs: the database server's processes per certificate; machine CPUs busy: everything on the machine, of ${os.cpus().length})`);
  out('| database | c | workers=1 | workers=2 | 2 / 1 | CPU µs per certificate 1 / 2 | PostgreSQL CPU µs 1 / 2 | machine CPUs busy 1 / 2 | errors |');
  out('|---|---|---|---|---|---|---|---|---|');
  for (const l of table) out(l);
  results.workers = all;
}

async function phaseParts(): Promise<void> {
  log('parts: per-certificate work above the floor, in process');
  const r = spawnSync(process.execPath, [path.join(__dirname, 'parts-child.js')], { encoding: 'utf8', cwd: ROOT, env: process.env });
  if (r.status !== 0) throw new Error(`parts-child failed: ${r.stderr}`);
  const parts = JSON.parse(r.stdout) as { part: string; us: number }[];
  out('');
  out('hsmca per-certificate work above the floor (CPU µs per certificate, in process, median of 5 rounds)');
  out('| part | µs |');
  out('|---|---|');
  for (const p of parts) out(`| ${p.part} | ${p.us.toFixed(1)} |`);
  results.parts = parts;
}

async function main(): Promise<void> {
  const lg = new LoadGenerator();
  const { csrs } = await makeCsrsCached('p256', 200);
  try {
    if (ONLY.includes('parts')) await phaseParts();
    if (ONLY.includes('sqlite')) await phaseSqlite(lg, csrs);
    if (ONLY.includes('pg')) await phasePg(lg, csrs);
    if (ONLY.includes('ocsp')) await phaseOcsp(lg, csrs);
    if (ONLY.includes('workers')) await phaseWorkers(lg, csrs);
  } finally {
    await lg.close();
    await dropDbs();
    results.finished = new Date().toISOString();
    fs.writeFileSync(path.join(ROOT, 'bench', 'speed-results.json'), JSON.stringify({ ...results, table: lines }, null, 2));
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`bench:speed failed: ${(e as Error)?.stack ?? e}\n`);
    void dropDbs().finally(() => process.exit(1));
  },
);
