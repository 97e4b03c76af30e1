import { isIP } from 'node:net';
import { CaError } from '../errors';

/**
 * The bucket key of a client address. An IPv6 client is given a whole /64
 * (RFC 6177; RFC 4291 section 2.5.4: the low 64 bits are the interface
 * identifier, chosen freely by the host and rotated by privacy extensions,
 * RFC 8981), so it counts as one client however many addresses it uses. An
 * IPv4-mapped IPv6 address (::ffff:a.b.c.d) is its IPv4 address.
 */
export function addressKey(address: string | undefined): string {
  if (!address) return 'unknown';
  const ip = address.replace(/%.*$/, ''); // zone index (fe80::1%eth0)
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1];
  if (isIP(ip) !== 6) return ip;
  const groups = expandIpv6(ip);
  return groups ? `${groups.slice(0, 4).join(':')}::/64` : ip;
}

/** The eight 16-bit groups of an IPv6 address, as lowercase hex without leading zeros. */
function expandIpv6(ip: string): string[] | undefined {
  let text = ip.toLowerCase();
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number);
    text = text.slice(0, v4.index) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split('::');
  const left = head ? head.split(':') : [];
  const right = tail === undefined ? [] : tail ? tail.split(':') : [];
  const zeros = tail === undefined ? 0 : 8 - left.length - right.length;
  const groups = [...left, ...Array<string>(zeros).fill('0'), ...right].map((g) => parseInt(g, 16).toString(16));
  return groups.length === 8 ? groups : undefined;
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * Token buckets: `perMinute` requests a minute, in bursts of up to a minute's
 * worth. Kept in memory per process, at most `maxKeys` of them. When full,
 * buckets are dropped in this order until a tenth is free: those refilled to
 * capacity (they remember nothing), then the least recently used of those
 * not limiting anyone now, then the least recently used. A flood of new
 * addresses therefore never resets the bucket of an address being limited
 * (it used to clear every bucket at once).
 */
export class RateLimiter {
  /** insertion order is the order of last use (a used bucket is moved to the end) */
  private buckets = new Map<string, Bucket>();
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

  get size(): number {
    return this.buckets.size;
  }

  /** Takes one token: 0 when allowed, else the seconds to wait. */
  take(key: string): number {
    const t = this.now();
    let b = this.buckets.get(key);
    if (b) {
      b.tokens = this.level(b, t);
      b.at = t;
      this.buckets.delete(key);
    } else {
      if (this.buckets.size >= this.maxKeys) this.evict(t);
      b = { tokens: this.capacity, at: t };
    }
    this.buckets.set(key, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return this.waitFor(b.tokens);
  }

  /** Without taking a token: 0 when one is available, else the seconds to wait. */
  wait(key: string): number {
    const b = this.buckets.get(key);
    if (!b) return 0;
    const level = this.level(b, this.now());
    return level >= 1 ? 0 : this.waitFor(level);
  }

  private level(b: Bucket, t: number): number {
    return Math.min(this.capacity, b.tokens + Math.max(0, t - b.at) * this.perMs);
  }

  private waitFor(level: number): number {
    return Math.max(1, Math.ceil((1 - level) / this.perMs / 1000));
  }

  private evict(t: number): void {
    const target = Math.floor(this.maxKeys * 0.9);
    for (const [k, b] of this.buckets) if (this.level(b, t) >= this.capacity) this.buckets.delete(k);
    for (const [k, b] of this.buckets) {
      if (this.buckets.size <= target) return;
      if (this.level(b, t) >= 1) this.buckets.delete(k);
    }
    for (const k of this.buckets.keys()) {
      if (this.buckets.size <= target) return;
      this.buckets.delete(k);
    }
  }
}

/** Issuance limits per token and per client address (an IPv6 /64, see addressKey); 429 with Retry-After. A limit of 0 is off. */
export class IssuanceRateLimit {
  private readonly byToken?: RateLimiter;
  private readonly byAddress?: RateLimiter;

  constructor(opts: { perToken: number; perAddress: number }) {
    this.byToken = opts.perToken > 0 ? new RateLimiter(opts.perToken) : undefined;
    this.byAddress = opts.perAddress > 0 ? new RateLimiter(opts.perAddress) : undefined;
  }

  /** Takes one request from both buckets; throws CaError('rateLimited') when either is empty. */
  take(address: string | undefined, tokenId: string | undefined): void {
    const wait = Math.max(this.byAddress?.take(addressKey(address)) ?? 0, tokenId !== undefined && this.byToken ? this.byToken.take(tokenId) : 0);
    if (wait > 0) throw new CaError('rateLimited', 'rateLimited', `too many issuance requests; retry in ${wait} s`, { 'Retry-After': String(wait) });
  }
}
