/**
 * RSA public-key checks, after Boulder's goodkey (ra/goodkey): the ways a
 * modulus is known to be weak without knowing its factors.
 *
 * - Size 2048 to 8192 bits (CA/Browser Forum BR 6.1.5; larger ones cost every
 *   relying party and are refused as unsupported).
 * - Exponent odd, at least 65537 and below 2^256 (BR 6.1.6; NIST SP 800-89
 *   5.3.3 and FIPS 186-4 B.3.1 bound e to 2^16 < e < 2^256). e = 3 invites
 *   low-exponent attacks on badly padded messages.
 * - No prime factor below 752 (Boulder's bound; NIST SP 800-89 5.3.3 asks
 *   for the modulus to have no factor smaller than 752).
 * - Not factorable by Fermat's method in a few rounds: primes generated too
 *   close together (|p - q| below about 2^(bits/4)) give n away at once
 *   (CVE-2022-26320, the Rambus SafeZone and Canon/Fujifilm printer keys).
 * - Not an Infineon RSALib key (ROCA, CVE-2017-15361): see roca.ts.
 */
import { hasRocaFingerprint } from './roca';

export const RSA_MIN_BITS = 2048;
export const RSA_MAX_BITS = 8192;
/** Boulder runs 100 rounds; each costs an addition and, rarely, a square root. */
export const FERMAT_ROUNDS = 100;
export const SMALL_PRIME_BOUND = 752;

export type RsaWeakness =
  | { check: 'modulusSize'; tooLarge: boolean; bits: number }
  | { check: 'exponent' }
  | { check: 'smallFactor' }
  | { check: 'fermat'; rounds: number }
  | { check: 'roca' };

/** Primes below `bound`, by the sieve of Eratosthenes. */
export function primesBelow(bound: number): number[] {
  const composite = new Uint8Array(bound);
  const out: number[] = [];
  for (let i = 2; i < bound; i++) {
    if (composite[i]) continue;
    out.push(i);
    for (let j = i * i; j < bound; j += i) composite[j] = 1;
  }
  return out;
}

const SMALL_PRIMES = primesBelow(SMALL_PRIME_BOUND);
/** n modulo each prime below 752, in order (2, 3, 5, ...). */
export const smallPrimeResidues = residuesModulo(SMALL_PRIMES);

/**
 * A function giving n modulo each of `primes` (small primes, in order). The
 * primes are packed into groups whose product stays below 2^53: one BigInt
 * division per group (of n already reduced modulo the product of all the
 * primes), then plain number arithmetic per prime. About ten times faster
 * than one BigInt division per prime for 2048-bit moduli.
 */
export function residuesModulo(primes: readonly number[]): (n: bigint) => number[] {
  const groups: { product: bigint; members: number[] }[] = [];
  let current: number[] = [];
  let product = 1;
  for (const p of primes) {
    if (product * p > Number.MAX_SAFE_INTEGER) {
      groups.push({ product: BigInt(product), members: current });
      current = [];
      product = 1;
    }
    current.push(p);
    product *= p;
  }
  if (current.length) groups.push({ product: BigInt(product), members: current });
  const all = groups.reduce((a, g) => a * g.product, 1n);
  return (n) => {
    const reduced = n % all;
    const out: number[] = [];
    for (const g of groups) {
      const r = Number(reduced % g.product);
      for (const p of g.members) out.push(r % p);
    }
    return out;
  };
}

export function bitLength(n: bigint): number {
  if (n <= 0n) return 0;
  const hex = n.toString(16);
  return (hex.length - 1) * 4 + Math.floor(Math.log2(parseInt(hex[0], 16))) + 1;
}

/**
 * floor(sqrt(n)) by Newton's method, started from the square root of n's top
 * 52 bits (rounded up, so the iteration decreases to the root in a few steps).
 */
export function isqrt(n: bigint): bigint {
  if (n < 0n) throw new RangeError('square root of a negative number');
  if (n < 1n << 52n) return BigInt(Math.floor(Math.sqrt(Number(n))));
  const bits = bitLength(n);
  const shift = bits - 52 + ((bits - 52) & 1);
  const top = Number(n >> BigInt(shift));
  let x = (BigInt(Math.ceil(Math.sqrt(top))) + 1n) << BigInt(shift / 2);
  for (;;) {
    const y = (x + n / x) >> 1n;
    if (y >= x) return x;
    x = y;
  }
}

// Quadratic-residue filters: a square is a square modulo every m, and most
// non-squares fail one of these four (Cohen, A Course in Computational
// Algebraic Number Theory, 1.7.1), so the square root is rarely taken.
const QR_MODULI = [64, 63, 65, 11];
const QR_TABLES = QR_MODULI.map((m) => {
  const t = new Uint8Array(m);
  for (let i = 0; i < m; i++) t[(i * i) % m] = 1;
  return t;
});
const QR_PRODUCT = QR_MODULI.reduce((a, b) => a * b, 1);

/**
 * Fermat's factorisation, bounded: when the two primes are close,
 * n = a^2 - b^2 = (a + b)(a - b) for an a just above sqrt(n). Returns the
 * round (1-based) whose b^2 = a^2 - n is a perfect square, or undefined.
 * From one a to the next, b^2 grows by 2a + 1: the rounds follow b^2 and
 * 2a + 1 modulo the filters' product in plain numbers, and only a candidate
 * that passes the filters costs a BigInt square root.
 */
export function fermatRound(n: bigint, rounds = FERMAT_ROUNDS): number | undefined {
  let a0 = isqrt(n);
  if (a0 * a0 < n) a0 += 1n;
  const m = BigInt(QR_PRODUCT);
  let b2mod = Number((a0 * a0 - n) % m);
  let stepMod = Number((2n * a0 + 1n) % m);
  for (let round = 1; round <= rounds; round++) {
    let candidate = true;
    for (let i = 0; i < QR_MODULI.length && candidate; i++) candidate = QR_TABLES[i][b2mod % QR_MODULI[i]] === 1;
    if (candidate) {
      const a = a0 + BigInt(round - 1);
      const b2 = a * a - n;
      const b = isqrt(b2);
      if (b * b === b2 && a - b > 1n) return round;
    }
    b2mod = (b2mod + stepMod) % QR_PRODUCT;
    stepMod = (stepMod + 2) % QR_PRODUCT;
  }
  return undefined;
}

/** The first weakness of an RSA public key (n, e), or undefined for a key that passes every check. */
export function rsaWeakness(n: bigint, e: bigint): RsaWeakness | undefined {
  const bits = bitLength(n);
  if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS) return { check: 'modulusSize', tooLarge: bits > RSA_MAX_BITS, bits };
  if (e < 65537n || e % 2n === 0n || e >= 1n << 256n) return { check: 'exponent' };
  const r = smallPrimeResidues(n);
  if (r.some((x) => x === 0)) return { check: 'smallFactor' };
  if (hasRocaFingerprint(n, r)) return { check: 'roca' };
  const round = fermatRound(n);
  if (round !== undefined) return { check: 'fermat', rounds: round };
  return undefined;
}
