import { statSync } from 'node:fs';
import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import type { CheckpointReport } from './sqlite-writer';

/**
 * SqliteWriter's checkpointer thread (started with startThread): every
 * `every` ms a PASSIVE checkpoint, then a RESTART one when the log had grown
 * past `restartBytes` (sqlite-writer.ts, at WAL_RESTART_BYTES, says why);
 * each change of state is posted to the parent as a CheckpointReport. It
 * imports only node's built-ins: better-sqlite3 is loaded from the resolved
 * path workerData names.
 */

/** The thread's workerData. */
export interface CheckpointerData {
  /** the database file */
  filename: string;
  /** better-sqlite3, as the parent resolved it */
  module: string;
  /** ms between checkpoints */
  every: number;
  /** past this size of the log, a RESTART checkpoint follows the passive one (also the journal_size_limit) */
  restartBytes: number;
  /** past this size after a checkpoint, the log is reported as growing */
  growingBytes: number;
}

interface Connection {
  pragma(s: string): unknown;
}

const data = workerData as CheckpointerData;
const port = parentPort as MessagePort;
const post = (r: CheckpointReport): void => port.postMessage(r);

// eslint-disable-next-line @typescript-eslint/no-require-imports
const Database = require(data.module) as new (f: string, o: object) => Connection;
const text = (e: unknown): string => {
  const x = e as { message?: unknown; code?: unknown } | null | undefined;
  return String((x && (x.message || x.code)) || e);
};
let db: Connection;
try {
  db = new Database(data.filename, { fileMustExist: true });
  db.pragma('busy_timeout = 1000');
  db.pragma('wal_autocheckpoint = 0');
  db.pragma('journal_size_limit = ' + data.restartBytes);
} catch (e) {
  // an error thrown from here would reach the parent without its message
  post({ state: 'stopped', message: 'cannot open the database: ' + text(e) });
  process.exit(1);
}
// the state last reported: '' (fine), 'growing' or 'failing:' + the error
let reported = '';
const report = (state: string, r: CheckpointReport): void => {
  if (state === reported) return;
  reported = state;
  post(r);
};
const walSize = (): number => {
  try {
    return statSync(data.filename + '-wal').size;
  } catch {
    return 0;
  }
};
setInterval(() => {
  try {
    const size = walSize();
    db.pragma('wal_checkpoint(PASSIVE)');
    // what is left to copy now is only what was committed during the passive pass
    if (size > data.restartBytes) db.pragma('wal_checkpoint(RESTART)');
    const after = walSize();
    if (after > data.growingBytes) {
      report('growing', { state: 'growing', message: 'checkpoints do not keep the log below ' + data.growingBytes + ' bytes: they cannot keep up, or a reader holds the log', walBytes: after });
    } else if (reported) {
      report('', { state: 'recovered', walBytes: after });
    }
  } catch (e) {
    const message = text(e);
    report('failing:' + message, { state: 'failing', message, walBytes: walSize() });
  }
}, data.every);
