/**
 * Peers measured in the same run as hsmca, each in its own process:
 *
 *   cfssl serve       issuance (POST /api/v1/cfssl/sign) from a P-256 CA
 *   cfssl ocspserve   OCSP from pre-signed responses (cfssl ocspsign per certificate); POST only
 *   openssl ocsp      -index index.txt -multi 2, signing every response
 *   openssl ca        -gencrl over an index.txt of N revoked entries
 *
 * cfssl is Debian's golang-cfssl (1.2.0). The peer PKI — a P-256 CA and a
 * delegated OCSP signer — is made with openssl, so both peers share it.
 */
import { execFile, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { once } from 'node:events';
import { Server, have, runCommand, startServer } from './proc';

export const CFSSL_HINT = 'apt-get install -y golang-cfssl';
export const OPENSSL_HINT = 'apt-get install -y openssl';

export interface PeerTools {
  cfssl: boolean;
  openssl: boolean;
  /** /usr/bin/time, for the peak RSS of openssl ca */
  time: boolean;
}

export function detectPeers(): PeerTools {
  return { cfssl: have('cfssl') && have('cfssljson'), openssl: have('openssl'), time: fs.existsSync('/usr/bin/time') };
}

export interface PeerPki {
  dir: string;
  caCert: string;
  caKey: string;
  caDer: Buffer;
  responderCert: string;
  responderKey: string;
}

/** A P-256 CA (10 years) and a P-256 OCSP signer it issued (EKU OCSPSigning, ocsp-nocheck), all PEM files in `dir`. */
export function makePeerPki(dir: string): PeerPki {
  const f = (n: string) => path.join(dir, n);
  const ossl = (...args: string[]) => runCommand('openssl', args, { cwd: dir });
  ossl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', f('ca-key.pem'));
  ossl('req', '-new', '-x509', '-key', f('ca-key.pem'), '-subj', '/O=hsmca bench/CN=bench peer CA', '-days', '3650', '-sha256',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature', '-out', f('ca.pem'));
  ossl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', f('ocsp-key.pem'));
  ossl('req', '-new', '-key', f('ocsp-key.pem'), '-subj', '/O=hsmca bench/CN=bench peer OCSP signer', '-out', f('ocsp.csr'));
  fs.writeFileSync(f('ocsp.ext'), 'keyUsage=critical,digitalSignature\nextendedKeyUsage=OCSPSigning\nnoCheck=ignored\n');
  ossl('x509', '-req', '-in', f('ocsp.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca-key.pem'), '-CAcreateserial', '-days', '30', '-sha256',
    '-extfile', f('ocsp.ext'), '-out', f('ocsp.pem'));
  return { dir, caCert: f('ca.pem'), caKey: f('ca-key.pem'), caDer: readDer(f('ca.pem')), responderCert: f('ocsp.pem'), responderKey: f('ocsp-key.pem') };
}

function readDer(pemFile: string): Buffer {
  const r = spawnSync('openssl', ['x509', '-in', pemFile, '-outform', 'DER']);
  if (r.status !== 0) throw new Error(`cannot read ${pemFile}: ${r.stderr.toString()}`);
  return r.stdout;
}

// ------------------------------------------------------------------ cfssl

/** cfssl serve with the peer CA; the default profile matches hsmca's tls-server (90 days, serverAuth). */
export async function startCfsslServe(pki: PeerPki, port: number): Promise<Server> {
  const config = path.join(pki.dir, 'cfssl-config.json');
  fs.writeFileSync(
    config,
    JSON.stringify({ signing: { default: { expiry: '2160h', usages: ['digital signature', 'key encipherment', 'server auth'] } } }),
  );
  return startServer({
    name: 'cfssl serve',
    cmd: 'cfssl',
    args: ['serve', '-address', '127.0.0.1', '-port', String(port), '-ca', pki.caCert, '-ca-key', pki.caKey, '-config', config, '-loglevel', '2'],
    port,
    // 1.2.0 has no health endpoint; scaninfo is a cheap GET
    ready: () => httpReady(`http://127.0.0.1:${port}/api/v1/cfssl/scaninfo`),
  });
}

/** The body cfssl serve signs: {"certificate_request": PEM}. */
export const cfsslSignBody = (csrPem: string): string => JSON.stringify({ certificate_request: csrPem });

/** Issues one certificate through cfssl serve (set-up, not measurement); returns the PEM. */
export async function cfsslSign(port: number, csrPem: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/api/v1/cfssl/sign`, { method: 'POST', body: cfsslSignBody(csrPem) });
  const body = (await res.json()) as { success?: boolean; result?: { certificate?: string }; errors?: unknown };
  if (!res.ok || !body.success || !body.result?.certificate) throw new Error(`cfssl sign failed (${res.status}): ${JSON.stringify(body.errors ?? body)}`);
  return body.result.certificate;
}

/** `cfssl ocspsign` for one certificate file: the base64 DER response. */
function cfsslOcspSign(pki: PeerPki, certFile: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'cfssl',
      ['ocspsign', '-ca', pki.caCert, '-responder', pki.responderCert, '-responder-key', pki.responderKey, '-cert', certFile, '-status', 'good', '-loglevel', '5'],
      { maxBuffer: 1 << 20 },
      (err, stdout) => {
        if (err) return reject(err);
        try {
          const r = JSON.parse(stdout) as { ocspResponse?: string };
          if (!r.ocspResponse) throw new Error('no ocspResponse');
          resolve(r.ocspResponse);
        } catch (e) {
          reject(new Error(`cfssl ocspsign: unexpected output ${stdout.slice(0, 200)} (${(e as Error).message})`));
        }
      },
    );
  });
}

/**
 * Pre-signs a good response for each certificate with `cfssl ocspsign` (a few
 * at a time) and writes them, one base64 response a line, as the responses
 * file `cfssl ocspserve -responses` loads.
 */
export async function cfsslResponsesFile(pki: PeerPki, certPems: string[], onProgress?: (done: number) => void): Promise<string> {
  const certDir = path.join(pki.dir, 'cfssl-certs');
  fs.mkdirSync(certDir, { recursive: true });
  const out: string[] = new Array(certPems.length);
  let next = 0;
  let done = 0;
  const worker = async () => {
    for (let i = next++; i < certPems.length; i = next++) {
      const file = path.join(certDir, `${i}.pem`);
      fs.writeFileSync(file, certPems[i]);
      out[i] = await cfsslOcspSign(pki, file);
      if (++done % 200 === 0) onProgress?.(done);
    }
  };
  await Promise.all(Array.from({ length: 4 }, worker));
  const file = path.join(pki.dir, 'cfssl-responses.txt');
  fs.writeFileSync(file, out.join('\n') + '\n');
  return file;
}

export function startCfsslOcspServe(responsesFile: string, port: number): Promise<Server> {
  return startServer({
    name: 'cfssl ocspserve',
    cmd: 'cfssl',
    args: ['ocspserve', '-address', '127.0.0.1', '-port', String(port), '-responses', responsesFile, '-loglevel', '2'],
    port,
  });
}

// ------------------------------------------------------------------ openssl

const hexSerial = (serial: Buffer) => serial.toString('hex').toUpperCase();

/** An `openssl ca` index line (tab-separated: status, expiry, revocation, serial, file, subject). */
function indexLine(status: 'V' | 'R', serial: Buffer, i: number, revokedAt?: Date, reason?: string): string {
  const exp = '351231235959Z';
  const rev = revokedAt ? `${utcTime(revokedAt)}${reason ? `,${reason}` : ''}` : '';
  return `${status}\t${exp}\t${rev}\t${hexSerial(serial)}\tunknown\t/CN=host${i}.bench.test\n`;
}

function utcTime(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${p(d.getUTCFullYear() % 100)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`;
}

/** index.txt with one valid entry per serial, for openssl ocsp. */
export function writeOcspIndex(pki: PeerPki, serials: Buffer[]): string {
  const file = path.join(pki.dir, 'ocsp-index.txt');
  fs.writeFileSync(file, serials.map((s, i) => indexLine('V', s, i)).join(''));
  fs.writeFileSync(`${file}.attr`, 'unique_subject = no\n');
  return file;
}

/**
 * openssl ocsp as a responder: two worker processes (-multi 2), a fresh
 * signature per response, nextUpdate 60 min. Readiness is checked with a real
 * request (`probe`, a DER OCSPRequest): a bare TCP probe would leave one worker
 * spinning (see startServer).
 */
export function startOpensslOcsp(pki: PeerPki, indexFile: string, port: number, probe: Buffer): Promise<Server> {
  return startServer({
    name: 'openssl ocsp',
    cmd: 'openssl',
    args: ['ocsp', '-index', indexFile, '-CA', pki.caCert, '-rsigner', pki.responderCert, '-rkey', pki.responderKey, '-port', String(port), '-multi', '2', '-nmin', '60'],
    port,
    ready: () => httpReady(`http://127.0.0.1:${port}/`, { method: 'POST', headers: { 'content-type': 'application/ocsp-request' }, body: probe }),
  });
}

/** True once the URL answers 200 (connection refused until the server listens). */
async function httpReady(url: string, init?: RequestInit): Promise<boolean> {
  try {
    const res = await fetch(url, init);
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  }
}

const REASONS = ['keyCompromise', 'affiliationChanged', 'superseded', 'cessationOfOperation'];

/**
 * An openssl ca set-up whose index.txt holds `count` revoked entries (random
 * 16-octet serials, a reason on two thirds of them, as in hsmca's CRL rows).
 */
export async function writeCrlIndex(pki: PeerPki, count: number, randomSerials: (n: number) => Buffer[]): Promise<string> {
  const dir = path.join(pki.dir, `crl-${count}`);
  fs.mkdirSync(dir, { recursive: true });
  const index = path.join(dir, 'index.txt');
  const w = fs.createWriteStream(index);
  const base = Date.now() - 86_400_000;
  for (let done = 0; done < count; ) {
    const n = Math.min(10_000, count - done);
    const serials = randomSerials(n);
    let chunk = '';
    for (let i = 0; i < n; i++) {
      const k = done + i;
      chunk += indexLine('R', serials[i], k, new Date(base - (k % 365) * 86_400_000 - (k % 86_400) * 1000), k % 3 === 0 ? undefined : REASONS[k % 4]);
    }
    if (!w.write(chunk)) await once(w, 'drain');
    done += n;
  }
  w.end();
  await once(w, 'finish');
  fs.writeFileSync(`${index}.attr`, 'unique_subject = no\n');
  fs.writeFileSync(path.join(dir, 'crlnumber'), '01\n');
  fs.writeFileSync(
    path.join(dir, 'ca.cnf'),
    [
      '[ ca ]',
      'default_ca = bench',
      '[ bench ]',
      `database = ${index}`,
      `crlnumber = ${path.join(dir, 'crlnumber')}`,
      `certificate = ${pki.caCert}`,
      `private_key = ${pki.caKey}`,
      `new_certs_dir = ${dir}`,
      `serial = ${path.join(dir, 'serial')}`,
      'default_md = sha256',
      'default_crl_days = 1',
      'unique_subject = no',
      '',
    ].join('\n'),
  );
  return dir;
}

export interface GenCrlResult {
  seconds: number;
  /** peak RSS from /usr/bin/time, when it is installed */
  peakRssMB?: number;
  crlBytes: number;
}

/** Times `openssl ca -gencrl` (PEM output, as it writes) in a set-up made by writeCrlIndex. */
export function opensslGenCrl(dir: string, useTime: boolean): GenCrlResult {
  const out = path.join(dir, 'crl.pem');
  const args = ['ca', '-config', path.join(dir, 'ca.cnf'), '-gencrl', '-batch', '-out', out];
  const t0 = process.hrtime.bigint();
  const r = useTime ? spawnSync('/usr/bin/time', ['-f', 'maxrss-kb=%M', 'openssl', ...args]) : spawnSync('openssl', args);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const stderr = r.stderr?.toString() ?? '';
  if (r.status !== 0) throw new Error(`openssl ca -gencrl failed (${r.status}): ${stderr.slice(-2000)}`);
  const m = stderr.match(/maxrss-kb=(\d+)/);
  return { seconds, peakRssMB: m ? Number(m[1]) / 1024 : undefined, crlBytes: fs.statSync(out).size };
}
