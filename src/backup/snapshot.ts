import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Knex } from 'knex';
import { CaError } from '../errors';
import type { Database } from '../storage/database';

/**
 * A consistent copy of the database. SQLite: the online backup API
 * (better-sqlite3's backup(), page by page while the service keeps writing).
 * PostgreSQL: every table hsmca owns (certificates, CA certificates, CRLs,
 * the audit log and its checkpoints, tokens, ACME, quorum), read in one
 * REPEATABLE READ transaction, so all of them show the same moment.
 */
export type DatabaseSnapshot =
  | { kind: 'sqlite'; file: string /* base64 of the database file */ }
  | { kind: 'postgres'; migrations: string[]; tables: Record<string, Record<string, unknown>[]> };

export function sqliteFile(config: { databaseUrl?: string; dataDir: string }): string {
  return config.databaseUrl?.startsWith('sqlite:') ? config.databaseUrl.slice('sqlite:'.length) : path.join(config.dataDir, 'hsmca.db');
}

/** Buffers as {"$b": base64} so rows survive JSON. */
function encodeRow(r: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(r)) out[k] = Buffer.isBuffer(v) ? { $b: v.toString('base64') } : v instanceof Date ? v.getTime() : v;
  return out;
}

function decodeRow(r: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(r)) out[k] = v && typeof v === 'object' && '$b' in (v as object) ? Buffer.from(String((v as { $b: string }).$b), 'base64') : v;
  return out;
}

async function pgTables(knex: Knex): Promise<string[]> {
  const rows = await knex('information_schema.tables')
    .where({ table_type: 'BASE TABLE' })
    .andWhereRaw('table_schema = current_schema()')
    .andWhereNot('table_name', 'like', 'knex_%')
    .select('table_name');
  return rows.map((r: { table_name: string }) => r.table_name).sort();
}

/** Tables in an order that satisfies their foreign keys (referenced tables first). */
async function pgInsertOrder(knex: Knex, tables: string[]): Promise<string[]> {
  const fks = await knex.raw(`
    SELECT tc.table_name AS t, ccu.table_name AS ref
    FROM information_schema.table_constraints tc
    JOIN information_schema.constraint_column_usage ccu ON tc.constraint_name = ccu.constraint_name AND tc.table_schema = ccu.table_schema
    WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_schema = current_schema()`);
  const deps = new Map<string, Set<string>>(tables.map((t) => [t, new Set()]));
  for (const r of fks.rows as { t: string; ref: string }[]) if (r.t !== r.ref) deps.get(r.t)?.add(r.ref);
  const out: string[] = [];
  const left = new Set(tables);
  while (left.size) {
    const ready = [...left].filter((t) => [...deps.get(t)!].every((d) => !left.has(d)));
    if (ready.length === 0) throw new CaError('internal', 'backupSchema', 'the database\'s foreign keys form a cycle');
    for (const t of ready) {
      out.push(t);
      left.delete(t);
    }
  }
  return out;
}

export async function takeSnapshot(db: Database, config: { databaseUrl?: string; dataDir: string }): Promise<DatabaseSnapshot> {
  if (db.kind === 'sqlite') {
    const src = sqliteFile(config);
    const tmp = `${src}.backup-${process.pid}-${Date.now()}`;
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const BetterSqlite = require('better-sqlite3') as new (f: string, o: object) => { backup(dest: string): Promise<unknown>; close(): void };
    const conn = new BetterSqlite(src, { readonly: true, fileMustExist: true });
    try {
      await conn.backup(tmp);
      return { kind: 'sqlite', file: fs.readFileSync(tmp).toString('base64') };
    } finally {
      conn.close();
      fs.rmSync(tmp, { force: true });
    }
  }
  return db.knex.transaction(
    async (trx) => {
      const tables: Record<string, Record<string, unknown>[]> = {};
      for (const t of await pgTables(trx)) tables[t] = (await trx(t).select('*')).map(encodeRow);
      const migrations = (await trx('knex_migrations').select('name').orderBy('id')).map((r: { name: string }) => r.name);
      return { kind: 'postgres' as const, migrations, tables };
    },
    { isolationLevel: 'repeatable read', readOnly: true } as Knex.TransactionConfig,
  );
}

/** Fails unless the database holds no hsmca data (restore goes onto an empty database only). */
export async function ensureEmpty(db: Database): Promise<void> {
  const tables = db.kind === 'postgres' ? await pgTables(db.knex) : ['certificates', 'ca_certificates', 'audit_events'];
  for (const t of tables) {
    const row = await db.knex(t).count({ n: '*' }).first();
    if (Number(row?.n ?? 0) > 0) throw new CaError('conflict', 'targetNotEmpty', `the database is not empty (table ${t} has rows); restore onto an empty database`);
  }
}

/**
 * PostgreSQL: the rows inserted in one transaction (all or nothing) into the
 * freshly migrated, empty database, then each id sequence moved past the
 * highest id restored.
 */
export async function restorePostgres(db: Database, snap: Extract<DatabaseSnapshot, { kind: 'postgres' }>): Promise<void> {
  const known = new Set((await db.knex('knex_migrations').select('name')).map((r: { name: string }) => r.name));
  const unknown = snap.migrations.filter((m) => !known.has(m));
  if (unknown.length) throw new CaError('conflict', 'backupTooNew', `the backup comes from a newer hsmca (migrations ${unknown.join(', ')}); restore it with that version`);
  const present = await pgTables(db.knex);
  const missing = Object.keys(snap.tables).filter((t) => !present.includes(t));
  if (missing.length) throw new CaError('conflict', 'backupTooNew', `the backup has tables this hsmca does not know: ${missing.join(', ')}`);
  const order = await pgInsertOrder(db.knex, Object.keys(snap.tables));
  await db.knex.transaction(async (trx) => {
    for (const t of order) {
      const rows = snap.tables[t].map(decodeRow);
      for (let i = 0; i < rows.length; i += 500) await trx(t).insert(rows.slice(i, i + 500));
    }
    const serials = await trx('information_schema.columns')
      .andWhereRaw('table_schema = current_schema()')
      .andWhere('column_default', 'like', 'nextval(%')
      .select('table_name', 'column_name');
    for (const c of serials as { table_name: string; column_name: string }[]) {
      await trx.raw(`SELECT setval(pg_get_serial_sequence(?, ?), COALESCE((SELECT MAX(??) FROM ??), 0) + 1, false)`, [c.table_name, c.column_name, c.column_name, c.table_name]);
    }
  });
}
