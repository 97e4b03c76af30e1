import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { generateKeyPairSync, sign } from 'node:crypto';
import * as der from '../src/asn1/der';
import { CaError } from '../src/errors';
import { parseCsrSync, csrFromPem, validDnsName } from '../src/ca/csr';
import { makeCsr } from './helpers/csr';
import { tempDir } from './helpers/harness';

/**
 * A CSR whose subject no certificate may carry (RFC 5280 4.1.2.6 and
 * appendix A) is refused at the CSR stage with 422 naming it, before the
 * pre-issuance lint would have to refuse the signature with a 500.
 */
describe('CSR subject attributes', () => {
  const dir = tempDir();
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** a CSR made by openssl with the given string mask (pkix gives BMPStrings for non-ASCII text) */
  function csrWithMask(subject: string, mask: string): string {
    const conf = path.join(dir, `${mask}.cnf`);
    fs.writeFileSync(conf, `[req]\ndistinguished_name=dn\nstring_mask=${mask}\nutf8=yes\n[dn]\n`);
    const key = makeCsr().keyFile;
    const r = spawnSync('openssl', ['req', '-new', '-key', key, '-config', conf, '-subj', subject, '-utf8'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    return r.stdout;
  }
  /** a CSR with a subject of attributes given as [oid, DER value], built without openssl (which refuses to write some of them) */
  function rawCsr(attributes: [string, Buffer][]): string {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const name = der.seq(...attributes.map(([oid, value]) => der.set(der.seq(der.oid(oid), value))));
    const info = der.seq(der.int(0), name, publicKey.export({ format: 'der', type: 'spki' }), der.ctx(0, Buffer.alloc(0)));
    const signature = sign('sha256', info, privateKey);
    return der.pemEncode('CERTIFICATE REQUEST', der.seq(info, der.seq(der.oid('1.2.840.10045.4.3.2')), der.bits(signature)));
  }
  const refusal = (pem: string): [string, string] | undefined => {
    try {
      parseCsrSync(csrFromPem(pem));
      return undefined;
    } catch (e) {
      if (!(e instanceof CaError)) throw e;
      return [e.kind, e.code];
    }
  };

  it.each<[string, () => string, [string, string] | undefined]>([
    ['UTF8String values', () => makeCsr({ subject: '/O=Exämple/CN=a.example' }).csr, undefined],
    ['PrintableString values', () => csrWithMask('/C=DE/O=Example/CN=a.example', 'nombstr'), undefined],
    ['a BMPString organisation', () => csrWithMask('/O=Exämple/CN=a.example', 'pkix'), ['policy', 'invalidSubject']],
    ['an organisation of 64 characters', () => rawCsr([['2.5.4.10', der.utf8('o'.repeat(64))]]), undefined],
    ['an organisation over 64 characters', () => rawCsr([['2.5.4.10', der.utf8('o'.repeat(65))]]), ['policy', 'nameTooLong']],
    ['a country of three letters', () => rawCsr([['2.5.4.6', der.printable('DEU')]]), ['policy', 'nameTooLong']],
    ['a country of digits', () => rawCsr([['2.5.4.6', der.printable('12')]]), ['policy', 'invalidSubject']],
    ['a country as UTF8String', () => rawCsr([['2.5.4.6', der.utf8('DE')]]), ['policy', 'invalidSubject']],
    ['an emailAddress as UTF8String', () => rawCsr([['1.2.840.113549.1.9.1', der.utf8('a@b.example')]]), ['policy', 'invalidSubject']],
    ['a T61String common name', () => rawCsr([['2.5.4.3', der.tlv(0x14, Buffer.from('a.example'))]]), ['policy', 'invalidSubject']],
    ['a PrintableString with a character outside its alphabet', () => csrWithMask('/O=Example & Co/CN=a.example', 'nombstr'), ['policy', 'invalidSubject']],
  ])('%s', (_what, csr, expected) => {
    expect(refusal(csr())).toEqual(expected);
  });

  it.each([
    ['xn--bcher-kva.example', true],
    ['xn--bcher-kva1.example', false],
    ['xn--.example', false],
    ['plain.example', true],
  ])('accepts %s as a DNS name: %s', (name, ok) => {
    expect(validDnsName(name)).toBe(ok);
  });
});
