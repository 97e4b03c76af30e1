import type { Knex } from 'knex';
import { CaError } from '../errors';
import { Database, isUniqueViolation, storageError } from './database';
import { SqliteWriter, WriterOp, WriterResult } from './sqlite-writer';
import type { Sans } from '../ca/csr';
import { PreparedEvent, appendChainKnex } from '../audit/chain';
import { BlockedKeyRecord, insertBlockedKey } from './blocked-key-store';
import type { PgIssuanceWriter } from './pg-issuance-writer';
import type { PgLookups } from './pg-lookups';

/** A certificate as the API and the status services see it. */
export interface CertificateRecord {
  serial: string;
  profile: string;
  subject: string;
  sans: Sans;
  notBefore: Date;
  notAfter: Date;
  der: Buffer;
  requesterId: string | null;
  createdAt: Date;
  revokedAt: Date | null;
  revocationReason: number | null;
  invalidityDate: Date | null;
  /** the CRL shard its cRLDistributionPoints names; null: the full CRL (migration 006) */
  crlShard: number | null;
  /** the issuing CA that signed it (migration 013) */
  issuerId: number;
}

/** The intent to issue, written before the HSM signs (STYLE.md practice 7). */
export interface Reservation {
  serial: string;
  profile: string;
  subject: string;
  sans: Sans;
  notBefore: Date;
  notAfter: Date;
  requesterId: string | null;
  createdAt: Date;
  /** the CRL shard named in its cRLDistributionPoints; absent or null: the full CRL */
  crlShard?: number | null;
  /** the issuing CA that signs it (migration 013); absent: the first */
  issuerId?: number;
}

export class SerialCollision extends Error {}

interface ReserveWrite {
  kind: 'reserve';
  r: Reservation;
}
interface CompleteWrite {
  kind: 'complete';
  serial: string;
  der: Buffer;
  event?: PreparedEvent;
}
type IssuanceWrite = ReserveWrite | CompleteWrite;

/**
 * Collects operations submitted while a flush is running and hands them to
 * `flush` together; each submitter learns its own outcome.
 */
export class WriteBatch<T> {
  private queue: { op: T; resolve: () => void; reject: (e: Error) => void }[] = [];
  private running = false;

  constructor(
    private readonly flush: (ops: T[]) => Promise<(Error | undefined)[]>,
    private readonly maxBatch = 512,
  ) {}

  submit(op: T): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ op, resolve, reject });
      if (!this.running) {
        this.running = true;
        setImmediate(() => void this.drain());
      }
    });
  }

  private async drain(): Promise<void> {
    while (this.queue.length) {
      const items = this.queue.splice(0, this.maxBatch);
      let results: (Error | undefined)[];
      try {
        results = await this.flush(items.map((i) => i.op));
      } catch (e) {
        results = items.map(() => e as Error);
      }
      items.forEach((item, i) => (results[i] ? item.reject(results[i]!) : item.resolve()));
    }
    this.running = false;
  }
}

export interface SerialStatus {
  /** the issuing CA that signed it (migration 013) */
  issuerId: number;
  notAfter: number;
  revokedAt: number | null;
  reason: number | null;
}

export interface RevokedRow {
  serial: string;
  revokedAt: number;
  reason: number;
  invalidityDate: number | null;
}

export interface ListQuery {
  status?: 'good' | 'revoked';
  requesterId?: string;
  limit: number;
  /** id of the last item of the previous page */
  afterId?: number;
  /** exactly this profile */
  profile?: string;
  /** text found in the subject or the SANs (ASCII case ignored; LIKE wildcards taken literally) */
  contains?: string;
}

/** ids a text search reads per request (about 50 ms on SQLite; docs/performance.md) */
export const SEARCH_WINDOW = 20_000;

/** `text` for a LIKE pattern: its wildcards taken literally (ESCAPE '\\'). */
const likeLiteral = (s: string) => s.replace(/[\\%_]/g, (c) => `\\${c}`);

