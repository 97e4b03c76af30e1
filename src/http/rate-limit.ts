import { CaError } from '../errors';

/**
 * Token buckets: `perMinute` requests a minute, in bursts of up to a minute's
 * worth. Kept in memory per process; idle full buckets are dropped.
 */
export class RateLimiter {
  private buckets = new Map<string, { tokens: number; at: number }>();
  private readonly capacity: number;
  private readonly perMs: number;

  constructor(
    perMinute: number,
    private readonly now: () => number = Date.now,
    private readonly maxKeys = 100_000,
  ) {
    this.capacity = perMinute;
    this.perMs = perMinute / 60_000;
  }

  /** 0 when allowed, else the seconds to wait. */
  take(key: string): number {
    const t = this.now();
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= this.maxKeys) this.sweep(t);
      b = { tokens: this.capacity, at: t };
      this.buckets.set(key, b);
    } else {
      b.tokens = Math.min(this.capacity, b.tokens + (t - b.at) * this.perMs);
      b.at = t;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / this.perMs / 1000));
  }

  private sweep(t: number): void {
    for (const [k, b] of this.buckets) {
      if (b.tokens + (t - b.at) * this.perMs >= this.capacity) this.buckets.delete(k);
    }
    if (this.buckets.size >= this.maxKeys) this.buckets.clear();
  }
}

/** Issuance limits per token and per client address; 429 with Retry-After. A limit of 0 is off. */
export class IssuanceRateLimit {
  private readonly byToken?: RateLimiter;
  private readonly byAddress?: RateLimiter;

  constructor(opts: { perToken: number; perAddress: number }) {
    this.byToken = opts.perToken > 0 ? new RateLimiter(opts.perToken) : undefined;
    this.byAddress = opts.perAddress > 0 ? new RateLimiter(opts.perAddress) : undefined;
  }

  /** Takes one request from both buckets; throws CaError('rateLimited') when either is empty. */
  take(address: string | undefined, tokenId: string | undefined): void {
    const wait = Math.max(this.byAddress?.take(address ?? 'unknown') ?? 0, tokenId !== undefined && this.byToken ? this.byToken.take(tokenId) : 0);
    if (wait > 0) throw new CaError('rateLimited', 'rateLimited', `too many issuance requests; retry in ${wait} s`, { 'Retry-After': String(wait) });
  }
}
