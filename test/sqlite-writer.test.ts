import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { CertificateStore } from '../src/storage/certificate-store';
import { Database as Db, openDatabase } from '../src/storage/database';
import { CheckpointReport, SqliteWriter, WalHandle } from '../src/storage/sqlite-writer';
import { tempDir } from './helpers/harness';

/** A stand-in for the log's fsync that the test releases by hand. */
function heldSync() {
  const calls: { path: string; release(): void; fail(e: Error): void }[] = [];
  const sync = (p: string, current?: WalHandle) =>
    new Promise<WalHandle>((resolve, reject) => {
      calls.push({ path: p, release: () => resolve(current ?? ({ fh: { close: async () => undefined }, ino: 0, dev: 0 } as unknown as WalHandle)), fail: reject });
    });
  return { calls, sync };
}

/** close() makes what is committed durable first: it waits for one more (held) fsync. */
async function closeHeld(writer: SqliteWriter, held: ReturnType<typeof heldSync>) {
  let closed = false;
  const closing = writer.close().finally(() => (closed = true));
  while (!closed) {
    for (const c of held.calls) c.release();
    await new Promise((r) => setTimeout(r, 5));
  }
  await closing;
}

/** Waits until `cond` holds (the machine may be busy: no fixed sleeps for what must happen). */
async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

const settle = () => new Promise((r) => setTimeout(r, 20));

function state<T>(p: Promise<T>) {
  const s = { done: false, error: undefined as unknown };
  p.then(
    () => (s.done = true),
    (e) => {
      s.done = true;
      s.error = e;
    },
  );
  return s;
}