interface Row {
  id: number;
  serial: string;
  state: string;
  profile: string;
  subject: string;
  sans: string;
  not_before: number;
  not_after: number;
  der: Buffer | null;
  requester_id: string | null;
  created_at: number;
  revoked_at: number | null;
  revocation_reason: number | null;
  invalidity_date: number | null;
  crl_shard: number | null;
  issuer_id: number;
}

function toRecord(r: Row): CertificateRecord {
  return {
    serial: r.serial,
    profile: r.profile,
    subject: r.subject,
    sans: JSON.parse(r.sans),
    notBefore: new Date(Number(r.not_before)),
    notAfter: new Date(Number(r.not_after)),
    der: Buffer.from(r.der!),
    requesterId: r.requester_id,
    createdAt: new Date(Number(r.created_at)),
    revokedAt: r.revoked_at == null ? null : new Date(Number(r.revoked_at)),
    revocationReason: r.revocation_reason,
    invalidityDate: r.invalidity_date == null ? null : new Date(Number(r.invalidity_date)),
    crlShard: r.crl_shard == null ? null : Number(r.crl_shard),
    issuerId: r.issuer_id == null ? 1 : Number(r.issuer_id),
  };
}

/** Which revoked certificates a CRL lists. */
export interface RevokedQuery {
  /** certificates that expired before this (epoch ms) are left out */
  expiredAfter: number;
  /** only revocations at or after this (epoch ms): delta CRLs */
  revokedSince?: number;
  /** only the certificates of this CRL shard (read from migration 006's index) */
  shard?: number;
  /** only the certificates of this issuing CA (read from migration 013's index) */
  issuer?: number;
}

/**
 * The revoked certificates a CRL lists. Its conditions imply those of the
 * partial index of migration 004 (revoked, issued), so both the count and the
 * pages are read from that index rather than from the table.
 */
export function revokedQuery(knex: Knex, q: RevokedQuery): Knex.QueryBuilder {
  let query = knex('certificates').where({ state: 'issued' }).whereNotNull('revoked_at');
  // a shard's conditions imply those of the shard index (migration 006) and lead with its first column
  if (q.shard !== undefined) query = query.whereNotNull('crl_shard').andWhere('crl_shard', q.shard);
  // an issuer's conditions imply those of the issuer index (migration 013) and lead with its first column
  if (q.issuer !== undefined) query = query.whereNotNull('issuer_id').andWhere('issuer_id', q.issuer);
  query = query.andWhere('not_after', '>', q.expiredAfter);
  return q.revokedSince === undefined ? query : query.andWhere('revoked_at', '>=', q.revokedSince);
}

export type RevokeOutcome =
  | { kind: 'revoked'; record: CertificateRecord; /** newly blocked with the revocation */ blockedKey?: BlockedKeyRecord }
  | { kind: 'notFound' } | { kind: 'alreadyRevoked'; record: CertificateRecord };

/**
 * Certificates, behind two doors (STYLE.md practice 10): the write side for
 * issuance and revocation, the read side for lookups, OCSP and CRLs. No SQL
 * lives outside src/storage.
 */
export class CertificateStore {
  private readonly knex: Knex;

  private readonly writer?: SqliteWriter;
  private readonly pgWriter?: PgIssuanceWriter;
  private readonly pgLookups?: PgLookups;
  private readonly pg: boolean;
  private readonly statusStmt?: { get(...p: unknown[]): unknown };
  private readonly getStmt?: { get(...p: unknown[]): unknown };

  constructor(db: Database) {
    this.knex = db.knex;
    this.writer = db.writer;
    this.pgWriter = db.pgWriter;
    this.pgLookups = db.pgLookups;
    this.pg = db.kind === 'postgres';
    if (db.reader) {
      this.statusStmt = db.reader.prepare(`SELECT not_after, revoked_at, revocation_reason, issuer_id FROM certificates WHERE serial = ? AND state = 'issued'`);
      this.getStmt = db.reader.prepare(`SELECT * FROM certificates WHERE serial = ? AND state = 'issued'`);
    }
  }

  // ------------------------------------------------------------ write side

