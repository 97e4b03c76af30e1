import { createHash } from 'node:crypto';
import { Pool } from 'pg';

/**
 * The name a statement is prepared under on each connection (node-postgres
 * prepares a named statement once per connection and then only binds and
 * executes it): derived from the text, so a changed statement gets a new name.
 * Used by the grouped lookups here and the issuance writes
 * (pg-issuance-writer.ts): PostgreSQL parses, analyses and plans each once per
 * connection instead of once per group; in the benchmark (issuance, c=8) that
 * took a quarter off the database server's CPU per certificate. Statements
 * name their columns: a prepared `SELECT *` fails ("cached plan must not
 * change result type") once a migration adds a column.
 */
export function preparedName(sql: string): string {
  return `hsmca_${createHash('sha256').update(sql).digest('hex').slice(0, 20)}`;
}

/** Most keys one grouped lookup asks for. */
const MAX_KEYS = 1024;

/**
 * Looks keys up in groups: keys asked for while a query is on its way form
 * the next query (`WHERE key = ANY($1)`), so N concurrent lookups cost one
 * round trip and one index scan per group instead of N. One query in flight
 * per kind of lookup; a failed query fails the lookups of its group only.
 */
class GroupedLookup<Row> {
  private waiting = new Map<string, { resolve(r: Row | undefined): void; reject(e: unknown): void }[]>();
  private running = false;
  groups = 0;
  private readonly name: string;

  constructor(
    private readonly pool: Pool,
    private readonly sql: string,
    private readonly keyOf: (row: Row) => string,
  ) {
    this.name = preparedName(sql);
  }

  get(key: string): Promise<Row | undefined> {
    return new Promise((resolve, reject) => {
      const w = this.waiting.get(key);
      if (w) w.push({ resolve, reject });
      else this.waiting.set(key, [{ resolve, reject }]);
      if (!this.running) {
        this.running = true;
        setImmediate(() => void this.drain());
      }
    });
  }

  private async drain(): Promise<void> {
    while (this.waiting.size) {
      const group = new Map<string, { resolve(r: Row | undefined): void; reject(e: unknown): void }[]>();
      for (const [k, v] of this.waiting) {
        if (group.size >= MAX_KEYS) break;
        group.set(k, v);
      }
      for (const k of group.keys()) this.waiting.delete(k);
      this.groups++;
      try {
        const res = await this.pool.query({ name: this.name, text: this.sql, values: [[...group.keys()]] });
        const found = new Map<string, Row>();
        for (const r of res.rows as Row[]) found.set(this.keyOf(r), r);
        for (const [k, ws] of group) for (const w of ws) w.resolve(found.get(k));
      } catch (e) {
        for (const ws of group.values()) for (const w of ws) w.reject(e);
      }
    }
    this.running = false;
  }
}

/**
 * The lookups every request makes on PostgreSQL, grouped across concurrent
 * requests: the bearer token's row (by its hash), the blocked-key check (by
 * the SPKI's hash), and the OCSP status (by serial), each a prepared
 * statement (preparedName). Rows come back with the columns the stores turn
 * into records.
 */
export class PgLookups {
  private readonly pool: Pool;
  readonly tokens: GroupedLookup<Record<string, unknown>>;
  readonly blockedKeys: GroupedLookup<Record<string, unknown>>;
  readonly statuses: GroupedLookup<{ serial: string; not_after: number | string; revoked_at: number | string | null; revocation_reason: number | null; issuer_id: number | null }>;

  constructor(url: string) {
    this.pool = new Pool({ connectionString: url, max: 3 });
    this.pool.on('error', () => undefined);
    this.tokens = new GroupedLookup(this.pool, 'SELECT id, name, role, hash, scope, created_at, expires_at, revoked_at FROM tokens WHERE hash = ANY($1::text[])', (r) => String(r.hash));
    this.blockedKeys = new GroupedLookup(this.pool, 'SELECT spki_sha256, added_at, source, serial, added_by, comment FROM blocked_keys WHERE spki_sha256 = ANY($1::text[])', (r) => String(r.spki_sha256));
    this.statuses = new GroupedLookup(
      this.pool,
      "SELECT serial, not_after, revoked_at, revocation_reason, issuer_id FROM certificates WHERE serial = ANY($1::text[]) AND state = 'issued'",
      (r) => r.serial,
    );
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
