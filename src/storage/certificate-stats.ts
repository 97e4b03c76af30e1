import type { Knex } from 'knex';
import { Database, storageError } from './database';

const HOUR_MS = 3_600_000;

export interface StatusCounts {
  /** every issued certificate */
  total: number;
  revoked: number;
  /** issued and not revoked (expired ones included) */
  good: number;
  /** when these were counted (the counts are cached, see CertificateStats) */
  countedAt: Date;
}

export interface HourBucket {
  /** start of the hour, epoch ms */
  hour: number;
  issued: number;
  revoked: number;
}

/**
 * Read-only figures for the console's overview: counts by status and
 * issuances and revocations per hour. Both are cached in the process for
 * `cacheMs` (default 60 s), so a page view never counts the table: at most
 * once a minute per process, whatever the number of viewers, and from indexes
 * only (migration 010 for issued certificates, 004 and 001 for revoked ones;
 * docs/performance.md has the figures at a million certificates).
 */
export class CertificateStats {
  private readonly knex: Knex;
  private counts?: { at: number; value: Promise<StatusCounts> };
  private hourly = new Map<string, { at: number; value: Promise<HourBucket[]> }>();

  constructor(
    db: Database,
    private readonly now: () => Date,
    private readonly cacheMs = 60_000,
  ) {
    this.knex = db.knex;
  }

  /**
   * Counts by status. Once counted, a page view never waits for a count: past
   * `cacheMs` the previous counts are answered while new ones are made.
   */
  statusCounts(): Promise<StatusCounts> {
    const t = this.now().getTime();
    if (!this.counts) {
      const value = this.countNow();
      this.counts = { at: t, value };
      value.catch(() => (this.counts = undefined));
    } else if (t - this.counts.at >= this.cacheMs && !this.recounting) {
      const previous = this.counts.value;
      this.recounting = true;
      const value = this.countNow();
      this.counts = { at: this.counts.at, value: previous };
      value.then(
        () => (this.counts = { at: t, value }),
        () => undefined,
      ).finally(() => (this.recounting = false));
      return previous;
    }
    return this.counts.value;
  }
  private recounting = false;

  private async countNow(): Promise<StatusCounts> {
    try {
      const [total, revoked] = await Promise.all([
        // read from the index of migration 010 (it holds state), not from the table's rows
        this.knex('certificates').where({ state: 'issued' }).andWhere('created_at', '>=', 0).count<{ n: number | string }[]>({ n: '*' }),
        // the partial index of migration 004 holds exactly these rows
        this.knex('certificates').where({ state: 'issued' }).whereNotNull('revoked_at').count<{ n: number | string }[]>({ n: '*' }),
      ]);
      const t = Number(total[0].n);
      const r = Number(revoked[0].n);
      return { total: t, revoked: r, good: t - r, countedAt: this.now() };
    } catch (e) {
      throw storageError(e);
    }
  }

  /**
   * Issuances and revocations per hour over the last `hours` hours (the
   * current hour included), oldest first, one bucket per hour, zeros
   * included. `requesterId` keeps only what that token was issued.
   */
  perHour(hours: number, requesterId?: string): Promise<HourBucket[]> {
    const t = this.now().getTime();
    const key = `${hours}:${requesterId ?? ''}`;
    const hit = this.hourly.get(key);
    if (hit && t - hit.at < this.cacheMs) return hit.value;
    if (this.hourly.size > 1000) this.hourly.clear();
    const value = this.perHourNow(t, hours, requesterId);
    this.hourly.set(key, { at: t, value });
    value.catch(() => this.hourly.delete(key));
    return value;
  }

  private async perHourNow(now: number, hours: number, requesterId?: string): Promise<HourBucket[]> {
    const last = Math.floor(now / HOUR_MS);
    const first = last - hours + 1;
    const since = first * HOUR_MS;
    const group = (column: 'created_at' | 'revoked_at') => {
      // integer division on both databases (bigint / bigint)
      let q = this.knex('certificates')
        .where({ state: 'issued' })
        .andWhere(column, '>=', since)
        .select(this.knex.raw(`${column} / ${HOUR_MS} AS h`))
        .count<{ h: number | string; n: number | string }[]>({ n: '*' })
        .groupByRaw(`${column} / ${HOUR_MS}`);
      if (requesterId !== undefined) q = q.andWhere({ requester_id: requesterId });
      return q;
    };
    // Issuances: one count per hour over a range of the index of migration 010
    // (created_at, state, requester_id): read from the index alone, with no
    // sort, whatever the number of certificates in those days.
    const hourStarts = Array.from({ length: hours }, (_, i) => (first + i) * HOUR_MS);
    const perHourIssued = () =>
      this.knex.raw<unknown>(
        `SELECT v.column1 AS h, (SELECT count(*) FROM certificates c WHERE c.created_at >= v.column1 AND c.created_at < v.column1 + ${HOUR_MS} AND c.state = 'issued'${requesterId !== undefined ? ' AND c.requester_id = ?' : ''}) AS n
         FROM (VALUES ${hourStarts.map(() => '(CAST(? AS BIGINT))').join(', ')}) AS v`,
        [...(requesterId !== undefined ? [requesterId] : []), ...hourStarts],
      );
    try {
      const [issuedRaw, revoked] = await Promise.all([perHourIssued(), group('revoked_at')]);
      const issued = ((issuedRaw as { rows?: unknown[] }).rows ?? issuedRaw) as { h: number | string; n: number | string }[];
      for (const r of issued) r.h = Number(r.h) / HOUR_MS;
      const buckets: HourBucket[] = [];
      for (let h = first; h <= last; h++) buckets.push({ hour: h * HOUR_MS, issued: 0, revoked: 0 });
      for (const r of issued) {
        const i = Math.floor(Number(r.h)) - first;
        if (i >= 0 && i < buckets.length) buckets[i].issued += Number(r.n);
      }
      for (const r of revoked) {
        const i = Math.floor(Number(r.h)) - first;
        if (i >= 0 && i < buckets.length) buckets[i].revoked += Number(r.n);
      }
      return buckets;
    } catch (e) {
      throw storageError(e);
    }
  }
}