  /** Records the serial before signing; SerialCollision when it exists already. */
  async reserve(r: Reservation): Promise<void> {
    if (!this.pgWriter) return this.batch.submit({ kind: 'reserve', r });
    const row = this.reservationRow(r);
    const out = await this.pgWriter.reserve({
      serial: row.serial,
      profile: row.profile,
      subject: row.subject,
      sans: row.sans,
      notBefore: row.not_before,
      notAfter: row.not_after,
      requesterId: row.requester_id,
      createdAt: row.created_at,
      crlShard: row.crl_shard,
      issuerId: row.issuer_id,
    });
    if (out?.code === 'unique') throw new SerialCollision(r.serial);
    if (out) throw storageError(new Error(out.message));
  }

  /**
   * Stores the signed certificate; only after this commits may it reach a
   * client. `event` (its audit record) is appended to the audit chain in the
   * same transaction: the certificate and its event are stored together or
   * not at all, for the cost of one commit.
   */
  async complete(serial: string, der: Buffer, event?: PreparedEvent): Promise<void> {
    if (this.pgWriter) {
      // PostgreSQL: grouped with concurrent completions, committed synchronously (PgIssuanceWriter)
      const out = await this.pgWriter.complete(serial, der, event);
      if (out?.code === 'missing') throw new CaError('internal', 'internalError', 'the reserved certificate record disappeared');
      if (out) throw storageError(new Error(out.message));
      return;
    }
    await this.batch.submit({ kind: 'complete', serial, der, event });
    // SQLite: committed by SqliteWriter; durable once the log is synced (group fsync).
    if (this.writer) {
      try {
        await this.writer.synced();
      } catch (e) {
        throw storageError(e);
      }
    }
  }

  private reservationRow(r: Reservation) {
    return {
      serial: r.serial,
      state: 'pending',
      profile: r.profile,
      subject: r.subject,
      sans: JSON.stringify(r.sans),
      not_before: r.notBefore.getTime(),
      not_after: r.notAfter.getTime(),
      requester_id: r.requesterId,
      created_at: r.createdAt.getTime(),
      crl_shard: r.crlShard ?? null,
      issuer_id: r.issuerId ?? 1,
    };
  }

  /**
   * Group commit: the writes of concurrent issuances that arrive while a
   * commit is in flight go into the next transaction together, so durability
   * costs one fsync per batch rather than one per certificate (on SQLite,
   * one fsync per round of the log, shared by every batch committed before
   * it: SqliteWriter).
   */
  private readonly batch = new WriteBatch<IssuanceWrite>((ops) => (this.writer ? this.flushToWriter(ops) : this.flushWithKnex(ops)));

  private async flushToWriter(ops: IssuanceWrite[]): Promise<(Error | undefined)[]> {
    let results: WriterResult[];
    try {
      results = await this.writer!.run(
        ops.map((op): WriterOp => {
          if (op.kind === 'complete') return { kind: 'complete', serial: op.serial, der: op.der, event: op.event };
          const r = this.reservationRow(op.r);
          return { kind: 'reserve', row: [r.serial, r.state, r.profile, r.subject, r.sans, r.not_before, r.not_after, r.requester_id, r.created_at, r.crl_shard, r.issuer_id] };
        }),
      );
    } catch (e) {
      return ops.map(() => storageError(e));
    }
    return results.map((r, i) => {
      if (r === null) return undefined;
      const op = ops[i];
      if (r.code === 'unique' && op.kind === 'reserve') return new SerialCollision(op.r.serial);
      if (r.code === 'missing') return new CaError('internal', 'internalError', 'the reserved certificate record disappeared');
      return storageError(new Error(r.message));
    });
  }

