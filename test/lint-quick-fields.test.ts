import * as crypto from 'node:crypto';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import * as asn from '@peculiar/asn1-x509';
import { LintGeneralNames } from '../src/ca/lint/parsed-certificate';
import { quickExtension, quickGeneralNames, quickKeyIdentifier, quickName, quickSpki, quickValidity } from '../src/ca/lint/quick-fields';
import { parseTbsCertificate } from '../src/ca/lint/tbs-fields';
import { TlvError } from '../src/ca/lint/tlv-walk';

/*
 * The lint reads the per-certificate fields with its quick readers and falls
 * back to the @peculiar/asn1-x509 schemas for any layout they refuse. Both
 * must give the same reading: each input below is read both ways and the
 * results compared field by field. Inputs are written byte by byte here, not
 * with hsmca's DER writer.
 */

const hdr = (tag: number, len: number): Buffer =>
  len < 0x80 ? Buffer.from([tag, len]) : len < 0x100 ? Buffer.from([tag, 0x81, len]) : Buffer.from([tag, 0x82, len >> 8, len & 0xff]);
const t = (tag: number, ...content: Buffer[]): Buffer => {
  const c = Buffer.concat(content);
  return Buffer.concat([hdr(tag, c.length), c]);
};
const seq = (...c: Buffer[]) => t(0x30, ...c);
const latin1 = (s: string) => Buffer.from(s, 'latin1');
const OID = {
  cn: Buffer.from('0603550403', 'hex'),
  c: Buffer.from('0603550406', 'hex'),
  o: Buffer.from('060355040a', 'hex'),
  email: Buffer.from('06092a864886f70d010901', 'hex'),
  longArc: Buffer.from('06092b0601040182fb3a01', 'hex'), // 1.3.6.1.4.1.32186.1: a multi-octet arc
  san: Buffer.from('0603551d11', 'hex'),
  ski: Buffer.from('0603551d0e', 'hex'),
  ku: Buffer.from('0603551d0f', 'hex'),
};
const atv = (oid: Buffer, tag: number, value: Buffer) => seq(oid, t(tag, value));
const rdn = (...atvs: Buffer[]) => t(0x31, ...atvs);

/** A reading as plain data: dates as ISO text, octets as hex, undefined fields left out. */
function plain(v: unknown): unknown {
  if (v instanceof Date) return v.toISOString();
  if (v instanceof ArrayBuffer) return Buffer.from(v).toString('hex');
  if (v instanceof OctetString) return Buffer.from(v.buffer).toString('hex');
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = plain(x);
    return out;
  }
  return v;
}

function agrees<T>(bytes: Buffer, type: new () => T, quick: (b: Buffer) => T): void {
  const q = quick(bytes);
  expect(q).toBeInstanceOf(type);
  expect(plain(q)).toEqual(plain(AsnConvert.parse(bytes, type)));
}

function refuses(bytes: Buffer, quick: (b: Buffer) => unknown): void {
  expect(() => quick(bytes)).toThrow(TlvError);
}

const spkiOf = (key: crypto.KeyObject) => key.export({ format: 'der', type: 'spki' });
const algorithm = (b: Buffer) => AsnConvert.parse(b, asn.AlgorithmIdentifier);

