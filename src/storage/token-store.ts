import type { Knex } from 'knex';
import { Database, storageError } from './database';
import type { PgLookups } from './pg-lookups';

export type Role = 'admin' | 'requester';

export interface TokenRecord {
  id: string;
  name: string;
  role: Role;
  hash: string;
  scope: unknown;
  createdAt: Date;
  expiresAt: Date | null;
  revokedAt: Date | null;
}

export class TokenStore {
  private readonly knex: Knex;

  private readonly byHash?: { get(...p: unknown[]): unknown };
  private readonly pgLookups?: PgLookups;

  constructor(db: Database) {
    this.knex = db.knex;
    this.byHash = db.reader?.prepare('SELECT * FROM tokens WHERE hash = ?');
    this.pgLookups = db.pgLookups;
  }

  async add(t: TokenRecord): Promise<void> {
    try {
      await this.knex('tokens').insert({
        id: t.id,
        name: t.name,
        role: t.role,
        hash: t.hash,
        scope: t.scope === undefined || t.scope === null ? null : JSON.stringify(t.scope),
        created_at: t.createdAt.getTime(),
        expires_at: t.expiresAt?.getTime() ?? null,
        revoked_at: null,
      });
    } catch (e) {
      throw storageError(e);
    }
  }

  async findByHash(hash: string): Promise<TokenRecord | undefined> {
    try {
      const row = this.byHash
        ? (this.byHash.get(hash) as Record<string, unknown> | undefined)
        : this.pgLookups
          ? await this.pgLookups.tokens.get(hash)
          : await this.knex('tokens').where({ hash }).first();
      return row && toRecord(row);
    } catch (e) {
      throw storageError(e);
    }
  }

  async get(id: string): Promise<TokenRecord | undefined> {
    try {
      const row = await this.knex('tokens').where({ id }).first();
      return row && toRecord(row);
    } catch (e) {
      throw storageError(e);
    }
  }

  async count(role?: Role): Promise<number> {
    const q = this.knex('tokens');
    if (role) q.where({ role });
    const r = await q.count<{ n: number | string }[]>({ n: '*' });
    return Number(r[0].n);
  }

  async list(): Promise<TokenRecord[]> {
    try {
      const rows = await this.knex('tokens').orderBy('created_at', 'asc');
      return rows.map(toRecord);
    } catch (e) {
      throw storageError(e);
    }
  }

  async revoke(id: string, at: Date): Promise<boolean> {
    try {
      const n = await this.knex('tokens').where({ id }).whereNull('revoked_at').update({ revoked_at: at.getTime() });
      return n === 1;
    } catch (e) {
      throw storageError(e);
    }
  }
}

function toRecord(row: Record<string, unknown>): TokenRecord {
  return {
    id: String(row.id),
    name: String(row.name),
    role: row.role as Role,
    hash: String(row.hash),
    scope: row.scope ? JSON.parse(String(row.scope)) : null,
    createdAt: new Date(Number(row.created_at)),
    expiresAt: row.expires_at == null ? null : new Date(Number(row.expires_at)),
    revokedAt: row.revoked_at == null ? null : new Date(Number(row.revoked_at)),
  };
}
