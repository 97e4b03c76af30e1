import * as fs from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { CaError } from '../src/errors';
import { BlockedKeyStore } from '../src/storage/blocked-key-store';
import { CertificateStore } from '../src/storage/certificate-store';
import { Database, openDatabase } from '../src/storage/database';
import { TokenStore } from '../src/storage/token-store';
import { freshPostgres, postgresUrl, tempDir } from './helpers/harness';

/**
 * The per-request lookups on PostgreSQL (token, blocked key, OCSP status)
 * grouped into one query per group of concurrent requests (PgLookups),
 * against the real server: each caller gets its own row, and what changed
 * before a lookup is what it reads.
 */
const describePg = postgresUrl() ? describe : describe.skip;
if (!postgresUrl()) console.warn('\n*** NOTICE: HSMCA_TEST_DATABASE_URL is not set: the PostgreSQL lookup tests are SKIPPED ***\n');

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

describePg('PostgreSQL grouped lookups', () => {
  let pg: { url: string; drop(): Promise<void> };
  let dir: string;
  let db: Database;

  beforeAll(async () => {
    pg = await freshPostgres();
    dir = tempDir('hsmca-pg-lookups-');
    db = await openDatabase({ url: pg.url, dataDir: dir });
  });
  afterAll(async () => {
    await db?.close();
    await pg?.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('answers 200 concurrent token lookups, each with its own record, in few queries', async () => {
    const tokens = new TokenStore(db);
    const ids = Array.from({ length: 100 }, (_, i) => `tok${i}`);
    for (const id of ids) {
      await tokens.add({ id, name: `name-${id}`, role: 'requester', hash: sha(id), scope: { names: [`${id}.example`] }, createdAt: new Date(), expiresAt: null, revokedAt: null });
    }
    const before = db.pgLookups!.tokens.groups;
    const asked = [...ids, ...ids.map((id) => `missing-${id}`)];
    const found = await Promise.all(asked.map((id) => tokens.findByHash(sha(id))));
    found.forEach((r, i) => {
      if (i < 100) {
        expect(r?.id).toBe(asked[i]);
        expect(r?.name).toBe(`name-${asked[i]}`);
        expect(r?.scope).toEqual({ names: [`${asked[i]}.example`] });
      } else expect(r).toBeUndefined();
    });
    expect(db.pgLookups!.tokens.groups - before).toBeLessThanOrEqual(10);
    // the same key asked twice at once: both get it
    const [a, b] = await Promise.all([tokens.findByHash(sha('tok1')), tokens.findByHash(sha('tok1'))]);
    expect(a?.id).toBe('tok1');
    expect(b?.id).toBe('tok1');
    // a revocation is seen by the next lookup
    await tokens.revoke('tok2', new Date());
    expect((await tokens.findByHash(sha('tok2')))?.revokedAt).toBeInstanceOf(Date);
  });

  it('answers concurrent OCSP status lookups and sees a revocation at once', async () => {
    const certs = new CertificateStore(db);
    const serials = Array.from({ length: 50 }, () => '5' + randomBytes(15).toString('hex'));
    const now = Date.now();
    for (const s of serials) {
      await certs.reserve({ serial: s, profile: 'tls-server', subject: 'CN=x', sans: { dns: ['x.example'], ip: [], email: [], uri: [] }, notBefore: new Date(now), notAfter: new Date(now + 86_400_000), requesterId: null, createdAt: new Date(now) });
      await certs.complete(s, Buffer.from('der'));
    }
    const pending = '6' + randomBytes(15).toString('hex');
    await certs.reserve({ serial: pending, profile: 'tls-server', subject: 'CN=x', sans: { dns: ['x.example'], ip: [], email: [], uri: [] }, notBefore: new Date(now), notAfter: new Date(now + 86_400_000), requesterId: null, createdAt: new Date(now) });
    const statuses = await Promise.all([...serials, pending, 'ff'].map((s) => certs.status(s)));
    for (let i = 0; i < serials.length; i++) expect(statuses[i]).toEqual({ issuerId: 1, notAfter: now + 86_400_000, revokedAt: null, reason: null });
    // a reservation that was never signed is not a certificate; nor is a serial never issued
    expect(statuses[serials.length]).toBeUndefined();
    expect(statuses[serials.length + 1]).toBeUndefined();

    const revokedAt = new Date(now + 1000);
    await certs.revoke(serials[3], revokedAt, 1, null);
    const again = await Promise.all(serials.slice(0, 5).map((s) => certs.status(s)));
    expect(again[3]).toEqual({ issuerId: 1, notAfter: now + 86_400_000, revokedAt: revokedAt.getTime(), reason: 1 });
    expect(again[2]?.revokedAt).toBeNull();
  });

  it('answers blocked-key checks for concurrent issuances', async () => {
    const store = new BlockedKeyStore(db);
    const blocked = Array.from({ length: 20 }, (_, i) => sha(`key${i}`));
    for (const k of blocked) await store.add({ spkiSha256: k, addedAt: new Date(), source: 'admin', serial: null, addedBy: 'test', comment: null });
    const asked = [...blocked, ...Array.from({ length: 20 }, (_, i) => sha(`free${i}`))];
    const got = await Promise.all(asked.map((k) => store.get(k)));
    got.forEach((r, i) => (i < 20 ? expect(r?.spkiSha256).toBe(asked[i]) : expect(r).toBeUndefined()));
  });

  it('keeps its prepared statements working when a migration adds columns to the tables they read and write', async () => {
    // The lookups and the issuance writes are prepared once per connection; a prepared
    // `SELECT *` would fail ("cached plan must not change result type") after this.
    const tokens = new TokenStore(db);
    const blocked = new BlockedKeyStore(db);
    const certs = new CertificateStore(db);
    const now = Date.now();
    const row = (serial: string) => ({ serial, profile: 'tls-server', subject: 'CN=m', sans: { dns: ['m.example'], ip: [], email: [], uri: [] }, notBefore: new Date(now), notAfter: new Date(now + 86_400_000), requesterId: null, createdAt: new Date(now) });
    await tokens.add({ id: 'mig', name: 'mig', role: 'requester', hash: sha('mig'), scope: { names: ['*.example'] }, createdAt: new Date(now), expiresAt: null, revokedAt: null });
    await blocked.add({ spkiSha256: sha('migkey'), addedAt: new Date(now), source: 'admin', serial: null, addedBy: 'test', comment: 'c' });
    const serials = ['7a' + randomBytes(14).toString('hex'), '7b' + randomBytes(14).toString('hex')];
    const issue = async (s: string) => {
      await certs.reserve(row(s));
      await certs.complete(s, Buffer.from('der'));
    };
    const readAll = async (serial: string) => ({
      token: await tokens.findByHash(sha('mig')),
      key: await blocked.get(sha('migkey')),
      status: await certs.status(serial),
    });
    await issue(serials[0]);
    const before = await readAll(serials[0]);
    expect(before.token?.scope).toEqual({ names: ['*.example'] });
    expect(before.key?.comment).toBe('c');
    expect(before.status?.revokedAt).toBeNull();
    for (const t of ['tokens', 'blocked_keys', 'certificates', 'audit_events']) await db.knex.raw(`ALTER TABLE ${t} ADD COLUMN migration_test text DEFAULT 'x'`);
    try {
      expect(await readAll(serials[0])).toEqual(before);
      await issue(serials[1]);
      expect((await readAll(serials[1])).status).toEqual(before.status);
    } finally {
      for (const t of ['tokens', 'blocked_keys', 'certificates', 'audit_events']) await db.knex.raw(`ALTER TABLE ${t} DROP COLUMN migration_test`);
    }
    expect(await readAll(serials[1])).toEqual(before);
  });

  it('a database that cannot answer fails the lookups with a clear storage error', async () => {
    const gone = await openDatabase({ url: pg.url, dataDir: dir });
    const tokens = new TokenStore(gone);
    await gone.close();
    const errs = await Promise.all([tokens.findByHash(sha('a')), tokens.findByHash(sha('b'))].map((p) => p.catch((e) => e)));
    for (const e of errs) {
      expect(e).toBeInstanceOf(CaError);
      expect(e.code).toBe('databaseUnavailable');
    }
  });
});
