/**
 * hsmca benchmark: `npm run bench` (full, 3 runs per figure) or
 * `npm run bench -- --quick` (smoke run, 1 run per figure).
 *
 * Every server under test (hsmca, cfssl, openssl) runs in its own process, the
 * load generator (autocannon) in another, and measurements that report peak
 * memory in a fresh process each. Prints a table and writes bench/results.json.
 * See docs/performance.md for what each figure means.
 *
 * Options:
 *   --quick              short runs, 1 run per figure, CRL up to 100k, scale 10k vs 100k
 *   --only=a,b           phases to run: hsm, pkcs11, issuance, ocsp, crl, scale, speed (default all)
 *
 * The speed phase runs bench/speed.ts last, in its own process (issue 18's
 * figures, measured as clients behave: issuance on SQLite against cfssl
 * storing nothing and on PostgreSQL against cfssl with its certdb, OCSP with one request per connection beside keep-alive,
 * both with CPU per answer, HSMCA_WORKERS=1 vs 2); it prints its own tables
 * and writes bench/speed-results.json.
 *   --no-peers           skip cfssl and openssl
 *   --profile            also profile the hsmca server (node --cpu-prof) under issuance and OCSP load
 *   --out=FILE           results file (default bench/results.json)
 */
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readCertificate } from '../src/ca/certificate';
import { measureCrlInChild, CrlChildResult } from './crl-child';
import { CrlShardsRow, phaseCrlShards, reportCrlShards } from './crl-shards-phase';
import { fillInChild } from './fill';
import { Hsmca, newDataDir, removeDataDir, startHsmca } from './hsmca';
import { CpuUse, cpuSnapshot, cpuUse } from './cpu';
import { measureHsmInChild } from './hsm-child';
import { measurePipelineInChild } from './pipeline-child';
import { LoadGenerator, LoadRequest, LoadResult, LoadSpec } from './load';
import {
  CFSSL_HINT,
  OPENSSL_HINT,
  PeerPki,
  cfsslResponsesFile,
  cfsslSign,
  cfsslSignBody,
  detectPeers,
  makePeerPki,
  opensslGenCrl,
  startCfsslOcspServe,
  startCfsslServe,
  startOpensslOcsp,
  writeCrlIndex,
  writeOcspIndex,
} from './peers';
import { CSR_CACHE_DIR, CSR_LABEL, CsrKind, IssuerInfo, issuerInfo, makeCsrsCached, ocspGetPath, ocspRequest, ocspStatus, pemToDer, randomSerial } from './pki';
import { Server, freePort, startServer, tempDir } from './proc';
import { ProfileSummary, printProfile, summarizeProfile } from './profile';
import { Summary, fmt, fmtRatio, ratio, round, summarize } from './stats';

const ROOT = path.resolve(__dirname, '..', '..');

// ------------------------------------------------------------------ settings

/** shards of the partitioned-CRL figure */
const CRL_SHARDS = 16;
const PHASES = ['hsm', 'pkcs11', 'issuance', 'ocsp', 'crl', 'scale', 'speed'] as const;
type Phase = (typeof PHASES)[number];

interface Settings {
  mode: 'full' | 'quick';
  /** runs per figure (median and min–max over them) */
  runs: number;
  durationSec: number;
  warmupSec: number;
  concurrencies: number[];
  /** distinct CSRs per key type */
  csrCount: number;
  /** distinct certificates OCSP requests rotate through */
  ocspCount: number;
  hsmSeconds: number;
  crlSizes: number[];
  /** revoked certificates of the partitioned-CRL figure, across CRL_SHARDS shards */
  crlShardEntries: number;
  scaleSizes: [number, number];
  scaleConcurrency: number;
}

const FULL: Settings = {
  mode: 'full',
  runs: 3,
  durationSec: 5,
  warmupSec: 1,
  concurrencies: [1, 8, 32],
  csrCount: 200,
  ocspCount: 1000,
  hsmSeconds: 2,
  crlSizes: [10_000, 100_000, 1_000_000],
  crlShardEntries: 1_000_000,
  scaleSizes: [10_000, 1_000_000],
  scaleConcurrency: 8,
};

const QUICK: Settings = {
  ...FULL,
  mode: 'quick',
  runs: 1,
  durationSec: 2,
  warmupSec: 0.5,
  csrCount: 50,
  ocspCount: 300,
  hsmSeconds: 1,
  crlSizes: [10_000, 100_000],
  crlShardEntries: 100_000,
  scaleSizes: [10_000, 100_000],
};

interface Options {
  settings: Settings;
  phases: Set<Phase>;
  peers: boolean;
  profile: boolean;
  out: string;
}

