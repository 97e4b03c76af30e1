import knexFactory, { Knex } from 'knex';
import * as path from 'node:path';
import { Client as PgClient, types as pgTypes } from 'pg';
import { migrationSource } from '../../migrations';
import { CaError, StartupError } from '../errors';
import type { Logger } from '../log';
import { CheckpointReport, SqliteWriter, WAL_RESTART_BYTES } from './sqlite-writer';
import { PgIssuanceWriter } from './pg-issuance-writer';
import { PgLookups } from './pg-lookups';

// PostgreSQL returns bigint as text; every bigint here is an epoch-millisecond
// time or an id well inside Number's exact range.
pgTypes.setTypeParser(20, (v) => Number(v));

/** knex prints pool errors on its own; hsmca reports them through its errors instead. */
const quietLog = { warn() {}, error() {}, deprecate() {}, debug() {} };

/** A read-only better-sqlite3 connection for hot lookups (OCSP, tokens): no pool, no promises. */
export interface SqliteReader {
  prepare(sql: string): { get(...params: unknown[]): unknown };
  close(): void;
}

export interface Database {
  knex: Knex;
  kind: 'sqlite' | 'postgres';
  /** SQLite only: a second, read-only connection (WAL lets it read while the writer writes) */
  reader?: SqliteReader;
  /** SQLite only: the connection for issuance writes and audit appends, with its group fsync */
  writer?: SqliteWriter;
  /** PostgreSQL only: issuance writes grouped across concurrent requests (group commit) */
  pgWriter?: PgIssuanceWriter;
  /** PostgreSQL only: hot lookups (tokens, blocked keys, OCSP status) grouped into one query each */
  pgLookups?: PgLookups;
  close(): Promise<void>;
  ping(): Promise<void>;
  /** PostgreSQL only: the connection URL, for the cluster's own session (leader lock, LISTEN) */
  url?: string;
  /**
   * Several instances starting at once take turns through initialisation
   * (migrations, CA keys on first start, the first admin, the responder
   * certificate): PostgreSQL, a session advisory lock; SQLite, nothing (one host, one process initialises).
   * Returns the release.
   */
  startupLock(): Promise<() => Promise<void>>;
}

/** pg_advisory_lock key of start-up: the first 8 bytes of SHA-256("hsmca.startup"), signed. */
export const PG_STARTUP_LOCK = '9129117931143589782';

/** A session advisory lock on a connection of its own, held until the release closes it (a crash releases it too). */
async function pgStartupLock(url: string): Promise<() => Promise<void>> {
  const client = new PgClient({ connectionString: url });
  client.on('error', () => undefined);
  await client.connect();
  try {
    await client.query(`SELECT pg_advisory_lock((${PG_STARTUP_LOCK})::bigint)`);
  } catch (e) {
    await client.end().catch(() => undefined);
    throw e;
  }
  let released: Promise<void> | undefined;
  return () => (released ??= client.end().catch(() => undefined));
}

/**
 * Opens the database named by HSMCA_DATABASE_URL (PostgreSQL), or the
 * embedded SQLite file in the data folder, and runs the migrations.
 */