describe('quick readers agree with the @peculiar schemas', () => {
  it.each([
    ['UTCTime in 2026', t(0x17, latin1('261204120000Z')), t(0x17, latin1('270304235959Z'))],
    ['UTCTime in 1999 and 2049', t(0x17, latin1('991231235959Z')), t(0x17, latin1('491231235959Z'))],
    ['GeneralizedTime from 2050 and 9999', t(0x18, latin1('20500101000000Z')), t(0x18, latin1('99991231235959Z'))],
    ['GeneralizedTime before 2050 (a lint finding, read as it is)', t(0x18, latin1('20261204120000Z')), t(0x17, latin1('270304235959Z'))],
    ['29 February in a leap year', t(0x17, latin1('280229000000Z')), t(0x18, latin1('20520229000000Z'))],
  ])('Validity: %s', (_what, a, b) => agrees(seq(a, b), asn.Validity, quickValidity));

  it.each([
    ['UTCTime without seconds', t(0x17, latin1('2612041200Z'))],
    ['UTCTime with an offset', t(0x17, latin1('261204120000+0100'))],
    ['GeneralizedTime with a fraction', t(0x18, latin1('20501204120000.5Z'))],
    ['30 February', t(0x17, latin1('260230000000Z'))],
    ['a letter among the digits', t(0x17, latin1('26120412000aZ'))],
  ])('Validity: %s goes to the schema', (_what, a) => {
    refuses(seq(a, t(0x17, latin1('270304235959Z'))), quickValidity);
  });

  it.each([
    ['empty', seq()],
    ['UTF8String commonName', seq(rdn(atv(OID.cn, 0x0c, Buffer.from('www.example.test'))))],
    ['non-ASCII UTF-8', seq(rdn(atv(OID.cn, 0x0c, Buffer.from('Bücher 名前 🔐'))))],
    ['country, organization and email', seq(rdn(atv(OID.c, 0x13, latin1('DE'))), rdn(atv(OID.o, 0x0c, Buffer.from('Example GmbH'))), rdn(atv(OID.email, 0x16, latin1('a@example.test'))))],
    ['a multi-valued RDN', seq(rdn(atv(OID.cn, 0x0c, Buffer.from('a')), atv(OID.o, 0x13, latin1('b'))))],
    ['PrintableString with a byte above 0x7f (a lint finding)', seq(rdn(atv(OID.cn, 0x13, Buffer.from([0x61, 0xe9, 0x62]))))],
    ['a private OID with a multi-octet arc', seq(rdn(atv(OID.longArc, 0x0c, Buffer.from('x'))))],
    ['a long name (two-octet lengths)', seq(rdn(atv(OID.cn, 0x0c, Buffer.from('n'.repeat(300)))))],
  ])('Name: %s', (_what, bytes) => agrees(bytes, asn.Name, quickName));

  it.each([
    ['BMPString', seq(rdn(atv(OID.cn, 0x1e, Buffer.from('0061', 'hex'))))],
    ['TeletexString', seq(rdn(atv(OID.cn, 0x14, latin1('a'))))],
    ['UTF8String that is not UTF-8', seq(rdn(atv(OID.cn, 0x0c, Buffer.from([0x61, 0xff]))))],
    ['an RDN that is not a SET', seq(seq(atv(OID.cn, 0x0c, Buffer.from('a'))))],
    ['an OID with a non-minimal arc', seq(rdn(atv(Buffer.from('0604558004 03'.replace(' ', ''), 'hex'), 0x0c, Buffer.from('a'))))],
  ])('Name: %s goes to the schema', (_what, bytes) => refuses(bytes, quickName));

  it.each([
    ['EC P-256', spkiOf(crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey)],
    ['EC P-384', spkiOf(crypto.generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).publicKey)],
    ['RSA 2048', spkiOf(crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey)],
    ['Ed25519', spkiOf(crypto.generateKeyPairSync('ed25519').publicKey)],
  ])('SubjectPublicKeyInfo: %s', (_what, bytes) => agrees(bytes, asn.SubjectPublicKeyInfo, (b) => quickSpki(b, algorithm)));

  it('SubjectPublicKeyInfo: a BIT STRING with unused bits goes to the schema', () => {
    refuses(seq(seq(Buffer.from('06072a8648ce3d0201', 'hex')), t(0x03, Buffer.from([0x01, 0x04, 0x80]))), (b) => quickSpki(b, algorithm));
  });

  it.each([
    ['non-critical', seq(OID.san, t(0x04, seq(t(0x82, latin1('a.test')))))],
    ['critical', seq(OID.ku, t(0x01, Buffer.from([0xff])), t(0x04, Buffer.from('03020780', 'hex')))],
    ['an empty value', seq(OID.ski, t(0x04))],
  ])('Extension: %s', (_what, bytes) => agrees(bytes, asn.Extension, quickExtension));

  it.each([
    ['critical written as FALSE (not DER)', seq(OID.ku, t(0x01, Buffer.from([0x00])), t(0x04, Buffer.from('03020780', 'hex')))],
    ['extnValue that is not an OCTET STRING', seq(OID.ku, t(0x03, Buffer.from('0780', 'hex')))],
  ])('Extension: %s goes to the schema', (_what, bytes) => refuses(bytes, quickExtension));

  it.each([
    ['DNS names', seq(t(0x82, latin1('www.example.test')), t(0x82, latin1('*.example.test')))],
    ['IPv4, IPv6 and an 8-octet iPAddress (a lint finding, kept as octets)', seq(t(0x87, Buffer.from([10, 0, 0, 1])), t(0x87, Buffer.alloc(16, 1)), t(0x87, Buffer.alloc(8, 2)))],
    ['email and URI', seq(t(0x81, latin1('a@example.test')), t(0x86, latin1('https://example.test/x')))],
    ['a DNS name with bytes above 0x7f (a lint finding)', seq(t(0x82, Buffer.from('bücher.test')))],
    ['none (a lint finding)', seq()],
  ])('GeneralNames: %s', (_what, bytes) => agrees(bytes, LintGeneralNames, quickGeneralNames));

  it.each([
    ['otherName', seq(t(0xa0, Buffer.from('06032a0304', 'hex'), t(0xa0, t(0x0c, Buffer.from('x')))))],
    ['directoryName', seq(t(0xa4, seq(rdn(atv(OID.cn, 0x0c, Buffer.from('a'))))))],
    ['registeredID', seq(t(0x88, Buffer.from('2a03', 'hex')))],
  ])('GeneralNames: %s goes to the schema', (_what, bytes) => {
    refuses(bytes, quickGeneralNames);
    expect(() => AsnConvert.parse(bytes, LintGeneralNames)).not.toThrow();
  });

  it.each([
    ['20 octets', t(0x04, crypto.randomBytes(20))],
    ['empty', t(0x04)],
  ])('SubjectKeyIdentifier: %s', (_what, bytes) => agrees(bytes, asn.SubjectKeyIdentifier, quickKeyIdentifier));

  it('a whole TBSCertificate reads the same through the quick readers and through the schema, and so does one they refuse', () => {
    const spki = spkiOf(crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey);
    const issuer = seq(rdn(atv(OID.cn, 0x0c, Buffer.from('Issuing CA'))));
    const tbs = (subject: Buffer, notBefore: Buffer) =>
      seq(
        t(0xa0, t(0x02, Buffer.from([2]))),
        t(0x02, Buffer.from('4a1b2c3d4e5f60718293a4b5c6d7e8f9', 'hex')),
        seq(Buffer.from('06082a8648ce3d040302', 'hex')),
        issuer,
        seq(notBefore, t(0x17, latin1('270304235959Z'))),
        subject,
        spki,
        t(
          0xa3,
          seq(
            seq(OID.ku, t(0x01, Buffer.from([0xff])), t(0x04, Buffer.from('03020780', 'hex'))),
            seq(OID.ski, t(0x04, t(0x04, crypto.randomBytes(20)))),
            seq(OID.san, t(0x04, seq(t(0x82, latin1('www.example.test')), t(0x87, Buffer.from([10, 0, 0, 1]))))),
          ),
        ),
      );
    const plainTbs = seq(rdn(atv(OID.cn, 0x0c, Buffer.from('www.example.test'))));
    const bmpTbs = seq(rdn(atv(OID.cn, 0x1e, Buffer.from('00770077', 'hex'))));
    const usual = tbs(plainTbs, t(0x17, latin1('261204120000Z')));
    const unusual = tbs(bmpTbs, t(0x17, latin1('2612041200Z')));
    for (const der of [usual, unusual]) expect(plain(parseTbsCertificate(der))).toEqual(plain(AsnConvert.parse(der, asn.TBSCertificate)));
    // written back by the schema, the quick reading is the same bytes
    expect(Buffer.from(AsnConvert.serialize(parseTbsCertificate(usual))).toString('hex')).toBe(usual.toString('hex'));
  });
});
