import type { Knex } from 'knex';
import { Database, isUniqueViolation, storageError } from './database';

export interface CrlRecord {
  kind: 'full' | 'delta';
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

  constructor(db: Database) {
    this.knex = db.knex;
  }

  /** The next CRL number: one more than any issued, full or delta (monotonic across restarts). */
  async nextNumber(): Promise<bigint> {
    try {
      const r = await this.knex('crls').max<{ n: number | string | null }[]>({ n: 'crl_number' });
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
      const row = await this.knex('crls').where({ kind }).orderBy('crl_number', 'desc').first();
      return row && toRecord(row);
    } catch (e) {
      throw storageError(e);
    }
  }

  /** The newest CRL number of a kind, cheaply, to notice CRLs made by another process. */
  async latestNumber(kind: 'full' | 'delta'): Promise<bigint | undefined> {
    const r = await this.knex('crls').where({ kind }).max<{ n: number | string | null }[]>({ n: 'crl_number' });
    return r[0].n == null ? undefined : BigInt(r[0].n);
  }

  /** Keeps the newest `keep` CRLs of each kind. */
  async prune(keep: number): Promise<void> {
    for (const kind of ['full', 'delta']) {
      const rows = await this.knex('crls').where({ kind }).orderBy('crl_number', 'desc').offset(keep).limit(1).select('crl_number');
      if (rows.length) await this.knex('crls').where({ kind }).andWhere('crl_number', '<=', rows[0].crl_number).delete();
    }
  }
}

function toRecord(row: Record<string, unknown>): CrlRecord {
  return {
    kind: row.kind as 'full' | 'delta',
    crlNumber: BigInt(row.crl_number as number),
    baseNumber: row.base_number == null ? null : BigInt(row.base_number as number),
    thisUpdate: new Date(Number(row.this_update)),
    nextUpdate: new Date(Number(row.next_update)),
    entries: Number(row.entries),
    der: Buffer.from(row.der as Buffer),
  };
}
