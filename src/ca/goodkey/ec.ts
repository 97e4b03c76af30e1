/**
 * ECDSA public-key checks (Boulder's goodkey; NIST SP 800-56A rev. 3
 * 5.6.2.3.3, full public-key validation): the point is not the identity, its
 * coordinates are field elements, and it satisfies the curve equation
 * y^2 = x^3 - 3x + b (mod p). P-256 and P-384 have cofactor 1, so a point on
 * the curve is in the prime-order group and no order check is needed.
 * OpenSSL refuses an off-curve point when it imports the key, but with an
 * unreadable-key error; checking here first names the reason (a weak key)
 * and does not depend on the library's behaviour.
 */

export type EcCurveName = 'P-256' | 'P-384';

interface CurveParams {
  p: bigint;
  b: bigint;
  size: number;
}

/** FIPS 186-4 D.1.2.3 and D.1.2.4 (SEC 2 2.4.2, 2.5.1). */
export const CURVES: Record<EcCurveName, CurveParams> = {
  'P-256': {
    p: 2n ** 256n - 2n ** 224n + 2n ** 192n + 2n ** 96n - 1n,
    b: 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn,
    size: 32,
  },
  'P-384': {
    p: 2n ** 384n - 2n ** 128n - 2n ** 96n + 2n ** 32n - 1n,
    b: 0xb3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aefn,
    size: 48,
  },
};

export type EcWeakness = 'identity' | 'pointEncoding' | 'notOnCurve';

const big = (b: Buffer) => BigInt('0x' + (b.length ? b.toString('hex') : '0'));
const mod = (x: bigint, p: bigint) => ((x % p) + p) % p;

function modPow(base: bigint, exp: bigint, p: bigint): bigint {
  let result = 1n;
  base = mod(base, p);
  while (exp > 0n) {
    if (exp & 1n) result = (result * base) % p;
    base = (base * base) % p;
    exp >>= 1n;
  }
  return result;
}

/** x^3 - 3x + b mod p: what y^2 must be. */
function curveRhs(x: bigint, c: CurveParams): bigint {
  return mod(x * x * x - 3n * x + c.b, c.p);
}

/**
 * What is wrong with an encoded point (SEC 1 2.3.4: the subjectPublicKey
 * BIT STRING's content), or undefined for a valid point. Compressed points
 * (02/03 || x) are valid when x^3 - 3x + b is a square modulo p (Euler's
 * criterion).
 */
export function ecPointWeakness(curve: EcCurveName, point: Buffer): EcWeakness | undefined {
  const c = CURVES[curve];
  if (point.length === 1 && point[0] === 0x00) return 'identity';
  if (point[0] === 0x04 && point.length === 1 + 2 * c.size) {
    const x = big(point.subarray(1, 1 + c.size));
    const y = big(point.subarray(1 + c.size));
    if (x >= c.p || y >= c.p) return 'notOnCurve';
    return (y * y) % c.p === curveRhs(x, c) ? undefined : 'notOnCurve';
  }
  if ((point[0] === 0x02 || point[0] === 0x03) && point.length === 1 + c.size) {
    const x = big(point.subarray(1));
    if (x >= c.p) return 'notOnCurve';
    const rhs = curveRhs(x, c);
    if (rhs === 0n) return undefined;
    return modPow(rhs, (c.p - 1n) / 2n, c.p) === 1n ? undefined : 'notOnCurve';
  }
  return 'pointEncoding';
}

/**
 * The uncompressed form (04 || x || y) of a compressed point (02/03 || x),
 * or undefined when it is not a point of the curve. Both curves have
 * p = 3 (mod 4), so a square root of a is a^((p+1)/4).
 */
export function decompressPoint(curve: EcCurveName, point: Buffer): Buffer | undefined {
  const c = CURVES[curve];
  if ((point[0] !== 0x02 && point[0] !== 0x03) || point.length !== 1 + c.size) return undefined;
  const x = big(point.subarray(1));
  if (x >= c.p) return undefined;
  const rhs = curveRhs(x, c);
  let y = modPow(rhs, (c.p + 1n) / 4n, c.p);
  if ((y * y) % c.p !== rhs) return undefined;
  if (Number(y & 1n) !== (point[0] & 1)) y = (c.p - y) % c.p;
  const hex = (v: bigint) => Buffer.from(v.toString(16).padStart(c.size * 2, '0'), 'hex');
  return Buffer.concat([Buffer.from([0x04]), hex(x), hex(y)]);
}
