import type { Knex } from 'knex';
import { Database, storageError } from './database';
import type { PgLookups } from './pg-lookups';

/** One blocked public key (migration 005). */
export interface BlockedKeyRecord {
  /** SHA-256 of the canonical SubjectPublicKeyInfo, lowercase hex */
  spkiSha256: string;
  addedAt: Date;
  source: 'keyCompromise' | 'admin';
  /** the revoked certificate, for keyCompromise */
  serial: string | null;
  addedBy: string | null;
  comment: string | null;
}

interface Row {
  id: number;
  spki_sha256: string;
  added_at: number;
  source: string;
  serial: string | null;
  added_by: string | null;
  comment: string | null;
}

function toRecord(r: Row): BlockedKeyRecord {
  return {
    spkiSha256: r.spki_sha256,
    addedAt: new Date(Number(r.added_at)),
    source: r.source === 'keyCompromise' ? 'keyCompromise' : 'admin',
    serial: r.serial,
    addedBy: r.added_by,
    comment: r.comment,
  };
}

function toRow(b: BlockedKeyRecord) {
  return { spki_sha256: b.spkiSha256, added_at: b.addedAt.getTime(), source: b.source, serial: b.serial, added_by: b.addedBy, comment: b.comment };
}

/**
 * Adds a key inside a transaction of the caller (a revocation for
 * keyCompromise commits its key with it). A key already there stays as it
 * was first added: returns that record and created false.
 */
export async function insertBlockedKey(trx: Knex | Knex.Transaction, b: BlockedKeyRecord): Promise<{ record: BlockedKeyRecord; created: boolean }> {
  const existing = await trx<Row>('blocked_keys').where({ spki_sha256: b.spkiSha256 }).first();
  if (existing) return { record: toRecord(existing), created: false };
  // ON CONFLICT DO NOTHING: a concurrent add of the same key neither fails nor aborts the caller's transaction
  await trx('blocked_keys').insert(toRow(b)).onConflict('spki_sha256').ignore();
  const row = await trx<Row>('blocked_keys').where({ spki_sha256: b.spkiSha256 }).first();
  if (!row) throw new Error('the blocked key was not stored');
  const record = toRecord(row);
  const created = record.addedAt.getTime() === b.addedAt.getTime() && record.source === b.source && record.serial === b.serial && record.addedBy === b.addedBy;
  return { record, created };
}

/**
 * The blocked-keys table. `isBlocked` is on the issuance path: one lookup on
 * the unique index, through SQLite's synchronous reader where there is one.
 */
export class BlockedKeyStore {
  private readonly knex: Knex;
  private readonly lookup?: { get(...p: unknown[]): unknown };
  private readonly pgLookups?: PgLookups;

  constructor(db: Database) {
    this.knex = db.knex;
    this.lookup = db.reader?.prepare('SELECT * FROM blocked_keys WHERE spki_sha256 = ?');
    this.pgLookups = db.pgLookups;
  }

  async get(spkiSha256: string): Promise<BlockedKeyRecord | undefined> {
    try {
      const row = this.lookup
        ? (this.lookup.get(spkiSha256) as Row | undefined)
        : this.pgLookups
          ? ((await this.pgLookups.blockedKeys.get(spkiSha256)) as Row | undefined)
          : await this.knex<Row>('blocked_keys').where({ spki_sha256: spkiSha256 }).first();
      return row && toRecord(row);
    } catch (e) {
      throw storageError(e);
    }
  }

  async add(b: BlockedKeyRecord): Promise<{ record: BlockedKeyRecord; created: boolean }> {
    try {
      return await insertBlockedKey(this.knex, b);
    } catch (e) {
      throw storageError(e);
    }
  }

  /** Newest first; the id to continue after, as the certificate listing does. */
  async list(q: { limit: number; afterId?: number }): Promise<{ items: BlockedKeyRecord[]; lastId?: number; more: boolean }> {
    try {
      let query = this.knex<Row>('blocked_keys');
      if (q.afterId !== undefined) query = query.where('id', '<', q.afterId);
      const rows: Row[] = await query.orderBy('id', 'desc').limit(q.limit + 1);
      const more = rows.length > q.limit;
      const page = rows.slice(0, q.limit);
      return { items: page.map(toRecord), lastId: page.length ? Number(page[page.length - 1].id) : undefined, more };
    } catch (e) {
      throw storageError(e);
    }
  }
}
