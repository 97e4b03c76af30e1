import type { Knex } from 'knex';
import { revokedQuery } from '../../src/storage/certificate-store';
import type { Database } from '../../src/storage/database';

/** The query plan as text; on PostgreSQL with sequential scans off, so a usable index is always chosen on a tiny table. */
export async function explain(db: Database, q: Knex.QueryBuilder): Promise<string> {
  const { sql, bindings } = q.toSQL();
  if (db.kind === 'sqlite') {
    const rows = (await db.knex.raw(`EXPLAIN QUERY PLAN ${sql}`, bindings as Knex.RawBinding[])) as { detail: string }[];
    return rows.map((r) => r.detail).join('\n');
  }
  return db.knex.transaction(async (trx) => {
    await trx.raw('SET LOCAL enable_seqscan = off');
    const r = (await trx.raw(`EXPLAIN ${sql}`, bindings as Knex.RawBinding[])) as { rows: { 'QUERY PLAN': string }[] };
    return r.rows.map((x) => x['QUERY PLAN']).join('\n');
  });
}

/**
 * A CRL's queries (a page of entries and their count) read `index` and never
 * the table: on SQLite as a covering index; on PostgreSQL, usable at all (the
 * query's conditions imply the partial index's).
 */
export async function expectRevokedReadFromIndex(db: Database, q: Parameters<typeof revokedQuery>[1], index: string): Promise<void> {
  const page = revokedQuery(db.knex, q).andWhere('id', '>', 0).orderBy('id', 'asc').limit(10000).select('id', 'serial', 'revoked_at', 'revocation_reason', 'invalidity_date');
  const count = revokedQuery(db.knex, q).count({ n: '*' });
  for (const query of [page, count]) {
    const plan = await explain(db, query);
    if (db.kind === 'sqlite') {
      expect(plan).toMatch(new RegExp(`USING COVERING INDEX ${index}\\b`));
      expect(plan).not.toMatch(/SCAN certificates(?! USING)/);
    } else {
      expect(plan).toContain(index);
    }
  }
}
