import * as fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { AuditLog } from '../src/audit/audit-log';
import { PG_AUDIT_LOCK } from '../src/audit/chain';
import { verifyAuditChain } from '../src/audit/verify';
import { systemClock } from '../src/clock';
import { CaError } from '../src/errors';
import { silentLogger } from '../src/log';
import { CertificateStore, Reservation, SerialCollision } from '../src/storage/certificate-store';
import { Database, openDatabase } from '../src/storage/database';
import { freshPostgres, postgresUrl, tempDir } from './helpers/harness';

/**
 * PostgreSQL issuance writes grouped across concurrent requests
 * (PgIssuanceWriter), against the real server: every acknowledged
 * certificate is stored with its audit event, groups stay few, serials stay
 * unique, and a row the database refuses fails its own request only.
 */
const describePg = postgresUrl() ? describe : describe.skip;
if (!postgresUrl()) console.warn('\n*** NOTICE: HSMCA_TEST_DATABASE_URL is not set: the PostgreSQL group-commit tests are SKIPPED ***\n');

const serial = () => '7' + randomBytes(15).toString('hex');

function reservation(s: string, subject = 'CN=host.example'): Reservation {
  const now = Date.now();
  return {
    serial: s,
    profile: 'tls-server',
    subject,
    sans: { dns: ['host.example'], ip: [], email: [], uri: [] },
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 90 * 86_400_000),
    requesterId: 'tok1',
    createdAt: new Date(now),
    crlShard: null,
  };
}

