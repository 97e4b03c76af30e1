import { Pool, PoolClient, escapeLiteral } from 'pg';
import { PG_AUDIT_LOCK, PreparedEvent, chainRows } from '../audit/chain';
import { preparedName } from './pg-lookups';

/** A reservation row, as the certificates table stores it (state 'pending'). */
export interface PgReservationRow {
  serial: string;
  profile: string;
  subject: string;
  /** JSON text */
  sans: string;
  notBefore: number;
  notAfter: number;
  requesterId: string | null;
  createdAt: number;
  crlShard: number | null;
  /** the issuing CA that signs it (src/ca/issuers.ts) */
  issuerId: number;
}

/** The outcome of one write: null when stored. */
export type PgWriteResult = null | { code: 'unique' | 'missing' | 'error'; message: string };

interface Completion {
  serial: string;
  der: Buffer;
  event?: PreparedEvent;
}

/** Most writes one group carries (one statement's arrays). */
const MAX_GROUP = 512;

const INSERT_RESERVATIONS = `INSERT INTO certificates (serial, state, profile, subject, sans, not_before, not_after, requester_id, created_at, crl_shard, issuer_id)
SELECT v.serial, 'pending', v.profile, v.subject, v.sans, v.not_before, v.not_after, v.requester_id, v.created_at, v.crl_shard, v.issuer_id
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::text[], $8::bigint[], $9::int[], $10::int[])
  AS v(serial, profile, subject, sans, not_before, not_after, requester_id, created_at, crl_shard, issuer_id)
ON CONFLICT (serial) DO NOTHING
RETURNING serial`;

// One statement: store the certificates, and read the chain's head. Its
// snapshot is taken after the advisory lock of the statement before, so the
// head read here is still the head at COMMIT.
const COMPLETE_AND_HEAD = `WITH u AS (
  UPDATE certificates c SET state = 'issued', der = v.der
  FROM unnest($1::text[], $2::bytea[]) AS v(serial, der)
  WHERE c.serial = v.serial AND c.state = 'pending'
  RETURNING c.serial)
SELECT (SELECT coalesce(array_agg(serial), '{}') FROM u) AS done, h.seq, h.hash
FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1) h ON true`;

const INSERT_EVENTS = `INSERT INTO audit_events (seq, at, type, actor, subject, details, prev_hash, hash)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])`;

// prepared once per connection (pg-lookups.ts, preparedName): parsed and planned once, not per group
const RESERVE_NAME = preparedName(INSERT_RESERVATIONS);
const COMPLETE_NAME = preparedName(COMPLETE_AND_HEAD);
const EVENTS_NAME = preparedName(INSERT_EVENTS);

// Reservations need to be visible, not durable (nothing was answered yet):
// the connections commit asynchronously unless a transaction asks otherwise.
// A completion's synchronous COMMIT flushes the log up to it, reservations
// before it included.
const BEGIN_DURABLE = `BEGIN; SET LOCAL synchronous_commit TO on; SELECT pg_advisory_xact_lock((${PG_AUDIT_LOCK})::bigint)`;

/**
 * Issuance writes on PostgreSQL, grouped across concurrent requests (group
 * commit), on connections of their own:
 *
 * - reservations that arrive while a group is being written form the next
 *   group: one multi-row INSERT (ON CONFLICT DO NOTHING RETURNING serial: a
 *   serial that is not returned collided), one round trip, committed
 *   asynchronously;
 * - completions (the signed certificate and its audit event) likewise: one
 *   transaction per group in a fixed four round trips (BEGIN with the audit
 *   chain's advisory lock; the certificates' UPDATE with the head of the
 *   chain; the events' multi-row INSERT; a synchronous COMMIT), whatever the
 *   group's size; and while this writer knows the chain's head (nobody else
 *   appended since its last commit), the same transaction in one round trip
 *   (completeInOneTrip). Each certificate is acknowledged only after its
 *   group committed.
 *
 * A group that fails as a whole (a row the database refuses) is rolled back
 * and written again one write per transaction, so the error fails only the
 * writes it belongs to; a certificate and its event are stored together or
 * not at all. A lost connection fails its group's writes (storage errors).
 */
export class PgIssuanceWriter {
  private readonly pool: Pool;
  private readonly reservations = new GroupQueue<PgReservationRow, PgWriteResult>((rows) => this.writeReservations(rows));
  private readonly completions = new GroupQueue<Completion, PgWriteResult>((items) => this.writeCompletions(items));
  /** groups written (for tests and the benchmark); fastGroups: written in one round trip */
  readonly stats = { reservationGroups: 0, completionGroups: 0, fastGroups: 0, roundTrips: 0 };
  /** the audit chain's head after this writer's last commit; unknown at first and after a failure */
  private head?: { seq: number; hash: string } | null;