  private flushWithKnex = async (ops: IssuanceWrite[]): Promise<(Error | undefined)[]> => {
    const results: (Error | undefined)[] = ops.map(() => undefined);
    const run = async (trx: Knex.Transaction, subset: number[]) => {
      const reserves = subset.filter((i) => ops[i].kind === 'reserve');
      if (reserves.length) {
        await trx('certificates').insert(reserves.map((i) => this.reservationRow((ops[i] as ReserveWrite).r)));
      }
      const events: PreparedEvent[] = [];
      for (const i of subset) {
        const op = ops[i];
        if (op.kind !== 'complete') continue;
        const n = await trx('certificates').where({ serial: op.serial, state: 'pending' }).update({ state: 'issued', der: op.der });
        if (n !== 1) results[i] = new CaError('internal', 'internalError', 'the reserved certificate record disappeared');
        else if (op.event) events.push(op.event);
      }
      await appendChainKnex(trx, events, this.pg);
    };
    const all = ops.map((_, i) => i);
    // Reservations need to be visible, not durable (nothing was answered yet); a
    // batch that stores a certificate commits synchronously.
    const durable = ops.some((op) => op.kind === 'complete');
    try {
      await this.knex.transaction(async (trx) => {
        if (!durable && this.pg) await trx.raw('SET LOCAL synchronous_commit = off');
        await run(trx, all);
      });
      return results;
    } catch (e) {
      if (!isUniqueViolation(e)) return ops.map(() => storageError(e));
    }
    // A serial collided somewhere in the batch: write each on its own to find it.
    for (const i of all) {
      try {
        await this.knex.transaction((trx) => run(trx, [i]));
      } catch (e) {
        const op = ops[i];
        results[i] = isUniqueViolation(e) && op.kind === 'reserve' ? new SerialCollision(op.r.serial) : storageError(e);
      }
    }
    return results;
  };

  /** Marks a reservation whose signing failed, so it is never mistaken for a certificate. */
  async abandon(serial: string): Promise<void> {
    await this.knex('certificates').where({ serial, state: 'pending' }).update({ state: 'failed' }).catch(() => undefined);
  }

  /** `blockKey` names the certificate's key to block in the same transaction (keyCompromise). */
  async revoke(serial: string, at: Date, reason: number, invalidityDate: Date | null, blockKey?: (r: CertificateRecord) => BlockedKeyRecord): Promise<RevokeOutcome> {
    try {
      return await this.knex.transaction(async (trx) => {
        const n = await trx('certificates')
          .where({ serial, state: 'issued' })
          .whereNull('revoked_at')
          .update({ revoked_at: at.getTime(), revocation_reason: reason, invalidity_date: invalidityDate?.getTime() ?? null });
        const row = await trx<Row>('certificates').where({ serial, state: 'issued' }).first();
        if (!row) return { kind: 'notFound' as const };
        if (n !== 1) return { kind: 'alreadyRevoked' as const, record: toRecord(row) };
        const record = toRecord(row);
        const blocked = blockKey ? await insertBlockedKey(trx, blockKey(record)) : undefined;
        return { kind: 'revoked' as const, record, blockedKey: blocked?.created ? blocked.record : undefined };
      });
    } catch (e) {
      throw storageError(e);
    }
  }

  // ------------------------------------------------------------ read side

  async get(serial: string): Promise<CertificateRecord | undefined> {
    try {
      const row = this.getStmt
        ? (this.getStmt.get(serial) as Row | undefined)
        : await this.knex<Row>('certificates').where({ serial, state: 'issued' }).first();
      return row && toRecord(row);
    } catch (e) {
      throw storageError(e);
    }
  }

  /** Newest first; returns the page and the id to continue after. */
  async list(q: ListQuery): Promise<{ items: CertificateRecord[]; lastId?: number; more: boolean }> {
    try {
      let query = this.knex<Row>('certificates').where({ state: 'issued' });
      if (q.requesterId !== undefined) query = query.andWhere({ requester_id: q.requesterId });
      if (q.status === 'revoked') query = query.whereNotNull('revoked_at');
      if (q.status === 'good') query = query.whereNull('revoked_at');
      if (q.afterId !== undefined) query = query.andWhere('id', '<', q.afterId);
      if (q.profile !== undefined) query = query.andWhere({ profile: q.profile });
      // A text search reads one window of ids per request (SEARCH_WINDOW, newest
      // first): a name that matches few certificates would otherwise read the
      // whole table in one request. The page then ends at the window's floor.
      let floor: number | undefined;
      if (q.contains !== undefined) {
        const top = q.afterId ?? Number((await this.knex('certificates').max({ m: 'id' }).first())?.m ?? 0) + 1;
        floor = Math.max(0, top - SEARCH_WINDOW);
        if (q.afterId === undefined) query = query.andWhere('id', '<', top);
        query = query.andWhere('id', '>=', floor);
        const pattern = `%${likeLiteral(q.contains.toLowerCase())}%`;
        // SQLite's LIKE ignores ASCII case; PostgreSQL's needs lower()
        const like = this.pg ? `lower(??) LIKE ? ESCAPE '\\'` : `?? LIKE ? ESCAPE '\\'`;
        query = query.andWhere((w) => w.whereRaw(like, ['subject', pattern]).orWhereRaw(like, ['sans', pattern]));
      }
      const rows: Row[] = await query.orderBy('id', 'desc').limit(q.limit + 1);
      const more = rows.length > q.limit;
      const page = rows.slice(0, q.limit);
      if (!more && floor !== undefined && floor > 1) return { items: page.map(toRecord), lastId: floor, more: true };
      return { items: page.map(toRecord), lastId: page.length ? Number(page[page.length - 1].id) : undefined, more };
    } catch (e) {
      throw storageError(e);
    }
  }

