import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import * as pkcs11js from 'pkcs11js';
import { startThread } from '../../thread-file';
import { describe } from './errors';
import { Handle } from './module-registry';
import type { SignJob, SignResult, SignThreadData } from './sign-job';

/**
 * Signing threads (signThreads > 0): n worker threads that run C_SignInit and
 * C_Sign both, so nothing of a signature blocks the event loop. The thread body
 * is sign-thread.ts; the jobs and results it exchanges are in sign-job.ts.
 */

interface SignThread {
  worker: Worker;
  busy: number;
  queue: SignJob[];
}

/** Signing threads, each running sign-thread.ts; jobs go to the least busy one. */
export class SignThreads {
  private threads: SignThread[] = [];
  private pending = new Map<number, { resolve: (b: Buffer) => void; reject: (e: Error) => void; thread: SignThread }>();
  private nextId = 0;
  /** set when a thread failed: signing goes back to the libuv path */
  broken?: string;

  constructor(modulePath: string, count: number) {
    const pkcs11jsPath = require.resolve('pkcs11js');
    for (let i = 0; i < count; i++) {
      const workerData: SignThreadData = { pkcs11js: pkcs11jsPath, module: modulePath };
      const worker = startThread(path.join(__dirname, 'sign-thread'), { workerData });
      const thread: SignThread = { worker, busy: 0, queue: [] };
      worker.on('message', (results: SignResult[]) => this.settle(results));
      worker.on('error', (e) => this.fail(`a signing thread failed: ${describe(e)}`));
      worker.on('exit', () => this.fail('a signing thread exited'));
      // idle threads do not keep the process alive (after the listeners: adding one refs the port)
      worker.unref();
      this.threads.push(thread);
    }
  }

  sign(session: Handle, key: Handle, mechanism: number, data: Buffer, sigLen: number): Promise<Buffer> {
    let thread = this.threads[0];
    for (const t of this.threads) if (t.busy < thread.busy) thread = t;
    const id = this.nextId++;
    if (this.nextId > 2 ** 31) this.nextId = 0;
    const t = thread;
    return new Promise<Buffer>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, thread: t });
      if (t.busy++ === 0) t.worker.ref();
      t.queue.push({ id, s: session, k: key, m: mechanism, d: data, n: sigLen });
      // one message per thread per tick: concurrent signatures travel together
      if (t.queue.length === 1) queueMicrotask(() => this.flush(t));
    });
  }

  private flush(t: SignThread): void {
    const jobs = t.queue;
    t.queue = [];
    if (jobs.length === 0) return;
    try {
      t.worker.postMessage(jobs);
    } catch (e) {
      for (const j of jobs) this.finish(j.id, undefined, new Error(`a signing thread cannot be reached: ${describe(e)}`));
    }
  }

  private settle(results: SignResult[]): void {
    for (const r of results) {
      if (r.sig) {
        this.finish(r.id, Buffer.from(r.sig.buffer, r.sig.byteOffset, r.sig.byteLength));
      } else {
        const msg = r.msg ?? 'unknown error';
        this.finish(r.id, undefined, /^CKR_/.test(msg) ? new pkcs11js.Pkcs11Error(`${msg}:${r.code ?? 0}`) : new Error(msg));
      }
    }
  }

  private finish(id: number, sig?: Buffer, err?: Error): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (--p.thread.busy === 0) p.thread.worker.unref();
    if (err) p.reject(err);
    else p.resolve(sig!);
  }

  private fail(why: string): void {
    if (!this.broken) this.broken = why;
    for (const id of [...this.pending.keys()]) this.finish(id, undefined, new Error(why));
  }

  async close(): Promise<void> {
    this.broken ??= 'closed';
    await Promise.all(this.threads.map((t) => t.worker.terminate().catch(() => undefined)));
    this.threads = [];
  }
}
