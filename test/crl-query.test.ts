import * as fs from 'node:fs';
import { CRL_INDEX } from '../migrations/004_crl_index';
import { SHARD_CRL_INDEX } from '../migrations/006_crl_shards';
import { CertificateStore, RevokedRow } from '../src/storage/certificate-store';
import { Database, openDatabase } from '../src/storage/database';
import { backends, freshPostgres, tempDir } from './helpers/harness';
import { expectRevokedReadFromIndex } from './helpers/query-plan';

const DATABASES = [...new Set(backends({ pkcs11: false }).map((b) => b.database))];
const DAY = 86_400_000;
const NOW = Date.UTC(2026, 0, 15);

/** The revoked certificates a CRL lists: what they are, and that they are read from their own index. */
describe.each(DATABASES)('CRL entries on %s', (kind) => {
  let dir: string;
  let pg: Awaited<ReturnType<typeof freshPostgres>> | undefined;
  let db: Database;
  let store: CertificateStore;

  beforeAll(async () => {
    dir = tempDir('hsmca-crl-query-');
    pg = kind === 'postgres' ? await freshPostgres() : undefined;
    db = await openDatabase({ url: pg?.url, dataDir: dir });
    store = new CertificateStore(db);
    const row = (i: number, o: { state?: string; notAfter?: number; revokedAt?: number | null; reason?: number | null; invalidity?: number | null }) => ({
      serial: i.toString(16).padStart(8, '0'),
      state: o.state ?? 'issued',
      profile: 'tls-server',
      subject: `CN=c${i}`,
      sans: '{}',
      not_before: NOW - 10 * DAY,
      not_after: o.notAfter ?? NOW + 80 * DAY,
      der: Buffer.from([0x30, 0x00]),
      requester_id: null,
      created_at: NOW - 10 * DAY,
      revoked_at: o.revokedAt ?? null,
      revocation_reason: o.reason ?? null,
      invalidity_date: o.invalidity ?? null,
    });
    await db.knex('certificates').insert([
      row(1, {}), // good
      row(2, { revokedAt: NOW - 5 * DAY, reason: 1, invalidity: NOW - 6 * DAY }),
      row(3, { revokedAt: NOW - 5 * DAY, notAfter: NOW - DAY }), // revoked, expired
      row(4, { state: 'pending' }),
      row(5, { revokedAt: NOW - 1000, reason: 4 }),
      row(6, {}),
      row(7, { revokedAt: NOW - 2 * DAY, reason: null }),
      row(8, { state: 'failed' }),
    ]);
  });
  afterAll(async () => {
    await db?.close();
    await pg?.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const all = async (q: Parameters<CertificateStore['revokedPages']>[0]) => {
    const out: RevokedRow[][] = [];
    for await (const page of store.revokedPages(q)) out.push(page);
    return out;
  };

  it('lists the revoked, issued, unexpired certificates in id order, page by page, and counts the same', async () => {
    const pages = await all({ expiredAfter: NOW, pageSize: 2 });
    expect(pages.map((p) => p.map((r) => r.serial))).toEqual([['00000002', '00000005'], ['00000007']]);
    expect(pages.flat()).toEqual([
      { serial: '00000002', revokedAt: NOW - 5 * DAY, reason: 1, invalidityDate: NOW - 6 * DAY },
      { serial: '00000005', revokedAt: NOW - 1000, reason: 4, invalidityDate: null },
      { serial: '00000007', revokedAt: NOW - 2 * DAY, reason: 0, invalidityDate: null },
    ]);
    expect(await store.countRevoked({ expiredAfter: NOW })).toBe(3);
    // a retention window that still covers the expired one
    expect((await all({ expiredAfter: NOW - 2 * DAY })).flat().map((r) => r.serial)).toEqual(['00000002', '00000003', '00000005', '00000007']);
    // a delta: revocations since a moment
    expect((await all({ expiredAfter: NOW, revokedSince: NOW - 3 * DAY })).flat().map((r) => r.serial)).toEqual(['00000005', '00000007']);
    expect(await store.countRevoked({ expiredAfter: NOW, revokedSince: NOW - 3 * DAY })).toBe(2);
  });

  it('reads the full CRL from the index of revoked certificates, never from the table', async () => {
    await expectRevokedReadFromIndex(db, { expiredAfter: NOW }, CRL_INDEX);
  });
});

/** A shard CRL's entries (migration 006): only its own shard's, read from the shard index; the full CRL still lists every shard's. */
describe.each(DATABASES)('shard CRL entries on %s', (kind) => {
  let dir: string;
  let pg: Awaited<ReturnType<typeof freshPostgres>> | undefined;
  let db: Database;
  let store: CertificateStore;

  beforeAll(async () => {
    dir = tempDir('hsmca-crl-shard-query-');
    pg = kind === 'postgres' ? await freshPostgres() : undefined;
    db = await openDatabase({ url: pg?.url, dataDir: dir });
    store = new CertificateStore(db);
    const row = (i: number, shard: number | null, revokedAt: number | null, state = 'issued') => ({
      serial: i.toString(16).padStart(8, '0'),
      state,
      profile: 'tls-server',
      subject: `CN=c${i}`,
      sans: '{}',
      not_before: NOW - 10 * DAY,
      not_after: NOW + 80 * DAY,
      der: Buffer.from([0x30, 0x00]),
      requester_id: null,
      created_at: NOW - 10 * DAY,
      revoked_at: revokedAt,
      revocation_reason: revokedAt === null ? null : 1,
      invalidity_date: null,
      crl_shard: shard,
    });
    await db.knex('certificates').insert([
      row(1, null, NOW - DAY), // issued before sharding: the full CRL only
      row(2, 0, NOW - DAY),
      row(3, 1, NOW - DAY),
      row(4, 1, null), // good
      row(5, 1, NOW - 1000),
      row(6, 1, NOW - DAY, 'failed'),
      row(7, 2, NOW - DAY),
    ]);
  });
  afterAll(async () => {
    await db?.close();
    await pg?.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const serials = async (q: Parameters<CertificateStore['revokedPages']>[0]) => {
    const out: string[] = [];
    for await (const page of store.revokedPages(q)) out.push(...page.map((r) => r.serial));
    return out;
  };

  it.each([
    [0, ['00000002']],
    [1, ['00000003', '00000005']],
    [2, ['00000007']],
    [3, []],
  ])('shard %i lists only its own revoked certificates', async (shard, expected) => {
    expect(await serials({ expiredAfter: NOW, shard, pageSize: 1 })).toEqual(expected);
    expect(await store.countRevoked({ expiredAfter: NOW, shard })).toBe(expected.length);
    expect(await store.anyRevokedSince(NOW - 2000, shard)).toBe(shard === 1);
  });

  it('the full CRL lists every shard and the unsharded', async () => {
    expect(await serials({ expiredAfter: NOW })).toEqual(['00000001', '00000002', '00000003', '00000005', '00000007']);
  });

  it('reads a shard CRL from the shard index, never from the table', async () => {
    await expectRevokedReadFromIndex(db, { expiredAfter: NOW, shard: 1 }, SHARD_CRL_INDEX);
  });
});
