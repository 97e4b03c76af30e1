import { Worker } from 'node:worker_threads';
import { Appended, PreparedEvent, SQLITE_CHAIN_JS } from '../audit/chain';

/** An issuance write as the writer thread receives it. */
export type WriterOp =
  | { kind: 'reserve'; row: [string, string, string, string, string, number, number, string | null, number] }
  /** the certificate, and the audit event that reports it: one transaction, both or neither */
  | { kind: 'complete'; serial: string; der: Uint8Array; event?: PreparedEvent };

export type WriterResult = null | { code: 'unique' | 'missing' | 'error'; message?: string };

type Message = { id: number; kind: 'issue'; ops: WriterOp[] } | { id: number; kind: 'audit'; batch: PreparedEvent[] };
type Reply = { id: number; results?: WriterResult[]; out?: Appended[]; error?: { message: string; code?: string } };

// The thread owns the process's one writing better-sqlite3 connection:
// issuance writes and audit appends take turns on it rather than competing
// for SQLite's write lock. Every transaction is BEGIN IMMEDIATE (the write
// lock before anything is read, so the audit head read is still the head at
// COMMIT; another process waits on busy_timeout). An issuance batch is one
// transaction: one fsync however many certificates it carries. On a unique
// violation the batch is retried op by op to find the colliding serial.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
const db = new Database(workerData.filename, { fileMustExist: true });
db.pragma('journal_mode = WAL');
db.pragma('synchronous = FULL');
db.pragma('busy_timeout = 10000');
${SQLITE_CHAIN_JS}
const ins = db.prepare('INSERT INTO certificates (serial, state, profile, subject, sans, not_before, not_after, requester_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)');
const upd = db.prepare("UPDATE certificates SET state = 'issued', der = ? WHERE serial = ? AND state = 'pending'");
function apply(op) {
  if (op.kind === 'reserve') { ins.run(...op.row); return null; }
  return upd.run(Buffer.from(op.der), op.serial).changes === 1 ? null : { code: 'missing' };
}
// The certificates first, then the events of those that were stored, in order.
const issue = db.transaction((ops) => {
  const results = ops.map(apply);
  appendChain(db, ops.filter((op, i) => op.kind === 'complete' && op.event && results[i] === null).map((op) => op.event));
  return results;
});
const audit = db.transaction((batch) => appendChain(db, batch));
const isUnique = (e) => e && (e.code === 'SQLITE_CONSTRAINT_UNIQUE' || e.code === 'SQLITE_CONSTRAINT_PRIMARYKEY');
function runIssue(ops) {
  // A batch of reservations only needs to be visible (for serial uniqueness),
  // not durable: a lost reservation was never answered to anyone. A batch
  // that stores a certificate is fsynced, and the fsync covers every earlier
  // frame of the WAL, reservations included.
  const durable = ops.some((op) => op.kind === 'complete');
  db.pragma(durable ? 'synchronous = FULL' : 'synchronous = NORMAL');
  try {
    return issue.immediate(ops);
  } catch (e) {
    if (!isUnique(e)) return ops.map(() => ({ code: 'error', message: String(e && e.message) }));
  }
  return ops.map((op) => {
    try { return issue.immediate([op])[0]; }
    catch (e2) { return { code: isUnique(e2) ? 'unique' : 'error', message: String(e2 && e2.message) }; }
  });
}
parentPort.on('message', (m) => {
  if (m.kind === 'issue') return parentPort.postMessage({ id: m.id, results: runIssue(m.ops) });
  db.pragma('synchronous = FULL');
  try {
    parentPort.postMessage({ id: m.id, out: audit.immediate(m.batch) });
  } catch (e) {
    parentPort.postMessage({ id: m.id, error: { message: String(e && e.message), code: e && e.code } });
  }
});
`;

/**
 * SQLite's commit waits for fsync, and a write lock held by another process
 * waits in busy_timeout; better-sqlite3 would do both on the event loop.
 * Writes on the hot paths (issuance, the audit chain) therefore go to a
 * thread of their own, so the main thread keeps serving while a batch is
 * made durable.
 */
export class SqliteWriteThread {
  private readonly worker: Worker;
  private next = 0;
  private readonly pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private dead?: Error;

  constructor(filename: string) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { filename, module: require.resolve('better-sqlite3') } });
    this.worker.on('message', (reply: Reply) => {
      const p = this.pending.get(reply.id);
      this.pending.delete(reply.id);
      p?.resolve(reply);
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

  /** One issuance batch (reservations and completions), one transaction. */
  async run(ops: WriterOp[]): Promise<WriterResult[]> {
    return (await this.send({ id: 0, kind: 'issue', ops })).results!;
  }

  /** Appends audit events after the chain's head, one transaction; rejects with the database error (its code kept). */
  async appendAudit(batch: PreparedEvent[]): Promise<Appended[]> {
    const r = await this.send({ id: 0, kind: 'audit', batch });
    if (r.out) return r.out;
    throw Object.assign(new Error(r.error?.message ?? 'audit append failed'), { code: r.error?.code });
  }

  private send(m: Message): Promise<Reply> {
    if (this.dead) return Promise.reject(this.dead);
    return new Promise((resolve, reject) => {
      m.id = this.next++;
      this.pending.set(m.id, { resolve, reject });
      this.worker.postMessage(m);
    });
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}
