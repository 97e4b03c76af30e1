/**
 * A tiny test PKI: root -> issuing CA -> { delegated OCSP signer, leaf certificates },
 * with node:crypto keys and @peculiar/x509, written as PEM files into a temp dir so
 * the openssl CLI can be run against them.
 */
import 'reflect-metadata';
import * as crypto from 'node:crypto';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as x509 from '@peculiar/x509';
import * as der from '../../src/asn1/der';
import type { Signer } from '../../src/hsm/hsm';
import { KeyAlgorithm, keyAlgorithmInfo } from '../../src/hsm/key-algorithm';

type CryptoKey = crypto.webcrypto.CryptoKey;

x509.cryptoProvider.set(crypto.webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export interface TestKey {
  algorithm: KeyAlgorithm;
  privateKey: crypto.KeyObject;
  /** DER SubjectPublicKeyInfo */
  publicKey: Buffer;
  signer: Signer;
  webKeys: { privateKey: CryptoKey; publicKey: CryptoKey };
}

export interface TestCert {
  der: Buffer;
  pem: string;
  cert: x509.X509Certificate;
  key: TestKey;
  /** PEM certificate file */
  path: string;
  /** PEM PKCS#8 private key file */
  keyPath: string;
  /** serial as unsigned big-endian bytes */
  serial: Buffer;
  /** DER subject Name, exactly as in the certificate */
  subjectName: Buffer;
  /** subjectKeyIdentifier value */
  ski: Buffer;
}

export interface TestCa {
  dir: string;
  root: TestCert;
  issuer: TestCert;
  /** delegated OCSP signer issued by `issuer` (EKU OCSPSigning, ocsp-nocheck) */
  ocsp: TestCert;
  /** root + issuer PEM file */
  chainPath: string;
  crlUrl: string;
  deltaCrlUrl: string;
  /** issues an end-entity certificate from `issuer`, with a CRLDP pointing at crlUrl */
  issueLeaf(serial?: Buffer): Promise<TestCert>;
  /** writes a file into the temp dir and returns its path */
  write(name: string, data: Buffer | string): string;
  cleanup(): void;
}

const keyAlgParams = (alg: KeyAlgorithm) => {
  const info = keyAlgorithmInfo(alg);
  return info.kind === 'ec'
    ? { gen: { name: 'ECDSA', namedCurve: info.namedCurve! }, sign: { name: 'ECDSA', hash: info.hash === 'sha256' ? 'SHA-256' : 'SHA-384' } }
    : { gen: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, sign: { name: 'RSASSA-PKCS1-v1_5' } };
};

export function signerFromKeyObject(alg: KeyAlgorithm, privateKey: crypto.KeyObject, label = 'test'): Signer {
  const info = keyAlgorithmInfo(alg);
  const publicKey = crypto.createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  return {
    label,
    algorithm: alg,
    publicKey,
    async sign(data: Buffer): Promise<Buffer> {
      return info.kind === 'ec'
        ? crypto.sign(info.hash, data, { key: privateKey, dsaEncoding: 'der' })
        : crypto.sign(info.hash, data, privateKey);
    },
  };
}

export async function makeKey(alg: KeyAlgorithm, label = 'test'): Promise<TestKey> {
  const info = keyAlgorithmInfo(alg);
  const { privateKey } =
    info.kind === 'ec'
      ? crypto.generateKeyPairSync('ec', { namedCurve: info.namedCurve === 'P-256' ? 'prime256v1' : 'secp384r1' })
      : crypto.generateKeyPairSync('rsa', { modulusLength: info.modulusLength! });
  const signer = signerFromKeyObject(alg, privateKey, label);
  const p = keyAlgParams(alg);
  const subtle = crypto.webcrypto.subtle;
  const webPriv = await subtle.importKey('pkcs8', privateKey.export({ format: 'der', type: 'pkcs8' }), p.gen, true, ['sign']);
  const webPub = await subtle.importKey('spki', signer.publicKey, p.gen, true, ['verify']);
  return { algorithm: alg, privateKey, publicKey: signer.publicKey, signer, webKeys: { privateKey: webPriv as CryptoKey, publicKey: webPub as CryptoKey } };
}

/** [subject Name DER, SPKI DER] of a certificate, sliced from its TBSCertificate. */
export function certNameAndSpki(certDer: Buffer): { subject: Buffer; issuer: Buffer; spki: Buffer } {
  const tbs = der.children(der.children(der.readTop(certDer))[0]);
  const off = tbs[0].tag === 0xa0 ? 1 : 0;
  return { issuer: der.raw(tbs[off + 2]), subject: der.raw(tbs[off + 4]), spki: der.raw(tbs[off + 5]) };
}

export function randomSerial(len = 16): Buffer {
  const b = crypto.randomBytes(len);
  b[0] = (b[0] & 0x7f) | 0x01; // positive and no leading zero
  return b;
}

export async function makeTestCa(alg: KeyAlgorithm = 'ecdsa-p256', rootAlg: KeyAlgorithm = 'ecdsa-p256'): Promise<TestCa> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hsmca-test-'));
  const write = (name: string, data: Buffer | string) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, data);
    return p;
  };
  const crlUrl = 'http://crl.example.test/issuer.crl';
  const deltaCrlUrl = 'http://crl.example.test/issuer-delta.crl';
  const now = Date.now();
  const notBefore = new Date(now - 24 * 3600e3);
  const notAfter = new Date(now + 365 * 24 * 3600e3);
  let fileNo = 0;

  async function makeCert(opts: {
    name: string;
    key: TestKey;
    issuer?: TestCert;
    serial?: Buffer;
    extensions: x509.Extension[];
  }): Promise<TestCert> {
    const serial = opts.serial ?? randomSerial();
    const signingKey = opts.issuer ? opts.issuer.key : opts.key;
    const skiExt = await x509.SubjectKeyIdentifierExtension.create(opts.key.webKeys.publicKey);
    const extensions = [...opts.extensions, skiExt];
    if (opts.issuer) extensions.push(await x509.AuthorityKeyIdentifierExtension.create(opts.issuer.key.webKeys.publicKey));
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial.toString('hex'),
      subject: opts.name,
      issuer: opts.issuer ? opts.issuer.cert.subject : opts.name,
      notBefore,
      notAfter,
      publicKey: opts.key.webKeys.publicKey,
      signingKey: signingKey.webKeys.privateKey,
      signingAlgorithm: keyAlgParams(signingKey.algorithm).sign,
      extensions,
    });
    const certDer = Buffer.from(cert.rawData);
    const pem = der.pemEncode('CERTIFICATE', certDer);
    const n = fileNo++;
    const base = opts.name.replace(/[^a-zA-Z0-9]+/g, '_').slice(3) + '-' + n;
    return {
      der: certDer,
      pem,
      cert,
      key: opts.key,
      path: write(`${base}.pem`, pem),
      keyPath: write(`${base}.key`, opts.key.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string),
      serial,
      subjectName: certNameAndSpki(certDer).subject,
      ski: Buffer.from(skiExt.keyId, 'hex'),
    };
  }

  const F = x509.KeyUsageFlags;
  const root = await makeCert({
    name: 'CN=hsmca Test Root,O=hsmca tests',
    key: await makeKey(rootAlg, 'root'),
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(F.keyCertSign | F.cRLSign, true)],
  });
  const issuer = await makeCert({
    name: 'CN=hsmca Test Issuing CA,O=hsmca tests',
    key: await makeKey(alg, 'issuer'),
    issuer: root,
    extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(F.keyCertSign | F.cRLSign | F.digitalSignature, true)],
  });
  const ocsp = await makeCert({
    name: 'CN=hsmca Test OCSP Responder,O=hsmca tests',
    key: await makeKey(alg, 'ocsp'),
    issuer,
    extensions: [
      new x509.KeyUsagesExtension(F.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension(['1.3.6.1.5.5.7.3.9'], false),
      new x509.Extension('1.3.6.1.5.5.7.48.1.5', false, new Uint8Array([0x05, 0x00])), // id-pkix-ocsp-nocheck
    ],
  });
  const chainPath = write('chain.pem', root.pem + issuer.pem);

  let leafNo = 0;
  return {
    dir,
    root,
    issuer,
    ocsp,
    chainPath,
    crlUrl,
    deltaCrlUrl,
    write,
    async issueLeaf(serial?: Buffer) {
      return makeCert({
        name: `CN=leaf${leafNo++}.example.test`,
        key: await makeKey('ecdsa-p256', 'leaf'),
        issuer,
        serial,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(F.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension(['1.3.6.1.5.5.7.3.1'], false),
          new x509.CRLDistributionPointsExtension([crlUrl]),
        ],
      });
    },
    cleanup() {
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
  /** stdout and stderr together */
  out: string;
}

/** Runs the openssl CLI; never throws on a non-zero exit. */
export function openssl(args: string[], opts: { cwd?: string; input?: Buffer } = {}): RunResult {
  const r = spawnSync('openssl', args, { cwd: opts.cwd, input: opts.input, maxBuffer: 256 << 20 });
  if (r.error) throw r.error;
  const stdout = r.stdout.toString('latin1');
  const stderr = r.stderr.toString('latin1');
  return { status: r.status, stdout, stderr, out: stdout + stderr };
}
