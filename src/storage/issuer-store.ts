import type { Knex } from 'knex';
import { Database, isUniqueViolation, storageError } from './database';

export type IssuerStatus = 'pending' | 'active' | 'previous';
export type RootStatus = 'active' | 'previous';

/** An issuing CA (migration 013): its HSM key, its certificate, the root that signed it. */
export interface IssuerRecord {
  id: number;
  keyLabel: string;
  der: Buffer;
  rootId: number;
  status: IssuerStatus;
  createdAt: Date;
}

/** A root CA (migration 013). */
export interface RootRecord {
  id: number;
  keyLabel: string;
  der: Buffer;
  status: RootStatus;
  createdAt: Date;
}

/** A root's key certified by another root: what lets trust move from one root to the next. */
export interface CrossRecord {
  id: number;
  subjectRootId: number;
  issuerRootId: number;
  der: Buffer;
  createdAt: Date;
}

/** An id, or a key label, taken by another process first (two ceremonies at once). */
export class IdTaken extends Error {}

/** The CA's issuers, roots and cross-certificates; ids are given here (max + 1), not by a sequence. */
export class IssuerStore {
  private readonly knex: Knex;

  constructor(db: Database) {
    this.knex = db.knex;
  }

  async issuers(): Promise<IssuerRecord[]> {
    return this.read(async () =>
      (await this.knex('ca_issuers').orderBy('id', 'asc')).map((r: Record<string, unknown>) => ({
        id: Number(r.id),
        keyLabel: String(r.key_label),
        der: Buffer.from(r.der as Buffer),
        rootId: Number(r.root_id),
        status: r.status as IssuerStatus,
        createdAt: new Date(Number(r.created_at)),
      })),
    );
  }

  async roots(): Promise<RootRecord[]> {
    return this.read(async () =>
      (await this.knex('ca_roots').orderBy('id', 'asc')).map((r: Record<string, unknown>) => ({
        id: Number(r.id),
        keyLabel: String(r.key_label),
        der: Buffer.from(r.der as Buffer),
        status: r.status as RootStatus,
        createdAt: new Date(Number(r.created_at)),
      })),
    );
  }

  async crosses(): Promise<CrossRecord[]> {
    return this.read(async () =>
      (await this.knex('ca_cross_certificates').orderBy('id', 'asc')).map((r: Record<string, unknown>) => ({
        id: Number(r.id),
        subjectRootId: Number(r.subject_root_id),
        issuerRootId: Number(r.issuer_root_id),
        der: Buffer.from(r.der as Buffer),
        createdAt: new Date(Number(r.created_at)),
      })),
    );
  }

  /** A cheap fingerprint of the issuers' and roots' state, to notice a ceremony run by another process. */
  async version(): Promise<string> {
    return this.read(async () => {
      const i = await this.knex('ca_issuers').whereNot({ status: 'pending' }).select('id', 'status').orderBy('id');
      const r = await this.knex('ca_roots').select('id', 'status').orderBy('id');
      const c = await this.knex('ca_cross_certificates').count<{ n: number | string }[]>({ n: '*' });
      return JSON.stringify([i.map((x: { id: number; status: string }) => `${x.id}${x.status[0]}`), r.map((x: { id: number; status: string }) => `${x.id}${x.status[0]}`), Number(c[0].n)]);
    });
  }

  async nextIssuerId(): Promise<number> {
    return this.read(async () => Number((await this.knex('ca_issuers').max({ m: 'id' }).first())?.m ?? 0) + 1);
  }

  async nextRootId(): Promise<number> {
    return this.read(async () => Number((await this.knex('ca_roots').max({ m: 'id' }).first())?.m ?? 0) + 1);
  }

  /** IdTaken when the id or the key label is taken. */
  async addIssuer(r: IssuerRecord): Promise<void> {
    await this.write(() =>
      this.knex('ca_issuers').insert({ id: r.id, key_label: r.keyLabel, der: r.der, root_id: r.rootId, status: r.status, created_at: r.createdAt.getTime() }),
    );
  }

  /** IdTaken when the id or the key label is taken. */
  async addRoot(r: RootRecord): Promise<void> {
    await this.write(() => this.knex('ca_roots').insert(rootRow(r)));
  }

  /** Drops a pending issuer whose preparation failed (its key stays in the HSM, unused). */
  async dropPending(id: number): Promise<void> {
    await this.write(() => this.knex('ca_issuers').where({ id, status: 'pending' }).delete());
  }

  /**
   * Makes a pending issuer the active one and the active one previous, in one
   * transaction: every process that reads the table sees either the old or
   * the new active issuer, never none or two.
   */
  async activateIssuer(id: number): Promise<void> {
    await this.write(() =>
      this.knex.transaction(async (trx) => {
        await trx('ca_issuers').where({ status: 'active' }).update({ status: 'previous' });
        const n = await trx('ca_issuers').where({ id, status: 'pending' }).update({ status: 'active' });
        if (n !== 1) throw new IdTaken(`issuer ${id} is not pending`);
      }),
    );
  }

  /** A new active root with its cross-certificates, the active one made previous, in one transaction. */
  async addActiveRoot(r: RootRecord, crosses: Omit<CrossRecord, 'id'>[]): Promise<number[]> {
    return this.write(() =>
      this.knex.transaction(async (trx) => {
        await trx('ca_roots').where({ status: 'active' }).update({ status: 'previous' });
        await trx('ca_roots').insert(rootRow({ ...r, status: 'active' }));
        const first = Number((await trx('ca_cross_certificates').max({ m: 'id' }).first())?.m ?? 0) + 1;
        const ids = crosses.map((_, i) => first + i);
        for (const [i, c] of crosses.entries()) {
          await trx('ca_cross_certificates').insert({
            id: ids[i],
            subject_root_id: c.subjectRootId,
            issuer_root_id: c.issuerRootId,
            der: c.der,
            created_at: c.createdAt.getTime(),
          });
        }
        return ids;
      }),
    );
  }

  private async read<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw storageError(e);
    }
  }

  private async write<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof IdTaken) throw e;
      if (isUniqueViolation(e)) throw new IdTaken((e as Error).message);
      throw storageError(e);
    }
  }
}

function rootRow(r: RootRecord) {
  return { id: r.id, key_label: r.keyLabel, der: r.der, status: r.status, created_at: r.createdAt.getTime() };
}