  constructor(url: string) {
    this.pool = new Pool({ connectionString: url, max: 2, options: '-c synchronous_commit=off' });
    // an idle connection that drops is replaced on next use; the error is not thrown at the process
    this.pool.on('error', () => undefined);
  }

  /** Resolves null once the row is visible; { code: 'unique' } when the serial exists already. */
  reserve(row: PgReservationRow): Promise<PgWriteResult> {
    return this.reservations.submit(row);
  }

  /** Resolves null once the certificate and its event are committed durably; { code: 'missing' } without its reservation. */
  complete(serial: string, der: Buffer, event?: PreparedEvent): Promise<PgWriteResult> {
    return this.completions.submit({ serial, der, event });
  }

  async close(): Promise<void> {
    await Promise.all([this.reservations.idle(), this.completions.idle()]);
    await this.pool.end();
  }

  private async withClient<R>(fn: (c: PoolClient) => Promise<R>): Promise<R> {
    const c = await this.pool.connect();
    let broken: Error | undefined;
    // A connection that drops while checked out (a terminated backend, a
    // server restart) emits 'error' besides failing its query; the pool
    // listens only to idle connections, and an 'error' nobody listens to
    // would end the process.
    const onError = (e: Error) => {
      broken ??= e;
    };
    c.on('error', onError);
    try {
      return await fn(c);
    } catch (e) {
      // a connection whose transaction state is unknown is not reused
      broken = e as Error;
      throw e;
    } finally {
      c.removeListener('error', onError);
      c.release(broken);
    }
  }

  private async writeReservations(rows: PgReservationRow[]): Promise<PgWriteResult[]> {
    this.stats.reservationGroups++;
    try {
      const stored = await this.withClient((c) => this.insertReservations(c, rows));
      // a serial twice in one group is stored once: the first asks wins, as it would in turn
      return rows.map((r) => (stored.delete(r.serial) ? null : { code: 'unique' as const, message: `serial ${r.serial} exists` }));
    } catch (e) {
      if (rows.length === 1 || !refusedRow(e)) return rows.map(() => errorOf(e));
    }
    // a row the database refused: each on its own, so that only its own request fails
    return Promise.all(rows.map((r) => this.writeReservations([r]).then((x) => x[0])));
  }

  private async insertReservations(c: PoolClient, rows: PgReservationRow[]): Promise<Set<string>> {
    this.stats.roundTrips++;
    const values = [
      rows.map((r) => r.serial),
      rows.map((r) => r.profile),
      rows.map((r) => r.subject),
      rows.map((r) => r.sans),
      rows.map((r) => r.notBefore),
      rows.map((r) => r.notAfter),
      rows.map((r) => r.requesterId),
      rows.map((r) => r.createdAt),
      rows.map((r) => r.crlShard),
      rows.map((r) => r.issuerId),
    ];
    const res = await c.query<{ serial: string }>({ name: RESERVE_NAME, text: INSERT_RESERVATIONS, values });
    return new Set(res.rows.map((r) => r.serial));
  }

  private async writeCompletions(items: Completion[]): Promise<PgWriteResult[]> {
    this.stats.completionGroups++;
    if (this.head !== undefined) {
      try {
        if (await this.withClient((c) => this.completeInOneTrip(c, items))) return items.map(() => null);
      } catch {
        // the head moved (another writer appended), a reservation is missing, or a row was refused: the exact path below finds out
      }
    }
    this.head = undefined;
    try {
      return await this.withClient((c) => this.completeGroup(c, items));
    } catch (e) {
      if (items.length === 1 || !refusedRow(e)) return items.map(() => errorOf(e));
    }
    const out: PgWriteResult[] = [];
    for (const it of items) out.push((await this.writeCompletions([it]))[0]);
    return out;
  }

