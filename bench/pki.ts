/**
 * Test material made before any measurement: CSRs (node:crypto keys,
 * @peculiar/x509 requests) and DER OCSP requests (certIdFor, no nonce, so
 * that responders may answer from pre-signed responses).
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { webcrypto } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as der from '../src/asn1/der';
import { readCertificate } from '../src/ca/certificate';
import { certIdFor } from '../src/ocsp/response';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export type CsrKind = 'p256' | 'rsa2048';

export const CSR_LABEL: Record<CsrKind, string> = { p256: 'P-256', rsa2048: 'RSA-2048' };

const KEY_PARAMS: Record<CsrKind, { gen: EcKeyGenParams | RsaHashedKeyGenParams; sign: EcdsaParams | Algorithm }> = {
  p256: { gen: { name: 'ECDSA', namedCurve: 'P-256' }, sign: { name: 'ECDSA', hash: 'SHA-256' } as EcdsaParams },
  rsa2048: {
    gen: { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
    sign: { name: 'RSASSA-PKCS1-v1_5' },
  },
};

type EcKeyGenParams = webcrypto.EcKeyGenParams;
type RsaHashedKeyGenParams = webcrypto.RsaHashedKeyGenParams;
type EcdsaParams = webcrypto.EcdsaParams;
type Algorithm = webcrypto.Algorithm;
type CsrKeys = Parameters<typeof x509.Pkcs10CertificateRequestGenerator.create>[0]['keys'];

/**
 * `count` distinct PEM CSRs, each with its own key, CN=hostN.<tag>.bench.test and
 * the same name as a DNS SAN (what the tls-server profile requires). Keys are
 * made a few at a time on the libuv pool.
 */
export async function makeCsrs(kind: CsrKind, count: number, tag = kind): Promise<string[]> {
  const p = KEY_PARAMS[kind];
  const out: string[] = new Array(count);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < count; i = next++) {
      const keys = (await webcrypto.subtle.generateKey(p.gen, false, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
      const host = `host${i}.${tag}.bench.test`;
      const csr = await x509.Pkcs10CertificateRequestGenerator.create({
        name: `CN=${host}`,
        keys: keys as unknown as CsrKeys,
        signingAlgorithm: p.sign,
        extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: host }])],
      });
      out[i] = csr.toString('pem');
    }
  };
  await Promise.all(Array.from({ length: 4 }, worker));
  return out;
}

/** Where makeCsrsCached keeps CSRs between runs (RSA key generation takes a while). */
export const CSR_CACHE_DIR = path.join(os.tmpdir(), 'hsmca-bench-csrs');

/**
 * makeCsrs, kept in CSR_CACHE_DIR so later runs reuse the same requests (they
 * are inputs, not measurements). Returns the CSRs and whether they came from the cache.
 */
export async function makeCsrsCached(kind: CsrKind, count: number): Promise<{ csrs: string[]; cached: boolean }> {
  const file = path.join(CSR_CACHE_DIR, `${kind}-${count}.json`);
  try {
    const csrs = JSON.parse(fs.readFileSync(file, 'utf8')) as unknown;
    if (Array.isArray(csrs) && csrs.length === count && csrs.every((c) => typeof c === 'string' && c.includes('CERTIFICATE REQUEST'))) {
      return { csrs: csrs as string[], cached: true };
    }
  } catch {
    // absent or unreadable: make new ones
  }
  const csrs = await makeCsrs(kind, count);
  fs.mkdirSync(CSR_CACHE_DIR, { recursive: true });
  fs.writeFileSync(`${file}.${process.pid}`, JSON.stringify(csrs));
  fs.renameSync(`${file}.${process.pid}`, file);
  return { csrs, cached: false };
}

/** The issuer fields a CertID hashes. */
export interface IssuerInfo {
  name: Buffer;
  spki: Buffer;
}

export function issuerInfo(certDer: Buffer): IssuerInfo {
  const c = readCertificate(certDer);
  return { name: c.subject, spki: c.spki };
}

/** A DER OCSPRequest for one certificate: one SHA-1 CertID, no nonce, unsigned (what `openssl ocsp -no_nonce` sends). */
export function ocspRequest(issuer: IssuerInfo, serial: Buffer): Buffer {
  const certId = certIdFor('sha1', issuer.name, issuer.spki, serial);
  // OCSPRequest { TBSRequest { requestList SEQUENCE OF Request { reqCert CertID } } }
  return der.seq(der.seq(der.seq(der.seq(certId))));
}

/** The path of an RFC 6960 appendix A.1 GET request: base64, URL-encoded. */
export function ocspGetPath(prefix: string, request: Buffer): string {
  return `${prefix}/${encodeURIComponent(request.toString('base64'))}`;
}

/** A serial like hsmca's own: 16 random octets, positive, encoding always 16 octets. */
export function randomSerial(bytes: Buffer): Buffer {
  const b = Buffer.from(bytes.subarray(0, 16));
  b[0] = (b[0] & 0x7f) | 0x40;
  return b;
}

export const pemToDer = (pem: string): Buffer => {
  const d = der.pemDecode(pem, ['CERTIFICATE']);
  if (!d) throw new Error('not a PEM certificate');
  return d;
};

/**
 * The certStatus of the first SingleResponse of a DER OCSPResponse ('good',
 * 'revoked', 'unknown'), or 'error:<responseStatus>' for an unsuccessful one.
 * Used to check a few answers of every responder before loading it: an OCSP
 * error still comes back as HTTP 200.
 */
export function ocspStatus(body: Buffer): string {
  const top = der.children(der.expect(der.readTop(body), der.Tag.SEQUENCE, 'OCSPResponse'));
  const status = der.content(top[0])[0];
  if (status !== 0) return `error:${status}`;
  const responseBytes = der.children(der.children(top[1])[0]);
  const basic = der.children(der.readTop(der.content(responseBytes[1])));
  const tbs = der.children(basic[0]);
  const responses = tbs.find((e, i) => i > 0 && e.tag === der.Tag.SEQUENCE);
  if (!responses) throw new Error('no responses in the OCSP response');
  const single = der.children(der.children(responses)[0]);
  const tag = single[1].tag;
  return tag === 0x80 ? 'good' : tag === 0xa1 ? 'revoked' : tag === 0x82 ? 'unknown' : `tag:${tag.toString(16)}`;
}
