/**
 * The parent side of load generation: autocannon runs in its own forked
 * process (dist/bench/load-worker.js), so that the load generator, the server
 * under test and the benchmark orchestrator never share a process.
 */
import { ChildProcess, fork } from 'node:child_process';
import * as path from 'node:path';

/** One request of the rotation. Bodies travel base64-encoded over IPC. */
export interface LoadRequest {
  method: 'GET' | 'POST';
  path: string;
  /** base64 of the body bytes */
  body?: string;
}

export interface LoadSpec {
  /** base URL on 127.0.0.1, e.g. http://127.0.0.1:18080 */
  url: string;
  connections: number;
  /** measured duration in seconds (ignored when `amount` is set) */
  durationSec: number;
  /** stop after this many responses instead of after a duration (warm-ups) */
  amount?: number;
  /** headers sent with every request (authorization, content-type) */
  headers?: Record<string, string>;
  /** rotated through, one per request, from a random starting point */
  requests: LoadRequest[];
  /** the status a successful answer has (201 for issuance, 200 otherwise) */
  expectStatus: number;
  /** per-request timeout in seconds */
  timeoutSec?: number;
  /**
   * One new TCP connection per request, for servers that close the connection
   * after every response (openssl ocsp answers HTTP/1.0). autocannon cannot time
   * those (it counts and times answers on a closing connection wrongly), so the
   * worker runs its own closed loop of `connections` clients instead; latency
   * then includes the TCP connect, which such a server always costs.
   */
  connectionPerRequest?: boolean;
}

export interface LoadResult {
  /** answers with the expected status */
  ok: number;
  /** answers with another status */
  unexpected: number;
  /** connection errors and timeouts */
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  /** connection errors by code (ECONNRESET, timeouts ...) */
  errorCodes: Record<string, number>;
  durationSec: number;
  /** ok answers per second */
  rps: number;
  /** latency of every answer in milliseconds (expected status only) */
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

export type WorkerMessage = { kind: 'result'; id: number; result: LoadResult } | { kind: 'error'; id: number; message: string };
export type ParentMessage = { kind: 'run'; id: number; spec: LoadSpec };

/** A forked load-worker process, reused for every run of the benchmark. */
export class LoadGenerator {
  private child?: ChildProcess;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve(r: LoadResult): void; reject(e: Error): void }>();

  private ensure(): ChildProcess {
    if (this.child && this.child.exitCode === null && this.child.connected) return this.child;
    const child = fork(path.join(__dirname, 'load-worker.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    child.on('message', (m: WorkerMessage) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.kind === 'result') p.resolve(m.result);
      else p.reject(new Error(`load worker: ${m.message}`));
    });
    child.on('exit', (code, signal) => {
      for (const [id, p] of this.pending) {
        this.pending.delete(id);
        p.reject(new Error(`load worker exited (${signal ?? code}) during a run`));
      }
      if (this.child === child) this.child = undefined;
    });
    this.child = child;
    return child;
  }

  run(spec: LoadSpec): Promise<LoadResult> {
    if (spec.requests.length === 0) return Promise.reject(new Error('a load run needs at least one request'));
    const child = this.ensure();
    const id = this.nextId++;
    return new Promise<LoadResult>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const msg: ParentMessage = { kind: 'run', id, spec };
      child.send(msg, (err) => {
        if (err) {
          this.pending.delete(id);
          reject(err);
        }
      });
    });
  }

  async close(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.disconnect();
      setTimeout(() => {
        if (child.exitCode === null && child.pid !== undefined) child.kill('SIGKILL');
      }, 5000).unref();
    });
  }
}
