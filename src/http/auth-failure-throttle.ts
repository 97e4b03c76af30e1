import type { AuditLog } from '../audit/audit-log';
import type { Clock } from '../clock';
import { CaError } from '../errors';
import type { Metrics } from '../metrics';
import { RateLimiter, addressKey } from './rate-limit';

/** What the router reports of a failed authentication (never the presented token). */
export interface AuthFailure {
  error: { code: string };
  ip: string | undefined;
  path: string;
}

/** Failed authentications of one address (or of every address past the cap) in the current interval. */
interface Window {
  /** the interval's first failure was recorded as an event of its own */
  recorded: boolean;
  /** failures after that one */
  count: number;
  throttled: number;
  codes: Record<string, number>;
  firstAt?: number;
  lastAt?: number;
}

/** Addresses followed per interval; failures from more addresses are summed into one summary. */
const MAX_ADDRESSES = 1000;
const OTHER_ADDRESSES = '*';

/**
 * Failed authentications, throttled and audited in bounded volume.
 *
 * Every failure used to be a durable audit append (an fsync on SQLite) before
 * any limit, so a loop of bad tokens grew the audit table without bound and
 * competed with issuance for the database's write lock. Now:
 *
 *  - Throttle (OWASP ASVS V2.2.1, anti-automation): after `limitPerMinute`
 *    failures from an address (an IPv6 /64, see addressKey) within a minute,
 *    its requests for routes that need a token get 429 `rateLimited` with
 *    Retry-After before any token is looked up, even with a valid token, until
 *    its bucket refills. 0 turns the limit off.
 *  - Audit: the first failure from an address in an interval is an
 *    `authenticationFailed` event at once (a single failure is still seen);
 *    the later ones, and the requests refused by the throttle, become one
 *    `authenticationFailures` event per address when the interval ends
 *    (`flush`, from a timer and at a graceful stop): the count, the refused
 *    requests, the codes, the first and last time. At most MAX_ADDRESSES
 *    addresses are followed per interval; failures from further addresses are
 *    summed into one summary with the address "*".
 *  - Metrics: hsmca_auth_failures_total counts every failure, as before.
 */
export class AuthFailureThrottle {
  private readonly limiter?: RateLimiter;
  private windows = new Map<string, Window>();

  constructor(
    private readonly deps: {
      audit: AuditLog;
      metrics: Metrics;
      clock: Clock;
      /** failures a minute per address before the throttle refuses (0: no limit) */
      limitPerMinute: number;
      /** the audit interval: first failure at once, the rest summed per interval */
      intervalSeconds: number;
      /** the limiter's time source (real time, like the issuance limits) */
      now?: () => number;
    },
  ) {
    if (deps.limitPerMinute > 0) this.limiter = new RateLimiter(deps.limitPerMinute, deps.now ?? Date.now);
  }

  get intervalMs(): number {
    return this.deps.intervalSeconds * 1000;
  }

  /** Before a token is looked up: throws CaError('rateLimited') while the address is over its limit. */
  admit(ip: string | undefined): void {
    if (!this.limiter) return;
    const key = addressKey(ip);
    const wait = this.limiter.wait(key);
    if (wait === 0) return;
    this.seen(this.window(key)).throttled++;
    throw new CaError('rateLimited', 'rateLimited', `too many failed authentications from this address; retry in ${wait} s`, { 'Retry-After': String(wait) });
  }

  /** A failed authentication: counted, taken from the address's bucket, and audited (at once or in the summary). */
  failed(e: AuthFailure): void {
    this.deps.metrics.authFailures.inc();
    const key = addressKey(e.ip);
    this.limiter?.take(key);
    const w = this.window(key);
    if (!w.recorded && w !== this.windows.get(OTHER_ADDRESSES)) {
      w.recorded = true;
      void this.deps.audit.tryRecord({ type: 'authenticationFailed', actor: 'anonymous', details: { code: e.error.code, ip: e.ip ?? null, path: e.path.slice(0, 200) } });
      return;
    }
    this.seen(w).count++;
    w.codes[e.error.code] = (w.codes[e.error.code] ?? 0) + 1;
  }

  private seen(w: Window): Window {
    const t = this.deps.clock.now().getTime();
    w.firstAt ??= t;
    w.lastAt = t;
    return w;
  }

  /** Ends the interval: one summary event per address with failures or refusals since the first; waits until they are written. */
  async flush(): Promise<void> {
    const ended = this.windows;
    this.windows = new Map();
    const writes: Promise<void>[] = [];
    for (const [address, w] of ended) {
      if (w.count === 0 && w.throttled === 0) continue;
      writes.push(
        this.deps.audit.tryRecord({
          type: 'authenticationFailures',
          actor: 'anonymous',
          details: {
            address,
            count: w.count,
            throttled: w.throttled,
            codes: w.codes,
            firstAt: w.firstAt === undefined ? null : new Date(w.firstAt).toISOString(),
            lastAt: w.lastAt === undefined ? null : new Date(w.lastAt).toISOString(),
            intervalSeconds: this.deps.intervalSeconds,
          },
        }),
      );
    }
    await Promise.all(writes);
  }

  private window(key: string): Window {
    let w = this.windows.get(key);
    if (!w) {
      const k = this.windows.size >= MAX_ADDRESSES ? OTHER_ADDRESSES : key;
      w = this.windows.get(k);
      if (!w) {
        w = { recorded: false, count: 0, throttled: 0, codes: {} };
        this.windows.set(k, w);
      }
    }
    return w;
  }
}
