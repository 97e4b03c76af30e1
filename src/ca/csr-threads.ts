import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { CaError, ErrorKind } from '../errors';
import { ParsedCsr, parseCsr } from './csr';

type Reply = { id: number; csr?: ParsedCsr; error?: { kind: ErrorKind; code: string; message: string } };

// Each thread runs parseCsrSync on what it is sent: the DER decoding, the key
// import (about as costly as the verification itself) and the verification,
// all off the event loop. Requests that arrive in one turn of the event loop
// travel in one message, and so do their answers. Under jest the sources are
// TypeScript: they are transpiled on load, as a build would.
const THREAD_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
if (workerData.module.endsWith('.ts')) {
  const ts = require(workerData.typescript);
  const fs = require('node:fs');
  require.extensions['.ts'] = (m, filename) => {
    const out = ts.transpileModule(fs.readFileSync(filename, 'utf8'), {
      fileName: filename,
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
    });
    m._compile(out.outputText, filename);
  };
}
const { parseCsrSync } = require(workerData.module);
parentPort.on('message', (batch) => {
  parentPort.postMessage(batch.map(({ id, der }) => {
    try {
      return { id, csr: parseCsrSync(Buffer.from(der.buffer, der.byteOffset, der.byteLength)) };
    } catch (e) {
      if (e && typeof e.kind === 'string' && typeof e.code === 'string') return { id, error: { kind: e.kind, code: e.code, message: e.message } };
      return { id, error: { kind: 'internal', code: 'internalError', message: 'the CSR could not be checked' } };
    }
  }));
});
`;

const asBuffer = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

interface Pending {
  resolve(c: ParsedCsr): void;
  reject(e: Error): void;
}

class CsrThread {
  private worker?: Worker;
  private readonly pending = new Map<number, Pending>();
  private batch: { id: number; der: Buffer }[] = [];
  private scheduled = false;

  constructor(private readonly ids: { next: number }) {}

  get load(): number {
    return this.pending.size;
  }

  parse(der: Buffer): Promise<ParsedCsr> {
    const id = this.ids.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.batch.push({ id, der });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.send());
      }
    });
  }

  private send(): void {
    this.scheduled = false;
    const batch = this.batch;
    this.batch = [];
    try {
      this.thread().postMessage(batch);
    } catch (e) {
      this.fail(e as Error, batch.map((b) => b.id));
    }
  }

  private thread(): Worker {
    if (this.worker) return this.worker;
    const ext = path.extname(__filename);
    const w = new Worker(THREAD_SOURCE, {
      eval: true,
      workerData: { module: path.join(__dirname, `csr${ext}`), typescript: ext === '.ts' ? require.resolve('typescript') : undefined },
    });
    w.on('message', (replies: Reply[]) => {
      for (const r of replies) {
        const p = this.pending.get(r.id);
        this.pending.delete(r.id);
        if (!p) continue;
        if (r.csr) {
          const c = r.csr;
          p.resolve({ ...c, subject: asBuffer(c.subject), spki: asBuffer(c.spki), publicKeyBits: asBuffer(c.publicKeyBits) });
        } else p.reject(new CaError(r.error!.kind, r.error!.code, r.error!.message));
      }
    });
    const died = (e: Error) => {
      if (this.worker !== w) return;
      this.worker = undefined;
      this.fail(e, [...this.pending.keys()]);
    };
    w.on('error', died);
    w.on('exit', () => died(new Error('the CSR thread stopped')));
    // after the listeners: adding a 'message' listener refs the worker again
    w.unref();
    this.worker = w;
    return w;
  }

  private fail(e: Error, ids: number[]): void {
    const err = new CaError('internal', 'internalError', `the CSR could not be checked: ${e.message}`);
    for (const id of ids) {
      this.pending.get(id)?.reject(err);
      this.pending.delete(id);
    }
  }

  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    this.fail(new Error('the service is stopping'), [...this.pending.keys()]);
    await w?.terminate();
  }
}

/**
 * CSR parsing and proof-of-possession checks on threads of their own: after
 * the signature, the most expensive step of an issuance, and the one that
 * needs no shared state. `threads: 0` checks on the event loop instead. A thread that dies fails
 * only the requests it held (500) and is started again on next use.
 */
export class CsrThreads {
  private readonly threads: CsrThread[];

  constructor(threads: number) {
    const ids = { next: 0 };
    this.threads = Array.from({ length: threads }, () => new CsrThread(ids));
  }

  parse(der: Buffer): Promise<ParsedCsr> {
    if (this.threads.length === 0) return parseCsr(der);
    let best = this.threads[0];
    for (const t of this.threads) if (t.load < best.load) best = t;
    return best.parse(der);
  }

  async close(): Promise<void> {
    await Promise.all(this.threads.map((t) => t.close()));
  }
}