describePg('PostgreSQL group commit', () => {
  let pg: { url: string; drop(): Promise<void> };
  let dir: string;
  let db: Database;
  let store: CertificateStore;
  let audit: AuditLog;

  beforeAll(async () => {
    pg = await freshPostgres();
    dir = tempDir('hsmca-pg-group-');
    db = await openDatabase({ url: pg.url, dataDir: dir });
    store = new CertificateStore(db);
    audit = new AuditLog({ db, clock: systemClock, log: silentLogger });
  });
  afterAll(async () => {
    await db?.close();
    await pg?.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const event = (s: string, subject: string = s) => audit.prepare({ type: 'certificateIssued', actor: 'tok1', subject, details: { serial: s } });

  async function issue(s: string): Promise<void> {
    await store.reserve(reservation(s));
    await store.complete(s, Buffer.from(`der of ${s}`), event(s));
  }

  it('stores 300 concurrent issuances in few groups, each with its event, and the chain verifies', async () => {
    const before = { ...db.pgWriter!.stats };
    const serials = Array.from({ length: 300 }, serial);
    await Promise.all(serials.map(issue));
    const stats = db.pgWriter!.stats;
    const groups = stats.completionGroups - before.completionGroups;
    const reserveGroups = stats.reservationGroups - before.reservationGroups;
    // grouped: far fewer transactions than certificates, and a fixed number of round trips per group
    expect(groups).toBeLessThanOrEqual(30);
    expect(reserveGroups).toBeLessThanOrEqual(30);
    // after the first group, which reads the chain's head, each group is one round trip
    expect(stats.fastGroups - before.fastGroups).toBeGreaterThanOrEqual(groups - 1);
    expect(stats.roundTrips - before.roundTrips).toBeLessThanOrEqual(groups + 4 + reserveGroups);
    for (const s of serials) {
      const r = await store.get(s);
      expect(r?.der.toString()).toBe(`der of ${s}`);
    }
    const events = await db.knex('audit_events').whereIn('subject', serials).select('subject');
    expect(events.map((e) => e.subject).sort()).toEqual([...serials].sort());
    expect((await verifyAuditChain(db)).ok).toBe(true);
  });

  it('refuses a serial that exists, and lets exactly one of two concurrent reservations of a serial win', async () => {
    const taken = serial();
    await issue(taken);
    await expect(store.reserve(reservation(taken))).rejects.toBeInstanceOf(SerialCollision);

    const twice = serial();
    const others = Array.from({ length: 20 }, serial);
    const outcomes = await Promise.allSettled([store.reserve(reservation(twice)), ...others.map((s) => store.reserve(reservation(s))), store.reserve(reservation(twice))]);
    const forTwice = [outcomes[0], outcomes[outcomes.length - 1]];
    expect(forTwice.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
    const lost = forTwice.find((o) => o.status === 'rejected') as PromiseRejectedResult;
    expect(lost.reason).toBeInstanceOf(SerialCollision);
    expect(outcomes.slice(1, -1).every((o) => o.status === 'fulfilled')).toBe(true);
    const n = await db.knex('certificates').where({ serial: twice }).count<{ n: number }[]>({ n: '*' });
    expect(Number(n[0].n)).toBe(1);
  });

  it('a reservation the database refuses fails alone; the others of its group are stored', async () => {
    const good = Array.from({ length: 10 }, serial);
    const bad = serial();
    const outcomes = await Promise.allSettled([...good.map((s) => store.reserve(reservation(s))), store.reserve(reservation(bad, 'CN=nul\u0000byte'))]);
    expect(outcomes.slice(0, 10).every((o) => o.status === 'fulfilled')).toBe(true);
    const failed = outcomes[10] as PromiseRejectedResult;
    expect(failed.status).toBe('rejected');
    expect(failed.reason).toBeInstanceOf(CaError);
    expect((failed.reason as CaError).code).toBe('databaseUnavailable');
    expect(await db.knex('certificates').where({ serial: bad }).first()).toBeUndefined();
    expect(await db.knex('certificates').whereIn('serial', good).count<{ n: number }[]>({ n: '*' })).toEqual([{ n: 10 }]);
  });

  it('a completion whose event is refused fails alone, leaving neither its certificate nor its event; the others commit', async () => {
    const good = Array.from({ length: 10 }, serial);
    const bad = serial();
    for (const s of [...good, bad]) await store.reserve(reservation(s));
    const outcomes = await Promise.allSettled([
      ...good.map((s) => store.complete(s, Buffer.from('ok'), event(s))),
      // an event type longer than its column: the database refuses the row
      store.complete(bad, Buffer.from('bad'), { ...event(bad), type: 'x'.repeat(40) }),
    ]);
    expect(outcomes.slice(0, 10).every((o) => o.status === 'fulfilled')).toBe(true);
    expect(outcomes[10].status).toBe('rejected');
    expect(((outcomes[10] as PromiseRejectedResult).reason as CaError).code).toBe('databaseUnavailable');
    // no half-written record: the certificate is still only reserved, and it has no event
    const row = await db.knex('certificates').where({ serial: bad }).first();
    expect(row.state).toBe('pending');
    expect(row.der).toBeNull();
    expect(await store.get(bad)).toBeUndefined();
    for (const s of good) expect((await store.get(s))?.der.toString()).toBe('ok');
    expect(await db.knex('audit_events').whereIn('subject', good).count<{ n: number }[]>({ n: '*' })).toEqual([{ n: 10 }]);
    expect((await verifyAuditChain(db)).ok).toBe(true);
  });

  it('a completion without its reservation fails alone with an internal error', async () => {
    const good = serial();
    await store.reserve(reservation(good));
    const outcomes = await Promise.allSettled([store.complete(serial(), Buffer.from('x'), event('nobody')), store.complete(good, Buffer.from('ok'), event(good))]);
    expect(outcomes[0].status).toBe('rejected');
    expect(((outcomes[0] as PromiseRejectedResult).reason as CaError).kind).toBe('internal');
    expect(outcomes[1].status).toBe('fulfilled');
    expect(await db.knex('audit_events').where({ subject: 'nobody' }).first()).toBeUndefined();
  });

  it('an event appended by the audit log between groups (a head this writer did not write) keeps the chain unbroken', async () => {
    await issue(serial());
    await audit.record({ type: 'tokenCreated', actor: 'test', subject: 'between', details: {} });
    const fastBefore = db.pgWriter!.stats.fastGroups;
    const serials = Array.from({ length: 20 }, serial);
    await Promise.all(serials.map(issue));
    await Promise.all(serials.map(async (s) => expect((await store.get(s))?.der.toString()).toBe(`der of ${s}`)));
    expect(await db.knex('audit_events').whereIn('subject', serials).count<{ n: number }[]>({ n: '*' })).toEqual([{ n: 20 }]);
    expect((await verifyAuditChain(db)).ok).toBe(true);
    // the writer found the moved head and went on in one round trip per group
    await issue(serial());
    expect(db.pgWriter!.stats.fastGroups).toBeGreaterThan(fastBefore);
  });

  it('stores quotes, backslashes and any Unicode in events exactly as given, in one round trip', async () => {
    await issue(serial()); // the writer knows the head
    const fastBefore = db.pgWriter!.stats.fastGroups;
    const s = serial();
    const subject = `CN=o'hara\\'); DROP TABLE certificates; --\u00e9\u{1F600}$$`;
    await store.reserve(reservation(s, subject));
    await store.complete(s, Buffer.from([0, 39, 92, 255]), event(s, subject));
    expect((await store.get(s))?.der).toEqual(Buffer.from([0, 39, 92, 255]));
    expect((await db.knex('audit_events').where({ subject }).first())?.subject).toBe(subject);
    expect(db.pgWriter!.stats.fastGroups).toBeGreaterThan(fastBefore);
    expect((await verifyAuditChain(db)).ok).toBe(true);
  });

  it('two processes sharing the database keep one unbroken chain', async () => {
    const other = await openDatabase({ url: pg.url, dataDir: dir });
    try {
      const otherStore = new CertificateStore(other);
      const serials = Array.from({ length: 120 }, serial);
      await Promise.all(
        serials.map(async (s, i) => {
          const st = i % 2 ? store : otherStore;
          await st.reserve(reservation(s));
          await st.complete(s, Buffer.from('ok'), event(s));
        }),
      );
      expect(await db.knex('audit_events').whereIn('subject', serials).count<{ n: number }[]>({ n: '*' })).toEqual([{ n: 120 }]);
      expect((await verifyAuditChain(db)).ok).toBe(true);
    } finally {
      await other.close();
    }
  });

  /** Issues `n` certificates concurrently; the serials acknowledged (their complete() resolved) and the outcomes. */
  async function issueMany(n: number, during?: () => Promise<void>): Promise<{ acked: string[]; failed: unknown[] }> {
    const serials = Array.from({ length: n }, serial);
    const all = Promise.allSettled(serials.map(issue));
    await during?.();
    const outcomes = await all;
    return {
      acked: serials.filter((_, i) => outcomes[i].status === 'fulfilled'),
      failed: outcomes.flatMap((o) => (o.status === 'rejected' ? [o.reason] : [])),
    };
  }

  async function expectStored(acked: string[]): Promise<void> {
    for (const s of acked) expect((await store.get(s))?.der.toString()).toBe(`der of ${s}`);
    if (acked.length) expect(await db.knex('audit_events').whereIn('subject', acked).count<{ n: number }[]>({ n: '*' })).toEqual([{ n: acked.length }]);
  }

  /** Another session of the server, as an operator's or a restart's would be. */
  async function admin<T>(fn: (c: Client) => Promise<T>): Promise<T> {
    const c = new Client({ connectionString: pg.url });
    await c.connect();
    try {
      return await fn(c);
    } finally {
      await c.end();
    }
  }
  const terminateOthers = (c: Client) => c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()');

  it('connections terminated in the middle of concurrent issuances: the writes in flight fail or commit, later issuances succeed without a restart', async () => {
    await issue(serial()); // the writer knows the head: the one-round-trip path is in use
    const acked: string[] = [];
    let failures = 0;
    for (let round = 0; round < 5; round++) {
      const r = await issueMany(150, async () => {
        // let some groups be on their way, then cut every connection of this database
        await new Promise((res) => setTimeout(res, 5 + round * 10));
        await admin(terminateOthers);
      });
      acked.push(...r.acked);
      failures += r.failed.length;
      for (const e of r.failed) expect(e).toBeInstanceOf(CaError);
    }
    // every round after a cut works in full, on new connections
    for (let round = 0; round < 3; round++) {
      const after = await issueMany(100);
      expect(after.failed).toEqual([]);
      acked.push(...after.acked);
    }
    expect(failures).toBeLessThan(750);
    await expectStored(acked);
    expect((await verifyAuditChain(db)).ok).toBe(true);
  });

  it('connections that the server ends while idle (idle_session_timeout) are replaced: the next issuances succeed', async () => {
    await issue(serial());
    await admin((c) => c.query(`ALTER DATABASE ${new URL(pg.url).pathname.slice(1)} SET idle_session_timeout = '300ms'`));
    try {
      // the pools' connections predate the setting: cut them so the new ones carry it
      await admin(terminateOthers);
      const acked: string[] = [];
      for (let round = 0; round < 3; round++) {
        const r = await issueMany(60);
        acked.push(...r.acked);
        // every connection of both pools sits idle past the timeout, and the server ends it
        await new Promise((res) => setTimeout(res, 800));
      }
      const last = await issueMany(60);
      expect(last.failed).toEqual([]);
      acked.push(...last.acked);
      await expectStored(acked);
      expect((await verifyAuditChain(db)).ok).toBe(true);
    } finally {
      await admin((c) => c.query(`ALTER DATABASE ${new URL(pg.url).pathname.slice(1)} RESET idle_session_timeout`));
      await admin(terminateOthers);
    }
  });

  it('a group whose transaction fails with a non-row error (cancelled while it waits for the chain lock) fails its writes only; the next groups commit', async () => {
    await issue(serial());
    const acked: string[] = [];
    const failed = await admin(async (c) => {
      // hold the audit chain's lock so that the next group waits on it, then cancel the waiting statement
      await c.query('BEGIN');
      await c.query(`SELECT pg_advisory_xact_lock((${PG_AUDIT_LOCK})::bigint)`);
      const serials = Array.from({ length: 40 }, serial);
      const all = Promise.allSettled(serials.map(issue));
      // twice: a cancelled one-round-trip group is written again on the exact path, which waits in turn
      for (let cancel = 0; cancel < 2; cancel++) {
        let waiting = 0;
        for (let i = 0; i < 300 && waiting === 0; i++) {
          await new Promise((res) => setTimeout(res, 10));
          waiting = (await c.query(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`)).rows[0].n;
        }
        expect(waiting).toBeGreaterThan(0);
        await c.query(`SELECT pg_cancel_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`);
      }
      await c.query('COMMIT');
      const outcomes = await all;
      acked.push(...serials.filter((_, i) => outcomes[i].status === 'fulfilled'));
      return outcomes.filter((o) => o.status === 'rejected').map((o) => (o as PromiseRejectedResult).reason);
    });
    expect(failed.length).toBeGreaterThan(0);
    for (const e of failed) expect((e as CaError).code).toBe('databaseUnavailable');
    const after = await issueMany(100);
    expect(after.failed).toEqual([]);
    await expectStored([...acked, ...after.acked]);
    expect((await verifyAuditChain(db)).ok).toBe(true);
  });

  it('an unreachable database fails the group with a clear storage error', async () => {
    const gone = await openDatabase({ url: pg.url, dataDir: dir });
    const goneStore = new CertificateStore(gone);
    await gone.close();
    const err = await goneStore.reserve(reservation(serial())).catch((e) => e);
    expect(err).toBeInstanceOf(CaError);
    expect(err.code).toBe('databaseUnavailable');
  });
});
