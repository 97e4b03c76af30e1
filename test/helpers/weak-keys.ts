import { checkPrimeSync, createHash, generatePrimeSync, randomBytes } from 'node:crypto';
import * as der from '../../src/asn1/der';

/*
 * Weak keys made on purpose, for the goodkey tests: openssl will not make
 * them, so the keys are put together from primes chosen here, and the CSRs
 * are encoded with the project's DER writer and signed here (RSASSA-PKCS1-v1_5
 * by modular exponentiation: OpenSSL refuses to import such keys).
 */

const b64u = (x: bigint) => {
  let h = x.toString(16);
  if (h.length % 2) h = '0' + h;
  return Buffer.from(h, 'hex').toString('base64url');
};

export function modInverse(a: bigint, m: bigint): bigint {
  let [r0, r1] = [a % m, m];
  let [s0, s1] = [1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  if (r0 !== 1n) throw new Error('not invertible');
  return ((s0 % m) + m) % m;
}

export const bitLength = (n: bigint) => n.toString(2).length;

/** A prime of `bits` bits (node:crypto's generator). */
export const prime = (bits: number) => generatePrimeSync(bits, { bigint: true }) as bigint;

const SIEVE = [3n, 5n, 7n, 11n, 13n, 17n, 19n, 23n, 29n, 31n, 37n, 41n, 43n, 47n];

/** The first prime at or above `from`. */
export function nextPrime(from: bigint): bigint {
  let x = from % 2n === 0n ? from + 1n : from;
  while (SIEVE.some((p) => x % p === 0n) || !checkPrimeSync(x, { checks: 20 })) x += 2n;
  return x;
}

export function modPow(base: bigint, exp: bigint, m: bigint): bigint {
  let result = 1n;
  base %= m;
  while (exp > 0n) {
    if (exp & 1n) result = (result * base) % m;
    base = (base * base) % m;
    exp >>= 1n;
  }
  return result;
}

/** An RSA key from its distinct prime factors: n, e and d (OpenSSL will not import such keys, so signing is done here). */
export interface WeakRsaKey {
  n: bigint;
  e: bigint;
  d: bigint;
  factors: bigint[];
}

export function rsaKeyFromFactors(factors: bigint[], e = 65537n): WeakRsaKey {
  const n = factors.reduce((a, f) => a * f, 1n);
  const d = modInverse(e, factors.reduce((a, f) => a * (f - 1n), 1n));
  return { n, e, d, factors };
}

/** A 2048-bit RSA key with the prime factor `small` (below 752) and two large ones. */
export function smallFactorKey(small: bigint): WeakRsaKey {
  for (;;) {
    const rest = 2048 - bitLength(small);
    const q1 = prime(Math.floor(rest / 2));
    const q2 = prime(Math.ceil(rest / 2) + 1);
    if (bitLength(small * q1 * q2) !== 2048) continue;
    try {
      return rsaKeyFromFactors([small, q1, q2]);
    } catch {
      // 65537 divides some f - 1: draw again
    }
  }
}

/** A 2048-bit RSA key whose primes are close together: q is the next prime after p + a random offset below 2^gapBits. */
export function closePrimesKey(gapBits = 20): WeakRsaKey & { p: bigint; q: bigint } {
  for (;;) {
    // p above 2^1023.5, so that p * q has 2048 bits
    const p = prime(1024);
    if (p < 0xb504f333f9de6484n << 960n) continue;
    const q = nextPrime(p + (BigInt('0x' + randomBytes(Math.ceil(gapBits / 8)).toString('hex')) % (1n << BigInt(gapBits))) + 2n);
    try {
      return { ...rsaKeyFromFactors([p, q]), p, q };
    } catch {
      // e not invertible: try other primes
    }
  }
}

/** RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 8.2.1, 9.2): the signature of `data` under (n, d). */
export function signRsaSha256(data: Buffer, key: WeakRsaKey): Buffer {
  const k = Math.ceil(bitLength(key.n) / 8);
  const digestInfo = Buffer.concat([Buffer.from('3031300d060960864801650304020105000420', 'hex'), createHash('sha256').update(data).digest()]);
  const em = Buffer.concat([Buffer.from([0, 1]), Buffer.alloc(k - digestInfo.length - 3, 0xff), Buffer.from([0]), digestInfo]);
  const s = modPow(BigInt('0x' + em.toString('hex')), key.d, key.n);
  return Buffer.from(s.toString(16).padStart(k * 2, '0'), 'hex');
}

/** An RSA SubjectPublicKeyInfo for any n and e, whether or not a private key exists. */
export function rsaSpki(n: bigint, e: bigint): Buffer {
  return der.seq(der.seq(der.oid('1.2.840.113549.1.1.1'), der.nul()), der.bits(der.seq(der.int(n), der.int(e))));
}

/** An EC SubjectPublicKeyInfo with the given point encoding (SEC 1 2.3.3). */
export function ecSpki(curve: 'P-256' | 'P-384', point: Buffer): Buffer {
  const curveOid = curve === 'P-256' ? '1.2.840.10045.3.1.7' : '1.3.132.0.34';
  return der.seq(der.seq(der.oid('1.2.840.10045.2.1'), der.oid(curveOid)), der.bits(point));
}

/**
 * A PKCS#10 request for `spki` naming DNS:`name`, signed with `privateKey`
 * (sha256WithRSAEncryption) or, without one, carrying a signature of random
 * bytes (the key checks come before the signature's).
 */
export function csrPem(spki: Buffer, name: string, privateKey?: WeakRsaKey, sigAlg: 'rsa' | 'ecdsa' = 'rsa'): string {
  const san = der.seq(der.oid('2.5.29.17'), der.octets(der.seq(der.ctx(2, Buffer.from(name, 'latin1'), false))));
  const attrs = der.ctx(0, der.seq(der.oid('1.2.840.113549.1.9.14'), der.set(der.seq(san))));
  const subject = der.seq(der.set(der.seq(der.oid('2.5.4.3'), der.utf8(name))));
  const info = der.seq(der.int(0), subject, spki, attrs);
  const alg = sigAlg === 'rsa' ? der.seq(der.oid('1.2.840.113549.1.1.11'), der.nul()) : der.seq(der.oid('1.2.840.10045.4.3.2'));
  const signature = privateKey ? signRsaSha256(info, privateKey) : randomBytes(256);
  return der.pemEncode('CERTIFICATE REQUEST', der.seq(info, alg, der.bits(signature)));
}
