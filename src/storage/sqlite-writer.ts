import { promises as fsp } from 'node:fs';
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
// transaction. On a unique violation the batch is retried op by op to find
// the colliding serial. Commits do not wait for the disk here
// (synchronous=NORMAL): SqliteWriteThread.synced() makes them durable.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
const db = new Database(workerData.filename, { fileMustExist: true });
db.pragma('journal_mode = WAL');
db.pragma('synchronous = NORMAL');
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
  try {
    parentPort.postMessage({ id: m.id, out: audit.immediate(m.batch) });
  } catch (e) {
    parentPort.postMessage({ id: m.id, error: { message: String(e && e.message), code: e && e.code } });
  }
});
`;

/**
 * The writer thread, and the durability of what it commits.
 *
 * SQLite's commit with synchronous=FULL writes the transaction's frames to
 * the write-ahead log and fsyncs the log while holding the database's write
 * lock, so every writer queues behind every fsync. Here the thread commits
 * with synchronous=NORMAL (frames written to the log, no fsync) and the log
 * is fsynced separately, on libuv's thread pool (`synced`): a commit is
 * durable once an fsync of the -wal file that began after the commit
 * returned has completed; that is exactly the fsync FULL would have done,
 * after the lock is released instead of before. One fsync runs at a time and
 * covers every commit before it, so concurrent issuances share it (group
 * commit), while reservations, which must be visible before the HSM signs
 * but need not be durable (a lost reservation was never answered to anyone),
 * never wait for the disk. Callers that answer a client call `synced()`
 * after their commit: CertificateStore.complete and the audit log.
 *
 * The log file is the one SQLite writes while any connection is open: it is
 * opened once and reopened if its inode changes (a log deleted and created
 * again when every connection had closed).
 */
export class SqliteWriteThread {
  private readonly worker: Worker;
  private next = 0;
  private readonly pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private dead?: Error;
  private readonly walPath: string;
  private wal?: fsp.FileHandle;
  private syncing = false;
  private waiting: { resolve(): void; reject(e: Error): void }[] = [];

  constructor(
    filename: string,
    /** the fsync of the log (replaced in tests to hold it back) */
    private readonly syncWal: (path: string, current?: fsp.FileHandle) => Promise<fsp.FileHandle> = syncFile,
  ) {
    this.walPath = `${filename}-wal`;
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

  /**
   * Resolves once everything this thread committed before the call is on
   * disk: it joins the next fsync of the log (one fsync for every caller
   * that arrived while the previous one ran).
   */
  synced(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.startSync();
    });
  }

  private startSync(): void {
    if (this.syncing || this.waiting.length === 0) return;
    this.syncing = true;
    const batch = this.waiting;
    this.waiting = [];
    this.syncWal(this.walPath, this.wal).then(
      (fh) => {
        this.wal = fh;
        for (const w of batch) w.resolve();
      },
      (e: Error) => {
        for (const w of batch) w.reject(e);
      },
    ).finally(() => {
      this.syncing = false;
      this.startSync();
    });
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
    await this.wal?.close().catch(() => undefined);
    this.wal = undefined;
  }
}

/** fdatasync of `path`, through the handle kept from last time unless the file was replaced. */
async function syncFile(path: string, current?: fsp.FileHandle): Promise<fsp.FileHandle> {
  let fh = current;
  if (fh) {
    const [a, b] = await Promise.all([fh.stat(), fsp.stat(path).catch(() => undefined)]);
    if (!b || a.ino !== b.ino || a.dev !== b.dev) {
      await fh.close().catch(() => undefined);
      fh = undefined;
    }
  }
  fh ??= await fsp.open(path, 'r');
  await fh.datasync();
  return fh;
}
