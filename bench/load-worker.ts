/**
 * The load generator process: forked by bench/load.ts, it runs one autocannon
 * instance per request message and answers with a LoadResult.
 *
 * Latencies are taken from autocannon's per-response event (hrtime, fractions
 * of a millisecond) rather than from its histogram, which keeps whole
 * milliseconds only: OCSP answers take well under one.
 */
import type { EventEmitter } from 'node:events';
import * as net from 'node:net';
import type { LoadResult, LoadSpec, ParentMessage, WorkerMessage } from './load';
import { percentileSorted } from './stats';

// autocannon ships no type declarations; this is the part of its API used here.
interface AcRequest {
  method?: string;
  path?: string;
  body?: Buffer | string;
  headers?: Record<string, string>;
  setupRequest?: (req: AcRequest, context: object) => AcRequest | undefined;
}

interface AcOptions {
  url: string;
  connections: number;
  duration?: number;
  amount?: number;
  timeout?: number;
  headers?: Record<string, string>;
  requests?: AcRequest[];
}

interface AcResult {
  duration: number;
  errors: number;
  timeouts: number;
}

interface AcInstance extends EventEmitter {
  stop(): void;
}

type Autocannon = (opts: AcOptions, cb: (err: Error | null, result: AcResult) => void) => AcInstance;

const autocannon = require('autocannon') as Autocannon;

/** Counts and latencies of one run, whichever engine drives it. */
class Tally {
  readonly latencies: number[] = [];
  readonly statusCodes: Record<string, number> = {};
  readonly errorCodes: Record<string, number> = {};
  ok = 0;
  unexpected = 0;

  constructor(private readonly expectStatus: number) {}

  response(status: number, ms: number): void {
    this.statusCodes[status] = (this.statusCodes[status] ?? 0) + 1;
    if (status === this.expectStatus) {
      this.ok++;
      this.latencies.push(ms);
    } else {
      this.unexpected++;
    }
  }

  error(code: string): void {
    this.errorCodes[code] = (this.errorCodes[code] ?? 0) + 1;
  }

  result(durationSec: number, errors: number, timeouts: number): LoadResult {
    const sorted = Float64Array.from(this.latencies).sort();
    let sum = 0;
    for (const l of this.latencies) sum += l;
    return {
      ok: this.ok,
      unexpected: this.unexpected,
      errors,
      timeouts,
      statusCodes: this.statusCodes,
      errorCodes: this.errorCodes,
      durationSec,
      rps: this.ok / durationSec,
      p50: percentileSorted(sorted, 50),
      p90: percentileSorted(sorted, 90),
      p99: percentileSorted(sorted, 99),
      max: sorted.length ? sorted[sorted.length - 1] : NaN,
      mean: this.latencies.length ? sum / this.latencies.length : NaN,
    };
  }
}

function decodePool(spec: LoadSpec) {
  return spec.requests.map((r) => ({ method: r.method, path: r.path, body: r.body ? Buffer.from(r.body, 'base64') : undefined }));
}

/**
 * The closed loop for servers that close every connection: each of the
 * `connections` clients connects, sends one request, reads the answer to the
 * end of the connection, and starts over.
 */
function runConnectionPerRequest(spec: LoadSpec): Promise<LoadResult> {
  const u = new URL(spec.url);
  const port = Number(u.port || 80);
  const host = u.hostname;
  const extra = Object.entries(spec.headers ?? {})
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  const wire = decodePool(spec).map((r) => {
    const body = r.body ?? Buffer.alloc(0);
    const head = `${r.method} ${r.path} HTTP/1.1\r\nHost: ${u.host}\r\nConnection: close\r\n${extra}${body.length ? `Content-Length: ${body.length}\r\n` : ''}\r\n`;
    return Buffer.concat([Buffer.from(head, 'latin1'), body]);
  });
  const tally = new Tally(spec.expectStatus);
  const timeoutMs = (spec.timeoutSec ?? 10) * 1000;
  let next = Math.floor(Math.random() * wire.length);
  let sent = 0;
  let errors = 0;
  let timeouts = 0;
  const t0 = performance.now();
  const deadline = t0 + spec.durationSec * 1000;
  const more = () => (spec.amount !== undefined ? sent < spec.amount : performance.now() < deadline);
  const client = () =>
    new Promise<void>((done) => {
      const one = () => {
        if (!more()) return done();
        sent++;
        const req = wire[next++ % wire.length];
        const start = performance.now();
        const chunks: Buffer[] = [];
        let failed = false;
        const sock = net.connect({ port, host, noDelay: true });
        sock.setTimeout(timeoutMs, () => {
          timeouts++;
          failed = true;
          tally.error('timeout');
          sock.destroy();
        });
        sock.once('connect', () => sock.end(req));
        sock.on('data', (c: Buffer) => chunks.push(c));
        sock.once('error', (e: Error & { code?: string }) => {
          if (failed) return;
          failed = true;
          errors++;
          tally.error(e.code ?? e.message);
        });
        sock.once('close', () => {
          if (!failed) {
            const m = /^HTTP\/1\.[01] (\d{3})/.exec(Buffer.concat(chunks).subarray(0, 16).toString('latin1'));
            if (m) tally.response(Number(m[1]), performance.now() - start);
            else {
              errors++;
              tally.error('no HTTP status line');
            }
          }
          setImmediate(one);
        });
      };
      one();
    });
  return Promise.all(Array.from({ length: spec.connections }, client)).then(() => tally.result((performance.now() - t0) / 1000, errors, timeouts));
}

function runAutocannon(spec: LoadSpec): Promise<LoadResult> {
  const pool = decodePool(spec);
  let next = Math.floor(Math.random() * pool.length);
  const tally = new Tally(spec.expectStatus);
  const setupRequest = (req: AcRequest): AcRequest => {
    const r = pool[next++ % pool.length];
    req.method = r.method;
    req.path = r.path;
    req.body = r.body;
    return req;
  };
  return new Promise<LoadResult>((resolve, reject) => {
    const t0 = performance.now();
    const instance = autocannon(
      {
        url: spec.url,
        connections: spec.connections,
        ...(spec.amount !== undefined ? { amount: spec.amount } : { duration: spec.durationSec }),
        timeout: spec.timeoutSec ?? 10,
        headers: spec.headers ?? {},
        requests: [{ setupRequest }],
      },
      (err, res) => {
        if (err) return reject(err);
        resolve(tally.result((performance.now() - t0) / 1000, res.errors, res.timeouts));
      },
    );
    instance.on('reqError', (e: Error & { code?: string }) => tally.error(e.code ?? e.message));
    instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => tally.response(statusCode, responseTime));
  });
}

const run = (spec: LoadSpec): Promise<LoadResult> => (spec.connectionPerRequest ? runConnectionPerRequest(spec) : runAutocannon(spec));

process.on('message', (m: ParentMessage) => {
  if (m.kind !== 'run') return;
  const reply = (msg: WorkerMessage) => process.send?.(msg);
  run(m.spec).then(
    (result) => reply({ kind: 'result', id: m.id, result }),
    (e: unknown) => reply({ kind: 'error', id: m.id, message: e instanceof Error ? e.message : String(e) }),
  );
});
process.on('disconnect', () => process.exit(0));