export async function openDatabase(opts: { url?: string; dataDir: string; log?: Logger }): Promise<Database> {
  let knex: Knex;
  let kind: Database['kind'];
  let filename: string | undefined;
  if (opts.url && /^postgres(ql)?:/.test(opts.url)) {
    kind = 'postgres';
    knex = knexFactory({
      client: 'pg',
      connection: opts.url,
      log: quietLog,
      pool: { min: 0, max: 10 },
      acquireConnectionTimeout: 10000,
    });
  } else {
    kind = 'sqlite';
    filename = opts.url?.startsWith('sqlite:') ? opts.url.slice('sqlite:'.length) : path.join(opts.dataDir, 'hsmca.db');
    knex = knexFactory({
      client: 'better-sqlite3',
      connection: { filename },
      log: quietLog,
      useNullAsDefault: true,
      pool: {
        min: 1,
        max: 1,
        // WAL with synchronous=FULL: a commit is on disk before it is acknowledged.
        afterCreate: (conn: { pragma(s: string): unknown }, done: (err: Error | null, conn: unknown) => void) => {
          try {
            conn.pragma('journal_mode = WAL');
            conn.pragma('synchronous = FULL');
            conn.pragma('busy_timeout = 10000');
            conn.pragma('foreign_keys = ON');
            // SqliteWriter's thread checkpoints the log; none on the event loop
            conn.pragma('wal_autocheckpoint = 0');
            // a write that restarts the log cuts it back, as the writer's do
            conn.pragma(`journal_size_limit = ${WAL_RESTART_BYTES}`);
            done(null, conn);
          } catch (e) {
            done(e as Error, conn);
          }
        },
      },
    });
  }
  try {
    // two instances migrating at once: the second waits, then finds nothing left to do
    const release = kind === 'postgres' ? await pgStartupLock(opts.url!) : undefined;
    try {
      await knex.migrate.latest({ migrationSource });
    } finally {
      await release?.();
    }
  } catch (e) {
    await knex.destroy().catch(() => undefined);
    throw new Error(`cannot open the ${kind === 'postgres' ? 'PostgreSQL' : 'SQLite'} database: ${(e as Error).message}`);
  }
  let reader: SqliteReader | undefined;
  let writer: SqliteWriter | undefined;
  if (kind === 'sqlite') {
    const log = opts.log;
    writer = new SqliteWriter(filename!, undefined, log ? (r) => logCheckpoint(log, r) : undefined);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const BetterSqlite = require('better-sqlite3') as new (f: string, o: object) => SqliteReader & { pragma(s: string): unknown };
    const r = new BetterSqlite(filename!, { readonly: true, fileMustExist: true });
    r.pragma('busy_timeout = 10000');
    reader = r;
  }
  const pgWriter = kind === 'postgres' ? new PgIssuanceWriter(opts.url!) : undefined;
  const pgLookups = kind === 'postgres' ? new PgLookups(opts.url!) : undefined;
  return {
    knex,
    kind,
    reader,
    writer,
    pgWriter,
    pgLookups,
    close: async () => {
      reader?.close();
      await writer?.close();
      await pgWriter?.close();
      await pgLookups?.close();
      await knex.destroy();
    },
    ping: async () => {
      await knex.raw('select 1');
    },
    url: kind === 'postgres' ? opts.url : undefined,
    startupLock: async () => (kind === 'postgres' ? pgStartupLock(opts.url!) : async () => undefined),
  };
}

/** Checkpoint trouble goes to the log once per change: while checkpoints fail, the write-ahead log only grows. */
function logCheckpoint(log: Logger, r: CheckpointReport): void {
  const walMiB = r.walBytes === undefined ? undefined : Math.round(r.walBytes / 2 ** 20);
  if (r.state === 'recovered') log.info('SQLite checkpoints work again', { walMiB });
  else if (r.state === 'growing') log.warn('the SQLite write-ahead log keeps growing', { walMiB, detail: r.message });
  else if (r.state === 'failing') log.error('SQLite checkpoints are failing: the write-ahead log grows until they work again', { walMiB, error: r.message });
  else log.error('SQLite checkpoints have stopped: the write-ahead log grows until hsmca is restarted', { error: r.message });
}

export function isUniqueViolation(e: unknown): boolean {
  const err = e as { code?: string };
  return err?.code === '23505' || err?.code === 'SQLITE_CONSTRAINT_UNIQUE' || err?.code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

/** Any storage failure surfaces as 503 with a stable code; details stay in the log. */
export function storageError(e: unknown): CaError {
  if (e instanceof CaError) return e;
  return databaseUnavailable();
}

/** 503 `databaseUnavailable`; Retry-After: 2, a PostgreSQL restart takes a few seconds. */
export function databaseUnavailable(): CaError {
  return new CaError('unavailable', 'databaseUnavailable', 'the database is unavailable; try again later', { 'Retry-After': '2' });
}

/**
 * Whether an error means the database could not be reached (down, restarting,
 * the connection dropped, no connection free in time) rather than a fault of
 * the request: such a request is answered 503 and may be retried.
 */
export function isDatabaseUnreachable(e: unknown): boolean {
  const err = e as { code?: unknown; name?: unknown; message?: unknown } | undefined;
  if (!err || typeof err !== 'object') return false;
  const code = typeof err.code === 'string' ? err.code : '';
  // PostgreSQL: class 08 connection exception, 57P01-57P03 shutdown / cannot connect now, 53300 too many connections
  if (/^08/.test(code) || /^57P0[1-3]$/.test(code) || code === '53300') return true;
  if (['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'SQLITE_BUSY'].includes(code)) return true;
  if (err.name === 'KnexTimeoutError') return true;
  const message = typeof err.message === 'string' ? err.message : '';
  return /Connection terminated|connection is closed|Client has encountered a connection error|terminating connection|the database system is (starting up|shutting down|in recovery mode)|Timeout acquiring a connection/i.test(message);
}

/** openDatabase for start-up: a failure becomes one line naming the setting to look at. */
export async function openConfiguredDatabase(config: { databaseUrl?: string; dataDir: string }, log?: Logger): Promise<Database> {
  try {
    return await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir, log });
  } catch (e) {
    throw new StartupError(`HSMCA_DATABASE_URL: ${(e as Error).message}`);
  }
}