  /** OCSP: the status of one serial, from the unique index; undefined when never issued. */
  async status(serial: string): Promise<SerialStatus | undefined> {
    try {
      const row = (
        this.statusStmt
          ? this.statusStmt.get(serial)
          : this.pgLookups
            ? await this.pgLookups.statuses.get(serial)
            : await this.knex('certificates').where({ serial, state: 'issued' }).first('not_after', 'revoked_at', 'revocation_reason', 'issuer_id')
      ) as { not_after: number; revoked_at: number | null; revocation_reason: number | null; issuer_id: number | null } | undefined;
      if (!row) return undefined;
      return {
        issuerId: row.issuer_id == null ? 1 : Number(row.issuer_id),
        notAfter: Number(row.not_after),
        revokedAt: row.revoked_at == null ? null : Number(row.revoked_at),
        reason: row.revocation_reason ?? null,
      };
    } catch (e) {
      throw storageError(e);
    }
  }

  /**
   * CRL entries, page by page (keyset pagination on id): never the whole list
   * in memory. `expiredAfter` drops certificates that expired before it;
   * `revokedSince` keeps only recent revocations (delta CRLs).
   */
  async *revokedPages(q: RevokedQuery & { pageSize?: number }): AsyncGenerator<RevokedRow[]> {
    let after = 0;
    const size = q.pageSize ?? 10000;
    for (;;) {
      const rows = await revokedQuery(this.knex, q)
        .andWhere('id', '>', after)
        .orderBy('id', 'asc')
        .limit(size)
        .select('id', 'serial', 'revoked_at', 'revocation_reason', 'invalidity_date');
      if (rows.length === 0) return;
      after = Number(rows[rows.length - 1].id);
      yield rows.map((r: Record<string, unknown>) => ({
        serial: String(r.serial),
        revokedAt: Number(r.revoked_at),
        reason: (r.revocation_reason as number | null) ?? 0,
        invalidityDate: r.invalidity_date == null ? null : Number(r.invalidity_date),
      }));
      if (rows.length < size) return;
    }
  }

  /**
   * Whether any certificate (of CRL shard `shard`, when given) was revoked at
   * or after `since` (epoch ms): a CRL made before then may lack it.
   */
  async anyRevokedSince(since: number, shard?: number, issuer?: number): Promise<boolean> {
    let q = this.knex('certificates').where({ state: 'issued' }).whereNotNull('revoked_at').andWhere('revoked_at', '>=', since);
    if (shard !== undefined) q = q.andWhere('crl_shard', shard);
    if (issuer !== undefined) q = q.andWhere('issuer_id', issuer);
    const row = await q.first('id');
    return row !== undefined;
  }

  async countRevoked(q: RevokedQuery): Promise<number> {
    const r = await revokedQuery(this.knex, q).count<{ n: number | string }[]>({ n: '*' });
    return Number(r[0].n);
  }

  async count(): Promise<number> {
    const r = await this.knex('certificates').where({ state: 'issued' }).count<{ n: number | string }[]>({ n: '*' });
    return Number(r[0].n);
  }
}
