import { X509Certificate, createPrivateKey, webcrypto } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as x509 from '@peculiar/x509';
import * as der from '../asn1/der';
import { ipToBytes } from '../ca/csr';
import type { IssuanceService, Principal } from '../ca/issuance';

/**
 * The HTTPS listener's server certificate and key (contract section 6): what
 * a secure context is made of, read from PEM files or issued by hsmca's own
 * issuing CA.
 *
 * The key is a service key, not a CA key: node's TLS stack needs it in the
 * process, so it is a P-256 key made with node's crypto and kept 0600 in the
 * data folder (tls/server.key, folder 0700), never in the HSM, whose keys
 * cannot be exported by design.
 */
export interface TlsMaterial {
  /** PEM: the private key */
  key: string;
  /** PEM: the server certificate, then the certificates that chain it to the root (not the root itself) */
  cert: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
  /** the subjectAltName's DNS names and IP addresses */
  names: string[];
  leaf: X509Certificate;
}

/** The pipeline's caller for the listener's own certificate: audited as `system:tls`, bound by no token scope. */
export const TLS_PRINCIPAL: Principal = { tokenId: 'system:tls', name: 'tls', role: 'system' };

/** 30 days: short enough that a leaked service key soon stops mattering, long enough to survive a long outage (renewed after 20). */
export const SERVER_CERTIFICATE_DAYS = 30;

/** An unusable certificate or key, with the reason in words. */
export class TlsMaterialError extends Error {}

/** Parses and checks a certificate chain and its key: the first certificate must be the key's. */
export function parseMaterial(certPem: string, keyPem: string): TlsMaterial {
  const blocks = certPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
  if (!blocks) throw new TlsMaterialError('no PEM certificate in it');
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(blocks[0]);
  } catch (e) {
    throw new TlsMaterialError(`the certificate cannot be read: ${(e as Error).message}`);
  }
  let key;
  try {
    key = createPrivateKey(keyPem);
  } catch (e) {
    throw new TlsMaterialError(`the private key cannot be read: ${(e as Error).message}`);
  }
  if (!leaf.checkPrivateKey(key)) throw new TlsMaterialError('the private key is not the key of the certificate');
  return { key: keyPem, cert: certPem, serial: leaf.serialNumber.toLowerCase(), notBefore: new Date(leaf.validFrom), notAfter: new Date(leaf.validTo), names: sanNames(leaf), leaf };
}

/** "DNS:a, IP Address:10.0.0.1" as node prints it → ["a", "10.0.0.1"]. */
function sanNames(leaf: X509Certificate): string[] {
  return (leaf.subjectAltName ?? '')
    .split(/,\s*/)
    .map((s) => /^(?:DNS|IP Address):(.+)$/.exec(s.trim())?.[1])
    .filter((s): s is string => !!s);
}

/** Same set of names, regardless of order, case of DNS names and spelling of IP addresses. */
export function sameNames(a: string[], b: string[]): boolean {
  const norm = (l: string[]) => [...new Set(l.map((n) => ipToBytes(n)?.toString('hex') ?? n.toLowerCase()))].sort().join(',');
  return norm(a) === norm(b);
}

/** Reads a certificate and key from PEM files; a key file other users can read is refused. */
export function readMaterialFiles(certFile: string, keyFile: string): TlsMaterial {
  let certPem: string;
  let keyPem: string;
  try {
    const mode = fs.statSync(keyFile).mode;
    if (mode & 0o077) throw new TlsMaterialError(`${keyFile} is readable by other users (mode ${(mode & 0o777).toString(8)}); run chmod 600 on it`);
    keyPem = fs.readFileSync(keyFile, 'utf8');
    certPem = fs.readFileSync(certFile, 'utf8');
  } catch (e) {
    if (e instanceof TlsMaterialError) throw e;
    throw new TlsMaterialError((e as Error).message);
  }
  return parseMaterial(certPem, keyPem);
}

/** Where hsmca keeps the certificate it issued itself. */
export function serverCertificateFiles(dataDir: string): { dir: string; cert: string; key: string } {
  const dir = path.join(dataDir, 'tls');
  return { dir, cert: path.join(dir, 'server.crt'), key: path.join(dir, 'server.key') };
}

/**
 * Saves key then certificate, each written aside and renamed into place, so
 * a reader never sees half a file; a reader that catches the pair between the
 * two renames finds the key does not match and tries again later.
 */
export function saveMaterial(dataDir: string, m: TlsMaterial): void {
  const files = serverCertificateFiles(dataDir);
  fs.mkdirSync(files.dir, { recursive: true, mode: 0o700 });
  fs.chmodSync(files.dir, 0o700);
  const put = (file: string, content: string, mode: number) => {
    const tmp = `${file}.${process.pid}.tmp`;
    fs.rmSync(tmp, { force: true });
    fs.writeFileSync(tmp, content, { mode, flag: 'wx' });
    fs.renameSync(tmp, file);
  };
  put(files.key, m.key, 0o600);
  put(files.cert, m.cert, 0o644);
}

/**
 * A fresh P-256 key and a certificate for it from the normal issuance
 * pipeline (tls-server profile, so it is linted, stored, audited and answered
 * by OCSP and CRLs like every other). The pipeline takes a CSR, so one is
 * made and signed with the new key: proof of possession as for any client.
 */
export async function issueServerCertificate(issuance: IssuanceService, names: string[], validityDays = SERVER_CERTIFICATE_DAYS): Promise<TlsMaterial> {
  const subtle = webcrypto.subtle;
  const keys = (await subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  // BR 7.1.4.3: a common name, if any, is one of the SANs; a DNS name reads best.
  const cn = names.find((n) => !ipToBytes(n)) ?? names[0];
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    {
      name: [{ CN: [cn] }],
      keys: keys as unknown as x509.Pkcs10CertificateRequestCreateParams['keys'],
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [new x509.SubjectAlternativeNameExtension(names.map((n) => ({ type: ipToBytes(n) ? 'ip' : 'dns', value: n })))],
    },
    webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0],
  );
  const issued = await issuance.issue({ csr: csr.toString('pem'), profile: 'tls-server', validityDays }, TLS_PRINCIPAL);
  const key = der.pemEncode('PRIVATE KEY', Buffer.from(await subtle.exportKey('pkcs8', keys.privateKey)));
  // the root stays out: clients hold it as their trust anchor
  return parseMaterial(issued.certificate + issued.chain[0], key);
}