function parseOptions(argv: string[]): Options {
  let quick = false;
  let phases = new Set<Phase>(PHASES);
  let peers = true;
  let profile = false;
  let out = path.join(ROOT, 'bench', 'results.json');
  for (const a of argv) {
    if (a === '--quick') quick = true;
    else if (a === '--no-peers') peers = false;
    else if (a === '--profile') profile = true;
    else if (a.startsWith('--out=')) out = path.resolve(a.slice('--out='.length));
    else if (a.startsWith('--only=')) {
      const names = a.slice('--only='.length).split(',').filter(Boolean);
      for (const n of names) if (!(PHASES as readonly string[]).includes(n)) throw new Error(`--only: unknown phase "${n}" (phases: ${PHASES.join(', ')})`);
      phases = new Set(names as Phase[]);
    } else if (a === '--help' || a === '-h') {
      process.stdout.write(fs.readFileSync(__filename, 'utf8').match(/\/\*\*([\s\S]*?)\*\//)![1].replace(/^ \* ?/gm, '') + '\n');
      process.exit(0);
    } else throw new Error(`unknown option ${a} (see --help)`);
  }
  return { settings: quick ? QUICK : FULL, phases, peers, profile, out };
}

// ------------------------------------------------------------------ progress

const started = Date.now();
function progress(msg: string): void {
  const s = Math.floor((Date.now() - started) / 1000);
  process.stderr.write(`[${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}] ${msg}\n`);
}

// ------------------------------------------------------------------ result shapes

interface LoadFigure {
  /** answers with the expected status per second */
  rps: Summary;
  /** CPUs' worth of time other processes on the machine used during each run (see cpu.ts) */
  otherCores?: Summary;
  /** CPU time the server under test used per answer, in microseconds (all its threads and child processes) */
  cpuUsPerAnswer?: Summary;
  /** latency in milliseconds */
  p50: Summary;
  p99: Summary;
  /** answers with another status, connection errors and timeouts, over all runs */
  errors: number;
  statusCodes: Record<string, number>;
  runs: LoadResult[];
}

function loadFigure(runs: LoadResult[], cpu: (CpuUse | undefined)[] = []): LoadFigure {
  const statusCodes: Record<string, number> = {};
  for (const r of runs) for (const [k, v] of Object.entries(r.statusCodes)) statusCodes[k] = (statusCodes[k] ?? 0) + v;
  const other = cpu.filter((c): c is CpuUse => c !== undefined).map((c) => c.otherCores);
  const perAnswer = runs.flatMap((r, i) => {
    const sec = cpu[i]?.serverSeconds;
    return sec !== undefined && r.ok > 0 ? [(sec * 1e6) / r.ok] : [];
  });
  return {
    rps: summarize(runs.map((r) => r.rps)),
    otherCores: other.length ? summarize(other) : undefined,
    cpuUsPerAnswer: perAnswer.length ? summarize(perAnswer) : undefined,
    p50: summarize(runs.map((r) => r.p50)),
    p99: summarize(runs.map((r) => r.p99)),
    errors: runs.reduce((n, r) => n + r.unexpected + r.errors + r.timeouts, 0),
    statusCodes,
    runs,
  };
}

interface HsmResult {
  seconds: number;
  raw: Summary;
  soft: Summary;
  /** soft / raw, medians */
  ratio: number | undefined;
}

interface IssuanceRow {
  key: string;
  concurrency: number;
  hsmca: LoadFigure;
  cfssl?: LoadFigure;
  /** hsmca / cfssl certificates per second */
  ratio?: number;
}

interface PipelineResult {
  seconds: number;
  /** CPU µs of one CSR check (parse, key import, proof of possession) */
  csrCheckUs: Summary;
  /** IssuanceService.issue in process, 32 in flight */
  issuedPerSec: Summary;
  cpuUsPerCert: Summary;
}

/** Figure 2c: what the stack allows on this machine, against hsmca with two worker processes. */
interface CeilingRow {
  concurrency: number;
  /** the floor server (floor-server.ts): CSR check, TBS, signature; nothing stored */
  floor1: LoadFigure;
  floor2: LoadFigure;
  /** hsmca as in figure 2 (one process), in the same runs */
  hsmca1: LoadFigure;
  /** hsmca with HSMCA_WORKERS=2 */
  hsmca2: LoadFigure;
  cfssl?: LoadFigure;
}

interface OcspRow {
  method: 'GET' | 'POST';
  concurrency: number;
  hsmca: LoadFigure;
  cfssl?: LoadFigure;
  /** the method the cfssl figure was measured with (its GET is broken: POST) */
  cfsslMethod?: 'POST';
  openssl?: LoadFigure;
  opensslMethod?: 'GET' | 'POST';
  ratioCfssl?: number;
  ratioOpenssl?: number;
}

interface CrlRow {
  entries: number;
  /** time to insert the rows (set-up, not measured figure) */
  fillSeconds: number;
  hsmca: { seconds: Summary; peakRssMB: Summary; startRssMB: Summary; crlMB: number };
  openssl?: { seconds: Summary; peakRssMB?: Summary; crlPemMB: number };
  /** hsmca / openssl seconds (lower is better) */
  timeRatio?: number;
}

interface ScaleResult {
  sizes: [number, number];
  concurrency: number;
  fillSeconds: number[];
  ocsp: [LoadFigure, LoadFigure];
  lookup: [LoadFigure, LoadFigure];
  /** large / small p50 latency */
  ocspP50Ratio?: number;
  lookupP50Ratio?: number;
  ocspP99Ratio?: number;
  lookupP99Ratio?: number;
}

interface Target {
  name: string;
  /** undefined: not measured in this run */
  met?: boolean;
  detail: string;
}

interface Results {
  meta: {
    mode: Settings['mode'];
    date: string;
    node: string;
    cpus: number;
    cpuModel: string;
    memoryGB: number;
    openssl?: string;
    cfssl?: string;
    /** the hsmca source measured: commit, and whether the working tree had uncommitted changes */
    commit?: string;
    dirty?: boolean;
    settings: Settings;
    elapsedSeconds?: number;
  };
  notes: string[];
  hsm?: HsmResult;
  pkcs11?: Pkcs11Result | { skipped: string };
  issuance?: IssuanceRow[];
  pipeline?: PipelineResult;
  ceiling?: CeilingRow[];
  ocsp?: OcspRow[];
  crl?: CrlRow[];
  crlShards?: CrlShardsRow;
  scale?: ScaleResult;
  profiles?: Record<string, { load: LoadResult; profile: ProfileSummary }>;
  targets?: Target[];
}

// ------------------------------------------------------------------ helpers

const b64 = (s: string | Buffer) => (typeof s === 'string' ? Buffer.from(s, 'utf8') : s).toString('base64');

/** Fails with the server's own output when it is no longer running. */
function checkAlive(server: Server | undefined): void {
  if (server && (server.proc.exitCode !== null || server.proc.signalCode !== null)) {
    throw new Error(`${server.name} (pid ${server.proc.pid}) exited (${server.proc.exitCode ?? server.proc.signalCode}) under load:\n${server.output().trim()}`);
  }
}

/** A load to measure and the server process answering it. */
interface LoadTarget {
  spec: LoadSpec;
  server?: Server;
}

/** Idle CPU of the benchmark's own process tree above which a measurement is suspect. */
const IDLE_LIMIT_CORES = 0.2;
const idleWarnings = new Set<string>();

/** How long checkIdle waits for servers that are still settling (a fresh cluster forking, JIT warm-up). */
const IDLE_WAIT_MS = 5000;

/**
 * Checks that the benchmark's own processes (servers under test, peers, load
 * generator) are idle before a measurement: a server busy on its own steals
 * the CPU the measured one needs, and cpu.ts counts it as the benchmark's.
 * A server that has just started is given IDLE_WAIT_MS to settle first.
 */
async function checkIdle(label: string): Promise<void> {
  const deadline = Date.now() + IDLE_WAIT_MS;
  let use: CpuUse | undefined;
  do {
    const a = cpuSnapshot();
    await new Promise((r) => setTimeout(r, 250));
    use = cpuUse(a, cpuSnapshot());
  } while (use && use.benchCores > IDLE_LIMIT_CORES && Date.now() < deadline);
  if (use && use.benchCores > IDLE_LIMIT_CORES) {
    const msg = `the benchmark's processes used ${use.benchCores} CPUs while idle before "${label}": a server under test is busy on its own`;
    progress(`  WARNING: ${msg}`);
    idleWarnings.add(msg);
  }
}

/** Runs the targets one after the other, run by run, so noise on the machine touches each alike; a warm-up before the first. */
async function measureInterleaved(lg: LoadGenerator, s: Settings, label: string, targets: Record<string, LoadTarget>): Promise<Record<string, LoadFigure>> {
  const names = Object.keys(targets);
  await checkIdle(label);
  for (const n of names) {
    await lg.run({ ...targets[n].spec, durationSec: s.warmupSec });
    checkAlive(targets[n].server);
  }
  const runs: Record<string, LoadResult[]> = Object.fromEntries(names.map((n) => [n, []]));
  const cpu: Record<string, (CpuUse | undefined)[]> = Object.fromEntries(names.map((n) => [n, []]));
  for (let r = 0; r < s.runs; r++) {
    for (const n of names) {
      const pid = targets[n].server?.proc.pid;
      const before = cpuSnapshot(pid);
      const res = await lg.run(targets[n].spec);
      const use = cpuUse(before, cpuSnapshot(pid));
      checkAlive(targets[n].server);
      runs[n].push(res);
      cpu[n].push(use);
      const bad = res.unexpected + res.errors + res.timeouts;
      progress(
        `  ${label} ${n} run ${r + 1}/${s.runs}: ${round(res.rps)}/s p50 ${round(res.p50)} ms p99 ${round(res.p99)} ms` +
          (use ? ` (CPUs busy: bench ${use.benchCores}, other processes ${use.otherCores}${use.serverSeconds !== undefined && res.ok ? `; server CPU ${round((use.serverSeconds * 1e6) / res.ok)} µs per answer` : ''})` : '') +
          (bad ? `  ERRORS ${bad} ${JSON.stringify({ ...res.statusCodes, ...res.errorCodes })}` : ''),
      );
    }
  }
  return Object.fromEntries(names.map((n) => [n, loadFigure(runs[n], cpu[n])]));
}

async function fetchBytes(url: string, init?: RequestInit): Promise<{ status: number; body: Buffer }> {
  const res = await fetch(url, init);
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
}

/** Checks a few requests of an OCSP rotation answer 'good' before it is loaded. */
async function checkOcsp(name: string, base: string, reqs: LoadRequest[]): Promise<void> {
  for (const r of reqs.slice(0, 5)) {
    const res = await fetchBytes(base + r.path, {
      method: r.method,
      headers: r.method === 'POST' ? { 'content-type': 'application/ocsp-request' } : {},
      body: r.body ? Buffer.from(r.body, 'base64') : undefined,
    });
    const st = res.status === 200 ? ocspStatus(res.body) : `HTTP ${res.status}`;
    if (st !== 'good') throw new Error(`${name}: ${r.method} ${r.path.slice(0, 40)}... answered ${st}, not good`);
  }
}

const ocspPost = (reqs: Buffer[], p: string): LoadRequest[] => reqs.map((r) => ({ method: 'POST', path: p, body: b64(r) }));
const ocspGet = (reqs: Buffer[], prefix: string): LoadRequest[] => reqs.map((r) => ({ method: 'GET', path: ocspGetPath(prefix, r) }));

function randomSerials(n: number): Buffer[] {
  const bytes = crypto.randomBytes(16 * n);
  return Array.from({ length: n }, (_, i) => randomSerial(bytes.subarray(16 * i, 16 * i + 16)));
}

/** Up to `count` serials (hex) of certificates hsmca issued, newest first. */
async function issuedSerials(ca: Hsmca, count: number): Promise<string[]> {
  const out: string[] = [];
  let cursor: string | null = null;
  while (out.length < count) {
    const q: string = `/api/v1/certificates?limit=500${cursor ? `&cursor=${cursor}` : ''}`;
    const r = await ca.api('GET', q);
    const body = r.body as { items: { serialNumber: string }[]; nextCursor: string | null };
    if (r.status !== 200) throw new Error(`listing certificates failed: ${r.status}`);
    for (const it of body.items) out.push(it.serialNumber);
    if (!body.nextCursor) break;
    cursor = body.nextCursor;
  }
  return out.slice(0, count);
}

async function caIssuer(ca: Hsmca): Promise<IssuerInfo> {
  const r = await fetchBytes(`${ca.url}/ca/issuer.crt`);
  if (r.status !== 200) throw new Error(`GET /ca/issuer.crt: ${r.status}`);
  return issuerInfo(r.body);
}

/** hsmca is measured for capacity: the per-token and per-address issuance rate limits are off (0). */
const HSMCA_ENV = { HSMCA_ISSUE_RATE_PER_TOKEN: '0', HSMCA_ISSUE_RATE_PER_ADDRESS: '0' };

/** A load of JSON POSTs to one path, one body per CSR (issuance by hsmca, cfssl and the floor server). */
const postSpec = (url: string, path: string, bodies: string[], c: number, s: Settings, expectStatus: number, headers: Record<string, string> = {}): LoadSpec => ({
  url,
  connections: c,
  durationSec: s.durationSec,
  headers: { 'content-type': 'application/json', ...headers },
  requests: bodies.map((body) => ({ method: 'POST', path, body: b64(body) })),
  expectStatus,
});

const cfsslSpec = (cfssl: Server, csrs: string[], c: number, s: Settings): LoadSpec =>
  postSpec(`http://127.0.0.1:${cfssl.port}`, '/api/v1/cfssl/sign', csrs.map(cfsslSignBody), c, s, 200);

const issueSpec = (ca: Hsmca, csrs: string[], c: number, s: Settings): LoadSpec =>
  postSpec(ca.url, '/api/v1/certificates', csrs.map((csr) => JSON.stringify({ csr })), c, s, 201, { authorization: `Bearer ${ca.adminToken}` });

// ------------------------------------------------------------------ phases

async function phaseHsm(s: Settings): Promise<HsmResult> {
  progress(`1. HSM baseline: node:crypto P-256 vs SoftHsm signer, ${s.runs} x ${s.hsmSeconds} s each, in a fresh process`);
  const rounds = await measureHsmInChild(s.runs, s.hsmSeconds);
  const raw = summarize(rounds.map((r) => r.rawPerSec));
  const soft = summarize(rounds.map((r) => r.softPerSec));
  progress(`  raw ${fmt(raw)}/s, SoftHsm ${fmt(soft)}/s`);
  return { seconds: s.hsmSeconds, raw, soft, ratio: ratio(soft.median, raw.median) };
}

interface Pkcs11Result {
  module: string;
  bare: Summary;
  backend: Summary;
  ratio: number;
}

/**
 * 1b. The PKCS#11 backend's signatures/s on a SoftHSM2 token against a bare
 * pkcs11js C_Sign loop on the same token, in one fresh process
 * (bench/pkcs11-sign.ts), each round taking both in turn.
 */
async function phasePkcs11(s: Settings): Promise<Pkcs11Result | { skipped: string }> {
  const hasSoftHsm = ['/usr/lib/softhsm/libsofthsm2.so', '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so'].some((p) => fs.existsSync(p));
  if (!hasSoftHsm && !process.env.HSMCA_BENCH_PKCS11_MODULE) {
    progress('1b. PKCS#11: SoftHSM2 not found, skipped (apt-get install -y softhsm2)');
    return { skipped: 'SoftHSM2 not found (apt-get install -y softhsm2)' };
  }
  progress(`1b. PKCS#11: backend vs bare pkcs11js C_Sign loop on one SoftHSM2 token, ${s.runs} x ${s.hsmSeconds} s each`);
  const { execFileSync } = await import('node:child_process');
  const out = execFileSync(process.execPath, [path.join(__dirname, 'pkcs11-sign.js'), String(s.hsmSeconds), '64', '16', String(s.runs), '2'], {
    encoding: 'utf8',
    maxBuffer: 16 * 1024 * 1024,
  });
  const r = JSON.parse(out) as { module: string; samples: { what: string; signaturesPerSecond: number }[] };
  const bare = summarize(r.samples.filter((x) => x.what.startsWith('bare')).map((x) => x.signaturesPerSecond));
  const backend = summarize(r.samples.filter((x) => !x.what.startsWith('bare')).map((x) => x.signaturesPerSecond));
  progress(`  bare ${fmt(bare)}/s, backend ${fmt(backend)}/s`);
  return { module: r.module, bare, backend, ratio: ratio(backend.median, bare.median) ?? 0 };
}

interface Shared {
  lg: LoadGenerator;
  s: Settings;
  peers: boolean;
  tools: ReturnType<typeof detectPeers>;
  notes: string[];
  csrs?: Record<CsrKind, string[]>;
  peerPki?: PeerPki;
  peerDir?: string;
  /** the hsmca server of the issuance and OCSP phases */
  ca?: Hsmca;
  cfsslServe?: Server;
  /** certificates cfssl serve issued (PEM), for its OCSP responses */
  cfsslCerts?: string[];
}

async function csrsOf(sh: Shared): Promise<Record<CsrKind, string[]>> {
  if (!sh.csrs) {
    const n = sh.s.csrCount;
    const t0 = Date.now();
    const p = await makeCsrsCached('p256', n);
    const r = await makeCsrsCached('rsa2048', n);
    const how = p.cached && r.cached ? `reused from ${CSR_CACHE_DIR}` : `made in ${((Date.now() - t0) / 1000).toFixed(1)} s, cached in ${CSR_CACHE_DIR}`;
    progress(`${n} P-256 and ${n} RSA-2048 CSRs (one key each): ${how}`);
    sh.csrs = { p256: p.csrs, rsa2048: r.csrs };
  }
  return sh.csrs;
}

function peerPki(sh: Shared): PeerPki | undefined {
  if (!sh.peers || !sh.tools.openssl) return undefined;
  if (!sh.peerPki) {
    sh.peerDir = tempDir('hsmca-bench-peers-');
    sh.peerPki = makePeerPki(sh.peerDir);
  }
  return sh.peerPki;
}

async function hsmcaServer(sh: Shared): Promise<Hsmca> {
  if (!sh.ca) {
    sh.ca = await startHsmca({ env: HSMCA_ENV });
    progress(`hsmca serving on ${sh.ca.url} (data ${sh.ca.dataDir}, pid ${sh.ca.server.proc.pid})`);
  }
  return sh.ca;
}

/** cfssl serve with the peer CA, started once (issuance, and the certificates of cfssl's OCSP responses). */
async function cfsslServe(sh: Shared): Promise<Server | undefined> {
  const pki = peerPki(sh);
  if (!sh.cfsslServe && sh.tools.cfssl && pki) {
    const csrs = await csrsOf(sh);
    const cfssl = (sh.cfsslServe = await startCfsslServe(pki, await freePort()));
    await cfsslSign(cfssl.port, csrs.p256[0]);
    progress(`cfssl serve on 127.0.0.1:${cfssl.port} (pid ${cfssl.proc.pid})`);
  }
  return sh.cfsslServe;
}

/** 2b: the issuance pipeline without HTTP, in a child process (pipeline-child.ts). */
async function phasePipeline(sh: Shared): Promise<PipelineResult> {
  const { s } = sh;
  const csrs = await csrsOf(sh);
  progress(`2b. issuance pipeline in process (no HTTP), P-256: ${s.runs} x ${s.hsmSeconds} s CSR checks, then ${s.hsmSeconds} s of issuance, 32 in flight`);
  const rounds = await measurePipelineInChild(s.runs, s.hsmSeconds, csrs.p256.length);
  const r: PipelineResult = {
    seconds: s.hsmSeconds,
    csrCheckUs: summarize(rounds.map((x) => x.csrCheckUs)),
    issuedPerSec: summarize(rounds.map((x) => x.issuedPerSec)),
    cpuUsPerCert: summarize(rounds.map((x) => x.cpuUsPerCert)),
  };
  progress(`  CSR check ${fmt(r.csrCheckUs)} µs; pipeline ${fmt(r.issuedPerSec)} certificates/s, ${fmt(r.cpuUsPerCert)} µs CPU each`);
  return r;
}

async function phaseIssuance(sh: Shared): Promise<IssuanceRow[]> {
  const { s, lg } = sh;
  const csrs = await csrsOf(sh);
  const ca = await hsmcaServer(sh);
  for (const k of ['p256', 'rsa2048'] as CsrKind[]) {
    const r = await ca.api('POST', '/api/v1/certificates', { csr: csrs[k][0] });
    if (r.status !== 201) throw new Error(`hsmca refused a ${CSR_LABEL[k]} CSR: ${r.status} ${JSON.stringify(r.body)}`);
  }
  const cfssl = await cfsslServe(sh);
  const rows: IssuanceRow[] = [];
  for (const k of ['p256', 'rsa2048'] as CsrKind[]) {
    for (const c of s.concurrencies) {
      progress(`2. issuance ${CSR_LABEL[k]} c=${c}: ${s.runs} x ${s.durationSec} s`);
      const specs: Record<string, LoadTarget> = { hsmca: { spec: issueSpec(ca, csrs[k], c, s), server: ca.server } };
      if (cfssl && k === 'p256') {
        specs.cfssl = { server: cfssl, spec: cfsslSpec(cfssl, csrs.p256, c, s) };
      }
      const f = await measureInterleaved(lg, s, `${CSR_LABEL[k]} c=${c}`, specs);
      rows.push({ key: CSR_LABEL[k], concurrency: c, hsmca: f.hsmca, cfssl: f.cfssl, ratio: f.cfssl ? ratio(f.hsmca.rps.median, f.cfssl.rps.median) : undefined });
    }
  }
  return rows;
}

/** Warm-up of a server started for figure 2c, before the usual per-figure warm-up. */
const FRESH_WARMUP_SEC = 3;

/** The floor server (floor-server.ts) with `procs` processes sharing one port. */
async function startFloor(procs: number): Promise<Server> {
  const port = await freePort();
  return startServer({
    name: `floor server (${procs} process${procs > 1 ? 'es' : ''})`,
    cmd: process.execPath,
    args: [path.join(__dirname, 'floor-server.js')],
    port,
    env: { ...process.env, FLOOR_PORT: String(port), FLOOR_PROCS: String(procs) },
  });
}

/**
 * 2c: P-256 issuance at c=8 and c=32 from the floor server with one and two
 * processes, hsmca with one process and with HSMCA_WORKERS=2, and cfssl serve,
 * interleaved in the same runs: what both CPUs allow on this stack, and what
 * hsmca makes of them.
 */
async function phaseCeiling(sh: Shared): Promise<CeilingRow[]> {
  const { s, lg } = sh;
  const csrs = (await csrsOf(sh)).p256;
  const cfssl = await cfsslServe(sh);
  const ca1 = await hsmcaServer(sh);
  const servers: Server[] = [];
  let ca2: Hsmca | undefined;
  try {
    const floor1 = await startFloor(1);
    servers.push(floor1);
    const floor2 = await startFloor(2);
    servers.push(floor2);
    ca2 = await startHsmca({ env: { ...HSMCA_ENV, HSMCA_WORKERS: '2' } });
    progress(`2c. floor servers on ports ${floor1.port} and ${floor2.port}; hsmca with 2 worker processes on ${ca2.url}`);
    const r = await ca2.api('POST', '/api/v1/certificates', { csr: csrs[0] });
    if (r.status !== 201) throw new Error(`hsmca (2 workers) refused a P-256 CSR: ${r.status} ${JSON.stringify(r.body)}`);
    const floorSpec = (srv: Server, c: number): LoadSpec => postSpec(`http://127.0.0.1:${srv.port}`, '/', csrs.map((csr) => JSON.stringify({ csr })), c, s, 201);
    // The three servers started here have not served yet: JIT and caches warm up first, as figure 2's server has.
    progress(`2c. warming up the servers started for it: ${FRESH_WARMUP_SEC} s each`);
    for (const [srv, spec] of [
      [floor1, floorSpec(floor1, 8)],
      [floor2, floorSpec(floor2, 8)],
      [ca2.server, issueSpec(ca2, csrs, 8, s)],
    ] as const) {
      await lg.run({ ...spec, durationSec: FRESH_WARMUP_SEC });
      checkAlive(srv);
    }
    const rows: CeilingRow[] = [];
    for (const c of s.concurrencies.filter((x) => x > 1)) {
      progress(`2c. P-256 c=${c}: floor x1, floor x2, hsmca x1, hsmca x2 workers${cfssl ? ', cfssl' : ''}: ${s.runs} x ${s.durationSec} s`);
      const targets: Record<string, LoadTarget> = {
        floor1: { spec: floorSpec(floor1, c), server: floor1 },
        floor2: { spec: floorSpec(floor2, c), server: floor2 },
        hsmca1: { spec: issueSpec(ca1, csrs, c, s), server: ca1.server },
        hsmca2: { spec: issueSpec(ca2, csrs, c, s), server: ca2.server },
      };
      if (cfssl) targets.cfssl = { spec: cfsslSpec(cfssl, csrs, c, s), server: cfssl };
      const f = await measureInterleaved(lg, s, `2c c=${c}`, targets);
      rows.push({ concurrency: c, floor1: f.floor1, floor2: f.floor2, hsmca1: f.hsmca1, hsmca2: f.hsmca2, cfssl: f.cfssl });
    }
    return rows;
  } finally {
    for (const srv of servers) await srv.stop();
    if (ca2) {
      await ca2.stop();
      removeDataDir(ca2.dataDir);
    }
  }
}

async function phaseOcsp(sh: Shared): Promise<OcspRow[]> {
  const { s, lg } = sh;
  const ca = await hsmcaServer(sh);
  // certificates to ask about: those issued in the issuance phase, topped up if needed
  let serials = await issuedSerials(ca, s.ocspCount);
  if (serials.length < s.ocspCount) {
    const csrs = await csrsOf(sh);
    progress(`issuing ${s.ocspCount - serials.length} certificates for the OCSP phase`);
    await lg.run({ ...issueSpec(ca, csrs.p256, 8, s), amount: s.ocspCount - serials.length });
    serials = await issuedSerials(ca, s.ocspCount);
  }
  const issuer = await caIssuer(ca);
  const reqs = serials.map((h) => ocspRequest(issuer, Buffer.from(h.length % 2 ? `0${h}` : h, 'hex')));
  const hsmcaGet = ocspGet(reqs, '/ocsp');
  const hsmcaPost = ocspPost(reqs, '/ocsp');
  await checkOcsp('hsmca GET', ca.url, hsmcaGet);
  await checkOcsp('hsmca POST', ca.url, hsmcaPost);
  progress(`pre-signing hsmca's OCSP responses: one pass over ${reqs.length} requests`);
  await lg.run({ url: ca.url, connections: 8, durationSec: 0, amount: reqs.length, requests: hsmcaGet, expectStatus: 200 });

  // peers
  let cfssl: Server | undefined;
  let cfsslPost: LoadRequest[] = [];
  let openssl: Server | undefined;
  let opensslPost: LoadRequest[] = [];
  let opensslGet: LoadRequest[] | undefined;
  const pki = peerPki(sh);
  const cfsslIssuer = await cfsslServe(sh);
  if (pki && cfsslIssuer) {
    const csrs = await csrsOf(sh);
    progress(`cfssl: issuing ${s.ocspCount} certificates and pre-signing their responses with cfssl ocspsign`);
    const pems: string[] = new Array(s.ocspCount);
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < s.ocspCount; i = next++) pems[i] = await cfsslSign(cfsslIssuer.port, csrs.p256[i % csrs.p256.length]);
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    const file = await cfsslResponsesFile(pki, pems, (d) => progress(`  cfssl ocspsign ${d}/${pems.length}`));
    cfssl = await startCfsslOcspServe(file, await freePort());
    const peerIssuer = issuerInfo(pki.caDer);
    const cfReqs = pems.map((pem) => ocspRequest(peerIssuer, readSerial(pemToDer(pem))));
    cfsslPost = ocspPost(cfReqs, '/');
    await checkOcsp('cfssl ocspserve', `http://127.0.0.1:${cfssl.port}`, cfsslPost);
    progress(`cfssl ocspserve on 127.0.0.1:${cfssl.port} (pid ${cfssl.proc.pid})`);
  }
  if (pki) {
    const peerIssuer = issuerInfo(pki.caDer);
    const ser = randomSerials(s.ocspCount);
    const oReqs = ser.map((x) => ocspRequest(peerIssuer, x));
    openssl = await startOpensslOcsp(pki, writeOcspIndex(pki, ser), await freePort(), oReqs[0]);
    opensslPost = ocspPost(oReqs, '/');
    await checkOcsp('openssl ocsp POST', `http://127.0.0.1:${openssl.port}`, opensslPost);
    try {
      const g = ocspGet(oReqs, '');
      await checkOcsp('openssl ocsp GET', `http://127.0.0.1:${openssl.port}`, g);
      opensslGet = g;
    } catch (e) {
      sh.notes.push(`openssl ocsp GET not measured: ${(e as Error).message}`);
    }
    progress(`openssl ocsp -multi 2 on port ${openssl.port} (pid ${openssl.proc.pid})`);
  }

  const rows: OcspRow[] = [];
  try {
    for (const method of ['GET', 'POST'] as const) {
      for (const c of s.concurrencies) {
        progress(`3. OCSP ${method} c=${c}: ${s.runs} x ${s.durationSec} s`);
        const target = (server: Server, url: string, requests: LoadRequest[], contentType: boolean): LoadTarget => ({
          server,
          spec: {
            url,
            connections: c,
            durationSec: s.durationSec,
            headers: contentType ? { 'content-type': 'application/ocsp-request' } : {},
            requests,
            expectStatus: 200,
          },
        });
        const specs: Record<string, LoadTarget> = { hsmca: target(ca.server, ca.url, method === 'GET' ? hsmcaGet : hsmcaPost, method === 'POST') };
        // cfssl ocspserve's GET is broken in 1.2.0: its POST figure stands in both rows (measured once, in the POST row)
        if (cfssl && method === 'POST') specs.cfssl = target(cfssl, `http://127.0.0.1:${cfssl.port}`, cfsslPost, true);
        const oReq = method === 'GET' ? opensslGet : opensslPost;
        if (openssl && oReq) {
          // HTTP/1.0, a connection per answer: see LoadSpec.connectionPerRequest
          specs.openssl = target(openssl, `http://127.0.0.1:${openssl.port}`, oReq, method === 'POST');
          specs.openssl.spec.connectionPerRequest = true;
        }
        const f = await measureInterleaved(lg, s, `OCSP ${method} c=${c}`, specs);
        rows.push({
          method,
          concurrency: c,
          hsmca: f.hsmca,
          cfssl: f.cfssl,
          cfsslMethod: f.cfssl ? 'POST' : undefined,
          openssl: f.openssl,
          opensslMethod: f.openssl ? method : undefined,
        });
      }
    }
  } finally {
    await cfssl?.stop();
    await openssl?.stop();
  }
  // the GET rows compare with cfssl's POST figure at the same concurrency
  for (const r of rows) {
    if (r.method === 'GET') {
      const post = rows.find((p) => p.method === 'POST' && p.concurrency === r.concurrency);
      if (post?.cfssl) {
        r.cfssl = post.cfssl;
        r.cfsslMethod = 'POST';
      }
    }
    r.ratioCfssl = r.cfssl ? ratio(r.hsmca.rps.median, r.cfssl.rps.median) : undefined;
    r.ratioOpenssl = r.openssl ? ratio(r.hsmca.rps.median, r.openssl.rps.median) : undefined;
  }
  return rows;
}

/** The serialNumber of a certificate (unsigned big-endian). */
const readSerial = (certDer: Buffer): Buffer => readCertificate(certDer).serial;

async function phaseCrl(sh: Shared): Promise<CrlRow[]> {
  const { s } = sh;
  const pki = peerPki(sh);
  const rows: CrlRow[] = [];
  for (const n of s.crlSizes) {
    const dir = tempDir('hsmca-bench-crl-');
    try {
      const file = path.join(dir, 'crl.db');
      progress(`4. CRL ${n.toLocaleString('en')} entries: inserting revoked rows`);
      const { seconds: fillSeconds } = await fillInChild(
        {
          dataDir: dir,
          file,
          count: n,
          revoked: true,
          // the der column is never read by the CRL build; filler of a typical P-256 leaf's size keeps rows realistic
          der: crypto.randomBytes(640).toString('base64'),
        },
        (d) => d % 250_000 === 0 && d < n && progress(`  inserted ${d.toLocaleString('en')}`),
      );
      progress(`  inserted in ${fillSeconds.toFixed(1)} s`);
      let opensslDir: string | undefined;
      if (pki) opensslDir = await writeCrlIndex(pki, n, randomSerials);
      const h: CrlChildResult[] = [];
      const o: ReturnType<typeof opensslGenCrl>[] = [];
      for (let r = 0; r < s.runs; r++) {
        const res = await measureCrlInChild(file);
        if (res.entries !== n) throw new Error(`the CRL lists ${res.entries} entries, not ${n}`);
        h.push(res);
        progress(`  hsmca run ${r + 1}/${s.runs}: ${res.seconds.toFixed(2)} s, peak RSS ${res.peakRssMB.toFixed(0)} MB, CRL ${(res.crlBytes / 2 ** 20).toFixed(1)} MB`);
        if (opensslDir) {
          const g = opensslGenCrl(opensslDir, sh.tools.time);
          o.push(g);
          progress(`  openssl ca -gencrl run ${r + 1}/${s.runs}: ${g.seconds.toFixed(2)} s${g.peakRssMB ? `, peak RSS ${g.peakRssMB.toFixed(0)} MB` : ''}`);
        }
      }
      const hs = summarize(h.map((x) => x.seconds));
      const os_ = o.length ? summarize(o.map((x) => x.seconds)) : undefined;
      const rss = o.every((x) => x.peakRssMB !== undefined) && o.length ? summarize(o.map((x) => x.peakRssMB!)) : undefined;
      rows.push({
        entries: n,
        fillSeconds,
        hsmca: {
          seconds: hs,
          peakRssMB: summarize(h.map((x) => x.peakRssMB)),
          startRssMB: summarize(h.map((x) => x.startRssMB)),
          crlMB: h[0].crlBytes / 2 ** 20,
        },
        openssl: os_ ? { seconds: os_, peakRssMB: rss, crlPemMB: o[0].crlBytes / 2 ** 20 } : undefined,
        timeRatio: os_ ? ratio(hs.median, os_.median) : undefined,
      });
      if (opensslDir) fs.rmSync(opensslDir, { recursive: true, force: true });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  return rows;
}

async function phaseScale(sh: Shared): Promise<ScaleResult> {
  const { s, lg } = sh;
  const [small, large] = s.scaleSizes;
  const dataDir = newDataDir();
  const fillSeconds: number[] = [];
  const ocsp: LoadFigure[] = [];
  const lookup: LoadFigure[] = [];
  try {
    // a real certificate of hsmca's as the der of every filler row
    let ca = await startHsmca({ dataDir, env: HSMCA_ENV });
    const csrs = await csrsOf(sh);
    const one = await ca.api('POST', '/api/v1/certificates', { csr: csrs.p256[0] });
    if (one.status !== 201) throw new Error(`issuance failed: ${one.status}`);
    const template = pemToDer((one.body as { certificate: string }).certificate);
    const issuer = await caIssuer(ca);
    await ca.stop();
    let stored = 1;
    for (const size of [small, large]) {
      progress(`5. scale: filling the certificate table to ${size.toLocaleString('en')} rows`);
      const add = size - stored;
      const filled = await fillInChild(
        { dataDir, count: add, revoked: false, der: template.toString('base64'), sampleEvery: Math.max(1, Math.floor(add / s.ocspCount)) },
        (d) => d % 250_000 === 0 && d < add && progress(`  inserted ${d.toLocaleString('en')}`),
      );
      const sample = filled.sample;
      stored = size;
      fillSeconds.push(filled.seconds);
      progress(`  filled in ${fillSeconds[fillSeconds.length - 1].toFixed(1)} s; ${sample.length} sampled serials`);
      ca = await startHsmca({ dataDir, env: HSMCA_ENV });
      try {
        const reqs = sample.map((h) => ocspRequest(issuer, Buffer.from(h, 'hex')));
        const getReqs = ocspGet(reqs, '/ocsp');
        await checkOcsp('hsmca GET', ca.url, getReqs);
        await lg.run({ url: ca.url, connections: 8, durationSec: 0, amount: reqs.length, requests: getReqs, expectStatus: 200 });
        const look: LoadRequest[] = sample.map((h) => ({ method: 'GET', path: `/api/v1/certificates/${h}` }));
        const chk = await ca.api('GET', look[0].path);
        if (chk.status !== 200) throw new Error(`lookup of a filler row failed: ${chk.status}`);
        const c = s.scaleConcurrency;
        progress(`5. scale ${size.toLocaleString('en')}: OCSP GET and lookups at c=${c}, ${s.runs} x ${s.durationSec} s`);
        const f = await measureInterleaved(lg, s, `${size.toLocaleString('en')} rows`, {
          'OCSP GET': { server: ca.server, spec: { url: ca.url, connections: c, durationSec: s.durationSec, requests: getReqs, expectStatus: 200 } },
          lookup: {
            server: ca.server,
            spec: {
              url: ca.url,
              connections: c,
              durationSec: s.durationSec,
              headers: { authorization: `Bearer ${ca.adminToken}` },
              requests: look,
              expectStatus: 200,
            },
          },
        });
        ocsp.push(f['OCSP GET']);
        lookup.push(f.lookup);
      } finally {
        await ca.stop();
      }
    }
  } finally {
    removeDataDir(dataDir);
  }
  return {
    sizes: [small, large],
    concurrency: s.scaleConcurrency,
    fillSeconds,
    ocsp: [ocsp[0], ocsp[1]],
    lookup: [lookup[0], lookup[1]],
    ocspP50Ratio: ratio(ocsp[1].p50.median, ocsp[0].p50.median),
    lookupP50Ratio: ratio(lookup[1].p50.median, lookup[0].p50.median),
    ocspP99Ratio: ratio(ocsp[1].p99.median, ocsp[0].p99.median),
    lookupP99Ratio: ratio(lookup[1].p99.median, lookup[0].p99.median),
  };
}

/** CPU profiles of the hsmca server process under P-256 issuance and under OCSP GET load, c=32. */
async function phaseProfile(sh: Shared): Promise<NonNullable<Results['profiles']>> {
  const { s, lg } = sh;
  const csrs = await csrsOf(sh);
  const out: NonNullable<Results['profiles']> = {};
  const profDir = tempDir('hsmca-bench-prof-');
  const seconds = s.durationSec * 2;
  const dataDir = newDataDir();
  try {
    const newest = () =>
      fs
        .readdirSync(profDir)
        .filter((f) => f.endsWith('.cpuprofile'))
        .map((f) => path.join(profDir, f))
        .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs)[0];
    progress(`profile: hsmca under P-256 issuance, c=32, ${seconds} s (node --cpu-prof)`);
    let ca = await startHsmca({ dataDir, cpuProfDir: profDir, env: HSMCA_ENV });
    await lg.run({ ...issueSpec(ca, csrs.p256, 32, s), durationSec: s.warmupSec });
    const r1 = await lg.run({ ...issueSpec(ca, csrs.p256, 32, s), durationSec: seconds });
    progress(`  ${round(r1.rps)}/s p50 ${round(r1.p50)} ms p99 ${round(r1.p99)} ms`);
    await ca.stop();
    out.issuance = { load: r1, profile: summarizeProfile(newest()) };
    progress(`profile: hsmca under OCSP GET, c=32, ${seconds} s`);
    ca = await startHsmca({ dataDir, cpuProfDir: profDir, env: HSMCA_ENV });
    const issuer = await caIssuer(ca);
    const serials = await issuedSerials(ca, s.ocspCount);
    const reqs = ocspGet(
      serials.map((h) => ocspRequest(issuer, Buffer.from(h.length % 2 ? `0${h}` : h, 'hex'))),
      '/ocsp',
    );
    await lg.run({ url: ca.url, connections: 8, durationSec: 0, amount: reqs.length, requests: reqs, expectStatus: 200 });
    const r2 = await lg.run({ url: ca.url, connections: 32, durationSec: seconds, requests: reqs, expectStatus: 200 });
    progress(`  ${round(r2.rps)}/s p50 ${round(r2.p50)} ms p99 ${round(r2.p99)} ms`);
    await ca.stop();
    out.ocsp = { load: r2, profile: summarizeProfile(newest()) };
  } finally {
    removeDataDir(dataDir);
    fs.rmSync(profDir, { recursive: true, force: true });
  }
  return out;
}

// ------------------------------------------------------------------ report

function table(rows: string[][], write: (l: string) => void, indent = '  '): void {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  for (const r of rows) write(indent + r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('   ').trimEnd());
}

/** A figure is marked when other processes kept at least this much CPU busy (median over its runs). */
const CONTENDED_CORES = 0.5;
const contended = (f: LoadFigure | undefined) => (f?.otherCores?.median ?? 0) >= CONTENDED_CORES;

const lf = (f: LoadFigure | undefined, prefix = ''): string[] =>
  f ? [prefix + fmt(f.rps) + (contended(f) ? ' †' : ''), fmt(f.p50), fmt(f.p99), String(f.errors)] : ['—', '—', '—', '—'];

/** The server's CPU time per answer, median over the runs, in µs. */
const cpuCell = (f: LoadFigure | undefined): string => (f?.cpuUsPerAnswer ? String(Math.round(f.cpuUsPerAnswer.median)) : '—');

function allFigures(r: Results): LoadFigure[] {
  return [
    ...(r.issuance ?? []).flatMap((x) => [x.hsmca, x.cfssl]),
    ...(r.ceiling ?? []).flatMap((x) => [x.floor1, x.floor2, x.hsmca1, x.hsmca2, x.cfssl]),
    // the GET rows show cfssl's POST figure again: count it once
    ...(r.ocsp ?? []).flatMap((x) => [x.hsmca, x.method === 'POST' ? x.cfssl : undefined, x.openssl]),
    ...(r.scale ? [...r.scale.ocsp, ...r.scale.lookup] : []),
  ].filter((f): f is LoadFigure => f !== undefined);
}

/** Figure 2c beside an issuance target: hsmca's two workers, and the floor of the stack with two processes. */
function ceilingDetail(r: Results, c: number): string {
  const x = r.ceiling?.find((y) => y.concurrency === c);
  if (!x?.cfssl) return '';
  const vs = (f: LoadFigure) => `${round(f.rps.median)}/s, ${fmtRatio(ratio(f.rps.median, x.cfssl!.rps.median))} of cfssl's ${round(x.cfssl!.rps.median)}/s in the same runs`;
  return `; figure 2c: hsmca with 2 workers ${vs(x.hsmca2)}; the floor with 2 processes, nothing stored, ${vs(x.floor2)}`;
}

function evaluateTargets(r: Results): Target[] {
  const t: Target[] = [];
  if (r.issuance) {
    for (const c of [8, 32]) {
      const row = r.issuance.find((x) => x.key === 'P-256' && x.concurrency === c);
      const p99 = c === 32 && row ? ` (p99 ${round(row.hsmca.p99.median)} ms, target < 50 ms)` : '';
      const metP99 = c === 32 && row ? row.hsmca.p99.median < 50 : true;
      t.push({
        name: `issuance P-256 c=${c}: hsmca >= cfssl${c === 32 ? ', p99 < 50 ms' : ''}`,
        met: row?.cfssl ? row.hsmca.rps.median >= row.cfssl.rps.median && metP99 : undefined,
        detail: row?.cfssl ? `${round(row.hsmca.rps.median)} vs ${round(row.cfssl.rps.median)} certificates/s (${fmtRatio(row.ratio)})${p99}${ceilingDetail(r, c)}` : 'cfssl not measured',
      });
    }
  }
  if (r.ocsp) {
    for (const m of ['GET', 'POST'] as const) {
      for (const c of [8, 32]) {
        const row = r.ocsp.find((x) => x.method === m && x.concurrency === c);
        if (!row) continue;
        const peers = [
          row.cfssl ? { n: `cfssl ocspserve (${row.cfsslMethod})`, v: row.cfssl.rps.median } : undefined,
          row.openssl ? { n: `openssl ocsp (${row.opensslMethod})`, v: row.openssl.rps.median } : undefined,
        ].filter((x): x is { n: string; v: number } => !!x);
        t.push({
          name: `OCSP ${m} c=${c}: hsmca ahead of cfssl ocspserve and openssl ocsp -multi 2`,
          met: peers.length === 2 ? peers.every((p) => row.hsmca.rps.median > p.v) : undefined,
          detail: `hsmca ${round(row.hsmca.rps.median)}/s; ${peers.map((p) => `${p.n} ${round(p.v)}/s`).join(', ') || 'peers not measured'}`,
        });
      }
    }
  }
  if (r.crl) {
    const row = r.crl.find((x) => x.entries === 1_000_000);
    t.push({
      name: 'CRL 1M entries: <= half of openssl ca -gencrl time, < 300 MB peak RSS',
      met: row?.openssl ? row.hsmca.seconds.median <= row.openssl.seconds.median / 2 && row.hsmca.peakRssMB.median < 300 : undefined,
      detail: row
        ? `hsmca ${row.hsmca.seconds.median.toFixed(2)} s, ${row.hsmca.peakRssMB.median.toFixed(0)} MB; openssl ${row.openssl ? `${row.openssl.seconds.median.toFixed(2)} s` : 'not measured'} (time ratio ${fmtRatio(row.timeRatio)})`
        : '1M not measured in this mode',
    });
  }
  if (r.scale) {
    const sc = r.scale;
    const full = sc.sizes[1] >= 1_000_000;
    t.push({
      name: `lookup and OCSP latency (p50) at ${sc.sizes[1].toLocaleString('en')} within 1.5x of ${sc.sizes[0].toLocaleString('en')}`,
      met: full && sc.ocspP50Ratio !== undefined && sc.lookupP50Ratio !== undefined ? sc.ocspP50Ratio <= 1.5 && sc.lookupP50Ratio <= 1.5 : undefined,
      detail: `OCSP p50 ${fmtRatio(sc.ocspP50Ratio)}, lookup p50 ${fmtRatio(sc.lookupP50Ratio)} (p99: ${fmtRatio(sc.ocspP99Ratio)}, ${fmtRatio(sc.lookupP99Ratio)})${full ? '' : ' — target is for 1M; quick mode compares 100k'}`,
    });
  }
  return t;
}

function report(r: Results, write: (l: string) => void): void {
  const m = r.meta;
  write('');
  write(`hsmca benchmark — ${m.mode} mode, ${m.settings.runs} run(s) per figure: median [min–max]`);
  write(`${m.date}, node ${m.node}, ${m.cpus} x ${m.cpuModel}, ${m.memoryGB} GB; ${m.openssl ?? 'openssl absent'}; cfssl ${m.cfssl ?? 'absent'}`);
  if (m.commit) write(`hsmca ${m.commit}${m.dirty ? ' with uncommitted changes' : ''}`);
  if (r.hsm) {
    write('');
    write(`1. HSM baseline — P-256 signatures/s (${r.hsm.seconds} s per run)`);
    table(
      [
        ['path', 'signatures/s'],
        ['node:crypto crypto.sign (KeyObject), 1 thread, sequential', fmt(r.hsm.raw)],
        ['SoftHsm signer().sign, 32 in flight', fmt(r.hsm.soft)],
        ['ratio SoftHsm / node:crypto', fmtRatio(r.hsm.ratio)],
      ],
      write,
    );
  }
  if (r.pkcs11) {
    write('');
    if ('skipped' in r.pkcs11) write(`1b. PKCS#11 signing — skipped: ${r.pkcs11.skipped}`);
    else {
      write(`1b. PKCS#11 signing — P-256 signatures/s on one SoftHSM2 token (${r.pkcs11.module})`);
      table(
        [
          ['path', 'signatures/s'],
          ['bare pkcs11js C_SignInit/C_Sign loop, one session', fmt(r.pkcs11.bare)],
          ['hsmca PKCS#11 backend as configured (16 sessions, 2 signing threads), 64 in flight', fmt(r.pkcs11.backend)],
          ['ratio backend / bare (target >= 0.80)', fmtRatio(r.pkcs11.ratio)],
        ],
        write,
      );
    }
  }
  if (r.issuance) {
    write('');
    write(`2. Issuance — POST /api/v1/certificates vs cfssl serve /api/v1/cfssl/sign (certificates/s, latency ms, ${m.settings.durationSec} s per run;`);
    write('   CPU µs: CPU time of the server process, all its threads, per certificate)');
    table(
      [
        ['key', 'c', 'hsmca cert/s', 'p50', 'p99', 'err', 'CPU µs', 'cfssl cert/s', 'p50', 'p99', 'err', 'CPU µs', 'hsmca/cfssl'],
        ...r.issuance.map((x) => [
          x.key,
          String(x.concurrency),
          ...lf(x.hsmca),
          cpuCell(x.hsmca),
          ...(x.cfssl ? [...lf(x.cfssl), cpuCell(x.cfssl)] : ['—', '—', '—', '—', '—']),
          fmtRatio(x.ratio),
        ]),
      ],
      write,
    );
  }
  if (r.pipeline) {
    const p = r.pipeline;
    const http = r.issuance?.find((x) => x.key === 'P-256' && x.concurrency === 32)?.hsmca.cpuUsPerAnswer;
    write('');
    write(`2b. Where a P-256 issuance's CPU time goes — the pipeline in process, without HTTP (${p.seconds} s per run)`);
    table(
      [
        ['part', 'figure'],
        ['CSR check (parse, key import, proof of possession), sequential', `${fmt(p.csrCheckUs)} µs CPU`],
        ['IssuanceService.issue, 32 in flight: CSR check, TBS, HSM signature, reservation, certificate + audit event, fsync', `${fmt(p.issuedPerSec)} cert/s, ${fmt(p.cpuUsPerCert)} µs CPU each`],
        ...(http ? [['the same over HTTP, c=32 (figure 2): the server process', `${fmt(http)} µs CPU each`]] : []),
      ],
      write,
    );
  }
  if (r.ceiling) {
    write('');
    write(`2c. What two CPUs allow — P-256 issuance from the floor server (hsmca's CSR check, TBS and a node:crypto signature on bare node:http,`);
    write('    nothing stored), with one and two processes, and hsmca with one and two worker processes (HSMCA_WORKERS=2), beside cfssl serve');
    table(
      [
        ['c', 'server', 'cert/s', 'p50', 'p99', 'err', 'CPU µs', 'vs cfssl'],
        ...r.ceiling.flatMap((x) => {
          const row = (name: string, f: LoadFigure | undefined) => [String(x.concurrency), name, ...lf(f), cpuCell(f), f && x.cfssl ? fmtRatio(ratio(f.rps.median, x.cfssl.rps.median)) : '—'];
          return [
            row('floor, 1 process', x.floor1),
            row('floor, 2 processes', x.floor2),
            row('hsmca, 1 process (as in figure 2)', x.hsmca1),
            row('hsmca, 2 worker processes', x.hsmca2),
            row('cfssl serve', x.cfssl),
          ];
        }),
      ],
      write,
    );
  }
  if (r.ocsp) {
    write('');
    write(`3. OCSP — responses/s, latency ms (${m.settings.ocspCount} distinct certificates, no nonce; cfssl ocspserve: POST only)`);
    table(
      [
        ['method', 'c', 'hsmca resp/s', 'p50', 'p99', 'err', 'cfssl resp/s', 'p50', 'p99', 'err', 'openssl resp/s', 'p50', 'p99', 'err', 'vs cfssl', 'vs openssl'],
        ...r.ocsp.map((x) => [
          x.method,
          String(x.concurrency),
          ...lf(x.hsmca),
          ...lf(x.cfssl, x.cfssl && x.method === 'GET' ? '(POST) ' : ''),
          ...lf(x.openssl),
          fmtRatio(x.ratioCfssl),
          fmtRatio(x.ratioOpenssl),
        ]),
      ],
      write,
    );
  }
  if (r.crl) {
    write('');
    write('4. CRL build — CrlService.refresh() in a fresh process vs openssl ca -gencrl (seconds, peak RSS MB)');
    table(
      [
        ['entries', 'hsmca s', 'peak RSS', 'CRL MB', 'openssl s', 'peak RSS', 'PEM MB', 'time hsmca/openssl'],
        ...r.crl.map((x) => [
          x.entries.toLocaleString('en'),
          fmt(x.hsmca.seconds),
          fmt(x.hsmca.peakRssMB),
          x.hsmca.crlMB.toFixed(1),
          x.openssl ? fmt(x.openssl.seconds) : '—',
          x.openssl ? fmt(x.openssl.peakRssMB) : '—',
          x.openssl ? x.openssl.crlPemMB.toFixed(1) : '—',
          fmtRatio(x.timeRatio),
        ]),
      ],
      write,
    );
  }
  if (r.crlShards) reportCrlShards(r.crlShards, write);
  if (r.scale) {
    const sc = r.scale;
    const [a, b] = sc.sizes.map((n) => n.toLocaleString('en'));
    write('');
    write(`5. Scale — ${a} vs ${b} stored certificates, c=${sc.concurrency} (responses/s, latency ms)`);
    table(
      [
        ['figure', `${a} rps`, 'p50', 'p99', 'err', `${b} rps`, 'p50', 'p99', 'err', 'p50 ratio', 'p99 ratio'],
        ['OCSP GET', ...lf(sc.ocsp[0]), ...lf(sc.ocsp[1]), fmtRatio(sc.ocspP50Ratio), fmtRatio(sc.ocspP99Ratio)],
        ['GET /api/v1/certificates/{serial}', ...lf(sc.lookup[0]), ...lf(sc.lookup[1]), fmtRatio(sc.lookupP50Ratio), fmtRatio(sc.lookupP99Ratio)],
      ],
      write,
    );
  }
  if (r.targets?.length) {
    write('');
    write('Targets');
    for (const t of r.targets) write(`  [${t.met === undefined ? 'n/a' : t.met ? 'met' : 'NOT MET'}] ${t.name}: ${t.detail}`);
  }
  const figs = allFigures(r);
  const other = figs.flatMap((f) => f.otherCores?.values ?? []);
  if (other.length) {
    const o = summarize(other);
    const n = figs.filter(contended).length;
    write('');
    write(
      `CPU used by other processes on the machine during the measured runs: median ${o.median} [${o.min}–${o.max}] of ${m.cpus} CPUs.` +
        (n ? ` † marks the ${n} figure(s) with a median of ${CONTENDED_CORES} CPU or more: they are lower than this machine can do.` : ''),
    );
  }
  if (r.notes.length) {
    write('');
    write('Notes');
    for (const n of r.notes) write(`  - ${n}`);
  }
  const errs = [
    ...(r.issuance ?? []).flatMap((x) => [x.hsmca, x.cfssl].map((f, i) => [`issuance ${x.key} c=${x.concurrency} ${i ? 'cfssl' : 'hsmca'}`, f] as const)),
    ...(r.ocsp ?? []).flatMap((x) => [x.hsmca, x.openssl].map((f, i) => [`OCSP ${x.method} c=${x.concurrency} ${i ? 'openssl' : 'hsmca'}`, f] as const)),
  ].filter(([, f]) => f && f.errors > 0);
  if (errs.length) {
    write('');
    write('ERRORS (answers other than the expected status, connection errors, timeouts)');
    for (const [n, f] of errs) write(`  ${n}: ${f!.errors} ${JSON.stringify(f!.statusCodes)}`);
  }
  write('');
}

// ------------------------------------------------------------------ main

function version(cmd: string, args: string[]): string | undefined {
  const r = spawnSync(cmd, args, { cwd: ROOT });
  return r.status === 0 ? r.stdout.toString().split('\n')[0].trim() : undefined;
}

/** The commit measured and whether the working tree differs from it (read-only git commands). */
function sourceState(): { commit?: string; dirty?: boolean } {
  const commit = version('git', ['rev-parse', '--short', 'HEAD']);
  if (!commit) return {};
  const st = spawnSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: ROOT });
  return { commit, dirty: st.status === 0 ? st.stdout.toString().trim().length > 0 : undefined };
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const s = o.settings;
  const tools = detectPeers();
  const results: Results = {
    meta: {
      mode: s.mode,
      date: new Date().toISOString(),
      node: process.version,
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
      memoryGB: Math.round(os.totalmem() / 2 ** 30),
      openssl: tools.openssl ? version('openssl', ['version']) : undefined,
      cfssl: tools.cfssl ? version('cfssl', ['version']) : undefined,
      ...sourceState(),
      settings: s,
    },
    notes: [],
  };
  const notes = results.notes;
  if (s.mode === 'quick') notes.push(`quick mode: 1 run per figure, ${s.durationSec} s runs; CRL 1M skipped; scale compares ${s.scaleSizes.map((n) => n.toLocaleString('en')).join(' vs ')}`);
  if (!o.peers) notes.push('peers skipped (--no-peers)');
  else {
    if (!tools.cfssl) notes.push(`cfssl not found: cfssl serve and cfssl ocspserve skipped (install: ${CFSSL_HINT})`);
    if (!tools.openssl) {
      notes.push(`openssl not found: openssl ocsp and openssl ca -gencrl skipped (install: ${OPENSSL_HINT})`);
      if (tools.cfssl) notes.push('cfssl skipped as well: the peer CA it signs with is made with openssl');
    }
  }
  for (const n of notes) progress(n);
  notes.push('hsmca runs with HSMCA_ISSUE_RATE_PER_TOKEN=0 and HSMCA_ISSUE_RATE_PER_ADDRESS=0: the issuance rate limits are off to measure capacity');

  const lg = new LoadGenerator();
  const sh: Shared = { lg, s, peers: o.peers, tools, notes };
  try {
    if (o.phases.has('hsm')) results.hsm = await phaseHsm(s);
    if (o.phases.has('pkcs11')) results.pkcs11 = await phasePkcs11(s);
    if (o.phases.has('issuance')) {
      results.pipeline = await phasePipeline(sh);
      results.issuance = await phaseIssuance(sh);
      results.ceiling = await phaseCeiling(sh);
    }
    if (o.phases.has('ocsp')) results.ocsp = await phaseOcsp(sh);
    await sh.cfsslServe?.stop();
    if (sh.ca) {
      await sh.ca.stop();
      removeDataDir(sh.ca.dataDir);
      sh.ca = undefined;
    }
    if (o.phases.has('crl')) results.crl = await phaseCrl(sh);
    if (o.phases.has('crl')) results.crlShards = await phaseCrlShards(s.crlShardEntries, CRL_SHARDS, progress);
    if (o.phases.has('scale')) results.scale = await phaseScale(sh);
    if (o.profile) results.profiles = await phaseProfile(sh);
  } finally {
    await lg.close();
    await sh.cfsslServe?.stop();
    if (sh.ca) {
      await sh.ca.stop();
      removeDataDir(sh.ca.dataDir);
    }
    if (sh.peerDir) fs.rmSync(sh.peerDir, { recursive: true, force: true });
  }
  notes.push(...idleWarnings);
  results.targets = evaluateTargets(results);
  results.meta.elapsedSeconds = Math.round((Date.now() - started) / 1000);
  fs.writeFileSync(o.out, JSON.stringify(results, null, 1) + '\n');
  const write = (l: string) => process.stdout.write(l + '\n');
  report(results, write);
  if (results.profiles) {
    for (const [k, p] of Object.entries(results.profiles)) {
      const l = p.load;
      printProfile(`CPU profile of the hsmca server under ${k} load (c=32: ${round(l.rps)}/s, p50 ${round(l.p50)} ms, p99 ${round(l.p99)} ms)`, p.profile, write);
      write('');
    }
  }
  write(`results written to ${path.relative(process.cwd(), o.out) || o.out}; ${results.meta.elapsedSeconds} s in all`);
  if (o.phases.has('speed')) phaseSpeed(s, o.peers);
}

/** bench/speed.ts in its own process, after everything else has stopped: its tables go to stdout, its results to bench/speed-results.json. */
function phaseSpeed(s: Settings, peers: boolean): void {
  if (!peers) {
    process.stdout.write('\nspeed phase skipped (--no-peers): every figure in it is a ratio against a peer\n');
    return;
  }
  progress('speed: bench/speed.ts (issue 18 figures)');
  const args = s.mode === 'quick' ? ['--seconds=2', '--rounds=1', '--warm=1', '--only=parts,sqlite,pg,ocsp'] : [`--rounds=${s.runs}`];
  const r = spawnSync(process.execPath, [path.join(__dirname, 'speed.js'), ...args], { cwd: ROOT, stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`the speed phase failed (exit ${r.status ?? r.signal})`);
}

main().catch((e: unknown) => {
  const text = e instanceof Error ? (e.stack ?? e.message) : String(e);
  // a failed SQL statement carries its whole text: keep the message readable
  process.stderr.write(`bench: ${text.length > 4000 ? `${text.slice(0, 2000)}\n...\n${text.slice(-2000)}` : text}\n`);
  process.exit(1);
});
