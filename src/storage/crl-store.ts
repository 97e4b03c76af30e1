import type { Knex } from 'knex';
import { Database, isUniqueViolation, storageError } from './database';

export interface CrlRecord {
  /** 'shard': one partition of the full CRL (migration 006), numbered in its own sequence */
  kind: 'full' | 'delta' | 'shard';
  /** the shard a 'shard' CRL covers; absent for the full and delta CRLs */
  shard?: number;
  crlNumber: bigint;
  baseNumber: bigint | null;
  thisUpdate: Date;
  nextUpdate: Date;
  entries: number;
  der: Buffer;
}

export class CrlNumberTaken extends Error {}

export class CrlStore {
  private readonly knex: Knex;

  /**
   * `issuerId`: the issuing CA whose full and delta CRLs this store keeps
   * (migration 013: each issuer numbers its CRLs in a sequence of its own).
   * Shard CRLs belong to the first issuer.
   */
  constructor(
    db: Database,
    private readonly issuerId = 1,
  ) {
    this.knex = db.knex;
  }

  /** This issuer's full and delta CRLs. */
  private own(): Knex.QueryBuilder {
    return this.knex('crls').whereNull('shard').andWhere('issuer_id', this.issuerId);
  }

  /**
   * The next CRL number: one more than any issued, full or delta (monotonic
   * across restarts); with `shard`, one more than any of that shard's own
   * sequence (each shard is a scope of its own, RFC 5280 5.2.3).
   */
  async nextNumber(shard?: number): Promise<bigint> {
    try {
      const q = shard === undefined ? this.own() : this.knex('crls').where({ shard });
      const r = await q.max<{ n: number | string | null }[]>({ n: 'crl_number' });
      return BigInt(r[0].n ?? 0) + 1n;
    } catch (e) {
      throw storageError(e);
    }
  }

  /** Saves a CRL; CrlNumberTaken when another process used the number first. */
  async add(c: CrlRecord): Promise<void> {
    try {
      await this.knex('crls').insert({
        kind: c.kind,
        shard: c.shard ?? null,
        issuer_id: this.issuerId,
        crl_number: Number(c.crlNumber),
        base_number: c.baseNumber === null ? null : Number(c.baseNumber),
        this_update: c.thisUpdate.getTime(),
        next_update: c.nextUpdate.getTime(),
        entries: c.entries,
        der: c.der,
      });
    } catch (e) {
      if (isUniqueViolation(e)) throw new CrlNumberTaken(String(c.crlNumber));
      throw storageError(e);
    }
  }

  async latest(kind: 'full' | 'delta'): Promise<CrlRecord | undefined> {
    try {
      const row = await this.own().where({ kind }).orderBy('crl_number', 'desc').first();
      return row && toRecord(row);
    } catch (e) {
      throw storageError(e);
    }
  }

  /** The newest CRL number of a kind, cheaply, to notice CRLs made by another process. */
  async latestNumber(kind: 'full' | 'delta'): Promise<bigint | undefined> {
    const r = await this.own().where({ kind }).max<{ n: number | string | null }[]>({ n: 'crl_number' });
    return r[0].n == null ? undefined : BigInt(r[0].n);
  }

  /** Keeps the newest `keep` CRLs of each kind. */
  async prune(keep: number): Promise<void> {
    for (const kind of ['full', 'delta']) {
      const rows = await this.own().where({ kind }).orderBy('crl_number', 'desc').offset(keep).limit(1).select('crl_number');
      if (rows.length) await this.own().where({ kind }).andWhere('crl_number', '<=', rows[0].crl_number).delete();
    }
  }

  // ------------------------------------------------------------ shard CRLs (migration 006)

  /** The newest CRL of one shard. */
  async latestShard(shard: number): Promise<CrlRecord | undefined> {
    try {
      const row = await this.knex('crls').where({ shard }).orderBy('crl_number', 'desc').first();
      return row && toRecord(row);
    } catch (e) {
      throw storageError(e);
    }
  }

  /** The newest CRL number of every shard that has one, in one query (to notice shard CRLs made by another process). */
  async latestShardNumbers(): Promise<Map<number, bigint>> {
    const rows: { shard: number | string; n: number | string }[] = await this.knex('crls').whereNotNull('shard').groupBy('shard').select('shard').max({ n: 'crl_number' });
    return new Map(rows.map((r) => [Number(r.shard), BigInt(r.n)]));
  }

  /** Keeps the newest `keep` CRLs of one shard. */
  async pruneShard(shard: number, keep: number): Promise<void> {
    const rows = await this.knex('crls').where({ shard }).orderBy('crl_number', 'desc').offset(keep).limit(1).select('crl_number');
    if (rows.length) await this.knex('crls').where({ shard }).andWhere('crl_number', '<=', rows[0].crl_number).delete();
  }
}

function toRecord(row: Record<string, unknown>): CrlRecord {
  return {
    kind: row.kind as CrlRecord['kind'],
    ...(row.shard == null ? {} : { shard: Number(row.shard) }),
    crlNumber: BigInt(row.crl_number as number),
    baseNumber: row.base_number == null ? null : BigInt(row.base_number as number),
    thisUpdate: new Date(Number(row.this_update)),
    nextUpdate: new Date(Number(row.next_update)),
    entries: Number(row.entries),
    der: Buffer.from(row.der as Buffer),
  };
}