describe('SQLite writes: visible at commit, acknowledged after the shared fsync of the log', () => {
  let dir: string;
  let db: Db;
  let filename: string;
  /** what the database logs (checkpoint trouble) */
  let logged: { level: string; msg: string; fields?: Record<string, unknown> }[];

  beforeEach(async () => {
    dir = tempDir('hsmca-writer-');
    logged = [];
    const at = (level: string) => (msg: string, fields?: Record<string, unknown>) => logged.push({ level, msg, fields });
    db = await openDatabase({ dataDir: dir, log: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } });
    filename = path.join(dir, 'hsmca.db');
  });
  afterEach(async () => {
    await db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const reservation = (serial: string) => ({
    serial,
    profile: 'tls-server',
    subject: 'CN=x',
    sans: { dns: ['x.example'], ip: [], email: [], uri: [] },
    notBefore: new Date(0),
    notAfter: new Date(86_400_000),
    requesterId: 't1',
    createdAt: new Date(0),
  });

  it('answers a stored certificate only after an fsync of the -wal file that began after its commit', async () => {
    const held = heldSync();
    const writer = new SqliteWriter(filename, held.sync);
    const store = new CertificateStore({ ...db, writer });
    try {
      // Reservations are never held back by the disk.
      await store.reserve(reservation('0a'));
      await store.reserve(reservation('0b'));
      expect(held.calls).toHaveLength(0);

      const first = state(store.complete('0a', Buffer.from([1, 2, 3])));
      await until(() => held.calls.length === 1, 'the first fsync');
      // committed (another connection sees it) but not yet acknowledged
      expect((await store.get('0a'))?.der).toEqual(Buffer.from([1, 2, 3]));
      expect(first.done).toBe(false);
      expect(held.calls).toHaveLength(1);
      expect(held.calls[0].path).toBe(`${filename}-wal`);

      // A commit made while that fsync runs needs the next one.
      const second = state(store.complete('0b', Buffer.from([4])));
      await settle();
      expect(held.calls).toHaveLength(1);
      held.calls[0].release();
      await until(() => first.done && held.calls.length === 2, 'the first acknowledgement and the second fsync');
      expect(first.error).toBeUndefined();
      expect(second.done).toBe(false);
      held.calls[1].release();
      await until(() => second.done, 'the second acknowledgement');
      expect(second.error).toBeUndefined();
    } finally {
      await closeHeld(writer, held);
    }
  });

  it('one fsync acknowledges every commit made before it began (group commit)', async () => {
    const held = heldSync();
    const writer = new SqliteWriter(filename, held.sync);
    const store = new CertificateStore({ ...db, writer });
    try {
      const serials = Array.from({ length: 20 }, (_, i) => (0x10 + i).toString(16));
      await Promise.all(serials.map((s) => store.reserve(reservation(s))));
      // the first completion starts an fsync; the others, committed while it runs, share the next one
      const done = serials.map((s) => state(store.complete(s, Buffer.from(s, 'hex'))));
      await until(() => held.calls.length === 1, 'the first fsync');
      await settle();
      expect(held.calls).toHaveLength(1);
      held.calls[0].release();
      await until(() => held.calls.length === 2, 'the second fsync');
      held.calls[1].release();
      await until(() => done.every((d) => d.done), 'every acknowledgement');
      expect(done.every((d) => d.error === undefined)).toBe(true);
      expect(held.calls).toHaveLength(2);
    } finally {
      await closeHeld(writer, held);
    }
  });

  it('a failed fsync fails the writes waiting on it (503), and the next one is tried afresh', async () => {
    const held = heldSync();
    const writer = new SqliteWriter(filename, held.sync);
    const store = new CertificateStore({ ...db, writer });
    try {
      await store.reserve(reservation('1a'));
      await store.reserve(reservation('1b'));
      const a = state(store.complete('1a', Buffer.from([1])));
      await until(() => held.calls.length === 1, 'the first fsync');
      held.calls[0].fail(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
      await until(() => a.done, 'the failure');
      expect((a.error as { code?: string }).code).toBe('databaseUnavailable');
      const b = state(store.complete('1b', Buffer.from([2])));
      await until(() => held.calls.length === 2, 'a fresh fsync');
      held.calls[1].release();
      await until(() => b.done, 'the acknowledgement');
      expect(b.error).toBeUndefined();
    } finally {
      await closeHeld(writer, held);
    }
  });

  it('waits for a write lock held by another process from a timer, never by blocking the event loop', async () => {
    const store = new CertificateStore(db);
    const other = new Database(filename);
    other.pragma('busy_timeout = 0');
    other.exec('BEGIN IMMEDIATE');
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 5);
    try {
      const write = state(store.reserve(reservation('2a')));
      await new Promise((r) => setTimeout(r, 150));
      expect(write.done).toBe(false);
      // the event loop kept turning while the write waited
      expect(ticks).toBeGreaterThan(10);
      other.exec('COMMIT');
      await until(() => write.done, 'the write after the lock was released');
      expect(write.error).toBeUndefined();
      expect(other.prepare('SELECT state FROM certificates WHERE serial = ?').get('2a')).toEqual({ state: 'pending' });
    } finally {
      clearInterval(ticker);
      if (other.inTransaction) other.exec('ROLLBACK');
      other.close();
    }
  });

  it('the real fsync: a completed certificate and its audit event survive closing without a checkpoint', async () => {
    const store = new CertificateStore(db);
    await store.reserve(reservation('3a'));
    await store.complete('3a', Buffer.from([9, 9]), { at: 1, type: 'certificateIssued', actor: 'requester:t', subject: '3a', details: '{}' });
    // read through a connection of its own, from the log as the writer left it
    const reader = new Database(filename, { readonly: true });
    try {
      expect(reader.prepare('SELECT state, der FROM certificates WHERE serial = ?').get('3a')).toEqual({ state: 'issued', der: Buffer.from([9, 9]) });
      expect(reader.prepare("SELECT subject FROM audit_events WHERE type = 'certificateIssued'").get()).toEqual({ subject: '3a' });
    } finally {
      reader.close();
    }
  });

  describe('checkpoint trouble is reported once per change, never swallowed', () => {
    it('reports a checkpointer that cannot open the database, once, and not when the writer closes', async () => {
      const reports: CheckpointReport[] = [];
      const writer = new SqliteWriter(filename, undefined, (r) => reports.push(r));
      // the thread opens the file after it has started: the file is gone by then
      fs.renameSync(filename, `${filename}.away`);
      try {
        await until(() => reports.length > 0, 'the report');
        await settle();
        expect(reports).toEqual([{ state: 'stopped', message: expect.stringMatching(/^cannot open the database: unable to open database file/) }]);
      } finally {
        fs.renameSync(`${filename}.away`, filename);
        await writer.close();
      }
      expect(reports).toHaveLength(1);
    });

    it('a log that outgrows what checkpoints keep it to is logged, and so is its recovery', async () => {
      const other = new Database(filename);
      const reader = new Database(filename, { readonly: true });
      try {
        other.exec('CREATE TABLE filler (b BLOB)');
        // A reader's open transaction keeps the log from being restarted while it lasts.
        reader.exec('BEGIN');
        reader.prepare('SELECT count(*) FROM certificates').get();
        const insert = other.prepare('INSERT INTO filler (b) VALUES (?)');
        other.transaction(() => {
          for (let i = 0; i < 72; i++) insert.run(Buffer.alloc(1 << 20, i));
        })();
        await until(() => logged.length > 0, 'the growing report');
        expect(logged[0]).toMatchObject({ level: 'warn', msg: 'the SQLite write-ahead log keeps growing' });
        expect(logged[0].fields?.walMiB).toBeGreaterThan(64);
        // Once the reader lets go, a checkpoint can restart the log, and the next write (here on
        // hsmca's knex connection, as a revocation would be) cuts it back.
        reader.exec('COMMIT');
        const deadline = Date.now() + 10_000;
        while (logged.length < 2 && Date.now() < deadline) {
          await db.knex.raw('DELETE FROM filler WHERE rowid = (SELECT min(rowid) FROM filler)');
          await new Promise((r) => setTimeout(r, 20));
        }
        expect(logged).toHaveLength(2);
        expect(logged[1]).toMatchObject({ level: 'info', msg: 'SQLite checkpoints work again' });
        expect(logged[1].fields?.walMiB).toBeLessThanOrEqual(64);
      } finally {
        if (reader.inTransaction) reader.exec('COMMIT');
        reader.close();
        other.close();
      }
    }, 30_000);
  });
});
