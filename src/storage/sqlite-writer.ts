import { Worker } from 'node:worker_threads';

/** An issuance write as the writer thread receives it. */
export type WriterOp =
  | { kind: 'reserve'; row: [string, string, string, string, string, number, number, string | null, number] }
  | { kind: 'complete'; serial: string; der: Uint8Array };

export type WriterResult = null | { code: 'unique' | 'missing' | 'error'; message?: string };

// The thread owns one better-sqlite3 connection. A batch is one transaction:
// one fsync however many certificates it carries. On a unique violation the
// batch is retried op by op to find the colliding serial.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
const db = new Database(workerData.filename);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = FULL');
db.pragma('busy_timeout = 10000');
const ins = db.prepare('INSERT INTO certificates (serial, state, profile, subject, sans, not_before, not_after, requester_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)');
const upd = db.prepare("UPDATE certificates SET state = 'issued', der = ? WHERE serial = ? AND state = 'pending'");
function apply(op) {
  if (op.kind === 'reserve') { ins.run(...op.row); return null; }
  return upd.run(Buffer.from(op.der), op.serial).changes === 1 ? null : { code: 'missing' };
}
const isUnique = (e) => e && (e.code === 'SQLITE_CONSTRAINT_UNIQUE' || e.code === 'SQLITE_CONSTRAINT_PRIMARYKEY');
parentPort.on('message', ({ id, ops }) => {
  // A batch of reservations only needs to be visible (for serial uniqueness),
  // not durable: a lost reservation was never answered to anyone. A batch
  // that stores a certificate is fsynced, and the fsync covers every earlier
  // frame of the WAL, reservations included.
  const durable = ops.some((op) => op.kind === 'complete');
  db.pragma(durable ? 'synchronous = FULL' : 'synchronous = NORMAL');
  let results;
  try {
    results = db.transaction(() => ops.map(apply))();
  } catch (e) {
    if (isUnique(e)) {
      results = ops.map((op) => {
        try { return db.transaction(() => apply(op))(); }
        catch (e2) { return { code: isUnique(e2) ? 'unique' : 'error', message: String(e2 && e2.message) }; }
      });
    } else {
      results = ops.map(() => ({ code: 'error', message: String(e && e.message) }));
    }
  }
  parentPort.postMessage({ id, results });
});
`;

/**
 * SQLite's commit waits for fsync; better-sqlite3 would wait on the event loop.
 * Issuance writes therefore go to a thread of their own, so the main thread
 * keeps serving while a batch is made durable.
 */
export class SqliteWriteThread {
  private readonly worker: Worker;
  private next = 0;
  private readonly pending = new Map<number, { resolve: (r: WriterResult[]) => void; reject: (e: Error) => void }>();
  private dead?: Error;

  constructor(filename: string) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { filename, module: require.resolve('better-sqlite3') } });
    this.worker.on('message', ({ id, results }: { id: number; results: WriterResult[] }) => {
      const p = this.pending.get(id);
      this.pending.delete(id);
      p?.resolve(results);
    });
    const fail = (e: Error) => {
      this.dead = e;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', () => fail(new Error('the SQLite writer thread stopped')));
    // after the listeners: adding a 'message' listener refs the worker again
    this.worker.unref();
  }

  run(ops: WriterOp[]): Promise<WriterResult[]> {
    if (this.dead) return Promise.reject(this.dead);
    return new Promise((resolve, reject) => {
      const id = this.next++;
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, ops });
    });
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}
