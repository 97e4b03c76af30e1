import { promises as fsp, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { Appended, PreparedEvent, chainRows } from '../audit/chain';
import { startThread } from '../thread-file';
import type { CheckpointerData } from './sqlite-checkpointer-thread';

/** An issuance write. */
export type WriterOp =
  | { kind: 'reserve'; row: [string, string, string, string, string, number, number, string | null, number, (number | null)?, number?] }
  /** the certificate, and the audit event that reports it: one transaction, both or neither */
  | { kind: 'complete'; serial: string; der: Uint8Array; event?: PreparedEvent };

export type WriterResult = null | { code: 'unique' | 'missing' | 'error'; message?: string };

/**
 * What the checkpointer reports, once per change of state: checkpoints fail
 * (or the thread itself stopped), the log has outgrown what checkpoints keep
 * it to, or checkpoints work again. While checkpoints fail the log only grows.
 */
export type CheckpointReport = { state: 'failing' | 'stopped' | 'growing'; message: string; walBytes?: number } | { state: 'recovered'; walBytes?: number };

interface Statement {
  run(...p: unknown[]): { changes: number };
  get(...p: unknown[]): unknown;
}
interface Connection {
  prepare(sql: string): Statement;
  pragma(s: string): unknown;
  transaction<A extends unknown[], R>(fn: (...a: A) => R): { immediate(...a: A): R };
  close(): void;
}

/** How long a write waits for another process's lock before it fails (as busy_timeout would). */
const LOCK_WAIT_MS = 10_000;
/** How often the checkpointer folds the log back into the database. */
const CHECKPOINT_EVERY_MS = 250;

const isUnique = (e: unknown) => {
  const code = (e as { code?: string })?.code;
  return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
};
const isBusy = (e: unknown) => /^SQLITE_(BUSY|LOCKED)/.test((e as { code?: string })?.code ?? '');

/**
 * The hot-path writes of SQLite (issuance and the audit chain), made on the
 * event loop without ever waiting on it:
 *
 * - One connection of its own, used only here and only synchronously, so a
 *   transaction begins and commits within one turn of the event loop. Its
 *   commits do not wait for the disk (synchronous=NORMAL: the transaction's
 *   frames are written to the write-ahead log, not fsynced), so a commit
 *   costs tens of microseconds and no thread hop, and concurrent issuances
 *   never queue behind anyone's fsync.
 * - Durability is `synced()`: it resolves once an fsync of the -wal file that
 *   began after the caller's commit has completed, on libuv's thread pool.
 *   That is the fsync synchronous=FULL would have done inside the commit,
 *   done after it instead, and shared: one fsync at a time covers every
 *   commit before it (group commit). Callers that answer a client await it
 *   (CertificateStore.complete, the audit log); reservations, which must be
 *   visible before the HSM signs but need not be durable (a lost
 *   reservation was never answered to anyone), do not.
 * - busy_timeout is 0: when another process holds the write lock, the write
 *   is tried again a millisecond later from a timer rather than by sleeping
 *   on the event loop (up to LOCK_WAIT_MS, then it fails as a busy database
 *   would).
 * - Every transaction is BEGIN IMMEDIATE: the write lock before the audit
 *   chain's head is read, so the head is still the head at COMMIT.
 * - Checkpoints (copying the log back into the database, with their own
 *   fsyncs) run on a thread of their own every CHECKPOINT_EVERY_MS, never on
 *   the event loop: this connection's automatic checkpoints are off. Their
 *   trouble (failures, a thread that stopped, a log that keeps growing) and
 *   its end are reported once each (`report`), since the log only grows
 *   meanwhile.
 *
 * The log file is the one SQLite writes while any connection is open: it is
 * opened once and reopened if its inode changes (a log deleted and created
 * again when every connection had closed).
 */
export class SqliteWriter {
  private readonly db: Connection;
  private readonly issueTx: (ops: WriterOp[]) => WriterResult[];
  private readonly auditTx: (batch: PreparedEvent[]) => Appended[];
  private readonly walPath: string;
  private wal?: WalHandle;
  private syncing = false;
  private waiting: { resolve(): void; reject(e: Error): void }[] = [];
  private readonly checkpointer: Worker;
  private closed = false;

  constructor(
    filename: string,
    /** the fsync of the log (replaced in tests to hold it back) */
    private readonly syncWal: (path: string, current?: WalHandle) => Promise<WalHandle> = syncFile,
    /** told when checkpoints start failing, stop, or work again (the log) */
    report: (r: CheckpointReport) => void = () => undefined,
  ) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const Database = require('better-sqlite3') as new (f: string, o: object) => Connection;
    const db = new Database(filename, { fileMustExist: true });
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('busy_timeout = 0');
    db.pragma('wal_autocheckpoint = 0');
    db.pragma(`journal_size_limit = ${WAL_RESTART_BYTES}`);
    this.db = db;
    this.walPath = `${filename}-wal`;

    const ins = db.prepare(
      'INSERT INTO certificates (serial, state, profile, subject, sans, not_before, not_after, requester_id, created_at, crl_shard, issuer_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
    );
    const upd = db.prepare("UPDATE certificates SET state = 'issued', der = ? WHERE serial = ? AND state = 'pending'");
    const head = db.prepare('SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1');
    const insertEvent = db.prepare('INSERT INTO audit_events (seq, at, type, actor, subject, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
    const appendChain = (batch: PreparedEvent[]): Appended[] => {
      if (batch.length === 0) return [];
      const { rows, out } = chainRows(head.get() as { seq: number; hash: string } | undefined, batch);
      for (const r of rows) insertEvent.run(r.seq, r.at, r.type, r.actor, r.subject, r.details, r.prev_hash, r.hash);
      return out;
    };
    const apply = (op: WriterOp): WriterResult => {
      if (op.kind === 'reserve') {
        ins.run(...op.row.slice(0, 9), op.row[9] ?? null, op.row[10] ?? 1);
        return null;
      }
      return upd.run(op.der, op.serial).changes === 1 ? null : { code: 'missing' };
    };
    // The certificates first, then the events of those that were stored, in order.
    const issue = db.transaction((ops: WriterOp[]) => {
      const results = ops.map(apply);
      appendChain(ops.flatMap((op, i) => (op.kind === 'complete' && op.event && results[i] === null ? [op.event] : [])));
      return results;
    });
    this.issueTx = (ops) => issue.immediate(ops);
    const audit = db.transaction(appendChain);
    this.auditTx = (batch) => audit.immediate(batch);
    this.checkpointer = startCheckpointer(filename, report, () => this.closed);
  }

  /** One issuance batch (reservations and completions), one transaction; visible at once, durable after synced(). */
  run(ops: WriterOp[]): Promise<WriterResult[]> {
    return this.withLock(() => {
      try {
        return this.issueTx(ops);
      } catch (e) {
        if (isBusy(e)) throw e;
        if (!isUnique(e)) return ops.map(() => ({ code: 'error' as const, message: String((e as Error)?.message) }));
      }
      // A serial collided somewhere in the batch: write each on its own to find it.
      return ops.map((op) => {
        try {
          return this.issueTx([op])[0];
        } catch (e) {
          if (isBusy(e)) return { code: 'error' as const, message: String((e as Error)?.message) };
          return { code: isUnique(e) ? ('unique' as const) : ('error' as const), message: String((e as Error)?.message) };
        }
      });
    });
  }

  /** Appends audit events after the chain's head, one transaction; rejects with the database error (its code kept). */
  appendAudit(batch: PreparedEvent[]): Promise<Appended[]> {
    return this.withLock(() => this.auditTx(batch));
  }

  /** Runs `write` now, or, while another process holds the write lock, again a millisecond later. */
  private withLock<R>(write: () => R): Promise<R> {
    const deadline = Date.now() + LOCK_WAIT_MS;
    return new Promise<R>((resolve, reject) => {
      const attempt = () => {
        if (this.closed) return reject(new Error('the database is closed'));
        try {
          resolve(write());
        } catch (e) {
          if (isBusy(e) && Date.now() < deadline) setTimeout(attempt, 1);
          else reject(e);
        }
      };
      attempt();
    });
  }

  /**
   * Resolves once everything committed here before the call is on disk: it
   * joins the next fsync of the log (one fsync for every caller that arrived
   * while the previous one ran).
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
    this.syncWal(this.walPath, this.wal)
      .then(
        (h) => {
          this.wal = h;
          for (const w of batch) w.resolve();
        },
        (e: Error) => {
          for (const w of batch) w.reject(e);
        },
      )
      .finally(() => {
        this.syncing = false;
        this.startSync();
      });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.checkpointer.terminate();
    // What is committed is made durable before the connection goes.
    await new Promise<void>((resolve) => {
      this.waiting.push({ resolve, reject: () => resolve() });
      this.startSync();
    });
    await this.wal?.fh.close().catch(() => undefined);
    this.wal = undefined;
    this.db.close();
  }
}

/** An open log file, and which file it is. */
export interface WalHandle {
  fh: fsp.FileHandle;
  ino: number;
  dev: number;
}

/** fdatasync of `path`, through the handle kept from last time unless the file was replaced. */
async function syncFile(path: string, current?: WalHandle): Promise<WalHandle> {
  let h = current;
  // a stat of a path is a cached lookup (microseconds): done here, it spares the thread pool a round
  if (h && !sameFile(path, h)) {
    await h.fh.close().catch(() => undefined);
    h = undefined;
  }
  if (!h) {
    const fh = await fsp.open(path, 'r');
    const st = await fh.stat();
    h = { fh, ino: st.ino, dev: st.dev };
  }
  await h.fh.datasync();
  return h;
}

function sameFile(path: string, opened: WalHandle): boolean {
  try {
    const st = statSync(path);
    return st.ino === opened.ino && st.dev === opened.dev;
  } catch {
    return false;
  }
}

// PASSIVE checkpoints never wait for readers or writers; a checkpoint fsyncs
// the log before it copies pages and the database after. Under a steady
// stream of commits a passive checkpoint never catches up with the end of the
// log, and the log only grows; past WAL_RESTART_BYTES a RESTART checkpoint
// follows the passive one: it makes writers wait (they retry from a timer)
// while it copies what was committed since the passive pass, and the log is
// then reused from its start and cut back to that size (journal_size_limit).
export const WAL_RESTART_BYTES = 16 * 1024 * 1024;
// Past GROWING_FACTOR x WAL_RESTART_BYTES the log is reported: checkpoints
// cannot keep up, or a reader has held the log for a long time.
const GROWING_FACTOR = 4;

function startCheckpointer(filename: string, report: (r: CheckpointReport) => void, closing: () => boolean): Worker {
  const workerData: CheckpointerData = {
    filename,
    module: require.resolve('better-sqlite3'),
    every: CHECKPOINT_EVERY_MS,
    restartBytes: WAL_RESTART_BYTES,
    growingBytes: GROWING_FACTOR * WAL_RESTART_BYTES,
  };
  const w = startThread(join(__dirname, 'sqlite-checkpointer-thread'), { workerData });
  // The thread could not start (the database cannot be opened) or died: nothing checkpoints any more.
  let stopped = false;
  const stop = (message: string) => {
    if (stopped || closing()) return;
    stopped = true;
    report({ state: 'stopped', message });
  };
  w.on('message', (r: CheckpointReport) => (r.state === 'stopped' ? stop(r.message) : report(r)));
  w.on('error', (e: unknown) => stop(`the checkpointer thread failed: ${(e as Error)?.message ?? String(e)}`));
  w.on('exit', (code) => stop(`the checkpointer thread exited with code ${code}`));
  w.unref();
  return w;
}
