import * as fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { AuditLog } from '../src/audit/audit-log';
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

  it('an unreachable database fails the group with a clear storage error', async () => {
    const gone = await openDatabase({ url: pg.url, dataDir: dir });
    const goneStore = new CertificateStore(gone);
    await gone.close();
    const err = await goneStore.reserve(reservation(serial())).catch((e) => e);
    expect(err).toBeInstanceOf(CaError);
    expect(err.code).toBe('databaseUnavailable');
  });
});