  /**
   * The common case in one round trip: the whole transaction as one simple
   * query (values written as escaped literals), the events chained from the
   * head this writer committed last. Two guards abort it (and the caller
   * takes the exact path): a certificate whose reservation is not pending,
   * and a head that is no longer the chain's head (another process or the
   * audit log appended meanwhile; the UNIQUE indexes on seq and prev_hash
   * would refuse the rows too). Resolves false when it cannot be written so.
   */
  private async completeInOneTrip(c: PoolClient, items: Completion[]): Promise<boolean> {
    const head = this.head ?? undefined;
    const events = items.flatMap((i) => (i.event ? [i.event] : []));
    const { rows, out } = chainRows(head, events);
    for (const e of rows) if (!Number.isSafeInteger(e.at)) return false;
    const lit = (v: string | null) => (v === null ? 'NULL' : escapeLiteral(v));
    const values = items.map((i) => `(${lit(i.serial)}, decode('${i.der.toString('hex')}', 'hex'))`).join(', ');
    const headCheck = head
      ? `(SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1) = ${lit(head.hash)}`
      : 'NOT EXISTS (SELECT 1 FROM audit_events)';
    const sql = [
      BEGIN_DURABLE,
      // division by zero aborts the transaction when a guard fails (the divisor is not a constant, so never folded at planning)
      `WITH u AS (UPDATE certificates c SET state = 'issued', der = v.der FROM (VALUES ${values}) AS v(serial, der) WHERE c.serial = v.serial AND c.state = 'pending' RETURNING 1) SELECT 1 / (CASE WHEN count(*) = ${items.length} THEN 1 ELSE 0 END) FROM u`,
      ...(rows.length
        ? [
            `SELECT 1 / (CASE WHEN ${headCheck} THEN 1 ELSE 0 END)`,
            `INSERT INTO audit_events (seq, at, type, actor, subject, details, prev_hash, hash) VALUES ${rows
              .map((e) => `(${e.seq}, ${e.at}, ${lit(e.type)}, ${lit(e.actor)}, ${lit(e.subject)}, ${lit(e.details)}, ${lit(e.prev_hash)}, ${lit(e.hash)})`)
              .join(', ')}`,
          ]
        : []),
      'COMMIT',
    ].join(';\n');
    this.stats.roundTrips++;
    try {
      await c.query(sql);
    } catch (e) {
      // a guard that failed (another process appended: common with HSMCA_WORKERS=2) leaves a connection that
      // rolled back cleanly: it goes back to the pool instead of being replaced; any other state is not reused
      const clean = await c.query('ROLLBACK').then(
        () => true,
        () => false,
      );
      if (clean && (e as { code?: string })?.code === '22012') return false;
      throw e;
    }
    this.stats.fastGroups++;
    if (out.length) this.head = out[out.length - 1];
    return true;
  }

  private async completeGroup(c: PoolClient, items: Completion[]): Promise<PgWriteResult[]> {
    let began = false;
    try {
      this.stats.roundTrips += 4;
      await c.query(BEGIN_DURABLE);
      began = true;
      const r = await c.query<{ done: string[]; seq: number | string | null; hash: string | null }>({ name: COMPLETE_NAME, text: COMPLETE_AND_HEAD, values: [items.map((i) => i.serial), items.map((i) => i.der)] });
      const done = new Set(r.rows[0].done);
      const head = r.rows[0].seq == null ? undefined : { seq: Number(r.rows[0].seq), hash: r.rows[0].hash! };
      const events = items.flatMap((i) => (i.event && done.has(i.serial) ? [i.event] : []));
      let last = head ?? null;
      if (events.length) {
        const { rows, out } = chainRows(head, events);
        last = out[out.length - 1];
        const values = [
          rows.map((e) => e.seq),
          rows.map((e) => e.at),
          rows.map((e) => e.type),
          rows.map((e) => e.actor),
          rows.map((e) => e.subject),
          rows.map((e) => e.details),
          rows.map((e) => e.prev_hash),
          rows.map((e) => e.hash),
        ];
        await c.query({ name: EVENTS_NAME, text: INSERT_EVENTS, values });
      } else this.stats.roundTrips--;
      await c.query('COMMIT');
      this.head = last;
      return items.map((i) => (done.has(i.serial) ? null : { code: 'missing' as const, message: 'the reserved certificate record disappeared' }));
    } catch (e) {
      if (began) await c.query('ROLLBACK').catch(() => undefined);
      throw e;
    }
  }
}

/** A row's own value was refused (bad encoding, a constraint): worth retrying the others without it. */
function refusedRow(e: unknown): boolean {
  const code = (e as { code?: string })?.code ?? '';
  // 22: data exception; 23: integrity constraint violation
  return code.startsWith('22') || code.startsWith('23');
}

function errorOf(e: unknown): PgWriteResult {
  const code = (e as { code?: string })?.code;
  return { code: code === '23505' ? 'unique' : 'error', message: String((e as Error)?.message ?? e) };
}

/**
 * Items submitted while a group is being written form the next group; each
 * submitter gets its own item's result. One group in flight at a time.
 */
export class GroupQueue<T, R> {
  private queue: { item: T; resolve(r: R): void; reject(e: unknown): void }[] = [];
  private running = false;
  private idlers: (() => void)[] = [];

  constructor(
    private readonly write: (items: T[]) => Promise<R[]>,
    private readonly max = MAX_GROUP,
  ) {}

  submit(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      if (!this.running) {
        this.running = true;
        // what arrives in this turn of the event loop joins the first group
        setImmediate(() => void this.drain());
      }
    });
  }

  idle(): Promise<void> {
    return this.running ? new Promise((r) => this.idlers.push(r)) : Promise.resolve();
  }

  private async drain(): Promise<void> {
    while (this.queue.length) {
      const group = this.queue.splice(0, this.max);
      try {
        const results = await this.write(group.map((g) => g.item));
        group.forEach((g, i) => g.resolve(results[i]));
      } catch (e) {
        for (const g of group) g.reject(e);
      }
    }
    this.running = false;
    for (const i of this.idlers.splice(0)) i();
  }
}
