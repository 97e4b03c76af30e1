import 'reflect-metadata';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  AuthorityKeyIdentifier,
  CRLNumber,
  CRLReason,
  CRLReasons,
  CertificateList,
  FreshestCRL,
  InvalidityDate,
  IssuingDistributionPoint,
  Version,
  id_ce_authorityKeyIdentifier,
  id_ce_cRLNumber,
  id_ce_cRLReasons,
  id_ce_deltaCRLIndicator,
  id_ce_freshestCRL,
  id_ce_invalidityDate,
  id_ce_issuingDistributionPoint,
} from '@peculiar/asn1-x509';
import * as der from '../src/asn1/der';
import { CrlParams, RevokedEntry, buildCrl } from '../src/ca/crl-encoder';
import type { KeyAlgorithm } from '../src/hsm/key-algorithm';
import { TestCa, TestCert, makeTestCa, openssl, randomSerial } from './helpers/test-ca';

const HOUR = 3600e3;
const DAY = 24 * HOUR;

async function* pages<T>(items: T[], pageSize = 100): AsyncIterable<T[]> {
  for (let i = 0; i < items.length; i += pageSize) yield items.slice(i, i + pageSize);
}

/** openssl's colon-separated upper-case hex */
const colonHex = (b: Buffer) => b.toString('hex').toUpperCase().match(/../g)!.join(':');
/** openssl prints serials as upper-case hex of the value, without leading zero octets */
const serialHex = (b: Buffer) => {
  let s = b;
  while (s.length > 1 && s[0] === 0) s = s.subarray(1);
  return s.toString('hex').toUpperCase();
};
const opensslDate = (d: Date) => {
  const m = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'][d.getUTCMonth()];
  const p = (n: number) => String(n).padStart(2, '0');
  return `${m} ${String(d.getUTCDate()).padStart(2, ' ')} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} ${d.getUTCFullYear()} GMT`;
};

/** verify a DER CRL's signature with node:crypto and return its parse by @peculiar/asn1-x509 */
function parseAndVerify(crl: Buffer, issuer: TestCert): CertificateList {
  const parsed = AsnConvert.parse(crl, CertificateList);
  const parts = der.children(der.readTop(crl));
  expect(parts).toHaveLength(3);
  const tbs = der.raw(parts[0]);
  const hash = issuer.key.algorithm === 'ecdsa-p384' ? 'sha384' : 'sha256';
  const key = crypto.createPublicKey({ key: issuer.key.publicKey, format: 'der', type: 'spki' });
  expect(crypto.verify(hash, tbs, { key, dsaEncoding: 'der' }, Buffer.from(parsed.signature))).toBe(true);
  // signature algorithm identical inside and outside the TBS
  expect(der.raw(der.children(parts[0])[1]).equals(der.raw(parts[1]))).toBe(true);
  return parsed;
}

describe.each<KeyAlgorithm>(['ecdsa-p256', 'ecdsa-p384', 'rsa-2048'])('CRL encoding, %s issuer', (alg) => {
  let ca: TestCa;
  let revokedLeaf: TestCert;
  let goodLeaf: TestCert;
  let n = 0;
  const thisUpdate = new Date(Math.floor((Date.now() - HOUR) / 1000) * 1000);
  const nextUpdate = new Date(thisUpdate.getTime() + 7 * DAY);
  const invalidity = new Date(Date.UTC(2024, 4, 6, 7, 8, 9));

  const params = (over: Partial<CrlParams> = {}): CrlParams => ({
    issuerName: ca.issuer.subjectName,
    authorityKeyId: ca.issuer.ski,
    crlNumber: 42n,
    thisUpdate,
    nextUpdate,
    signer: ca.issuer.key.signer,
    issuingDistributionPoint: ca.crlUrl,
    freshestCrl: ca.deltaCrlUrl,
    ...over,
  });

  function writeCrl(crl: Buffer): { der: string; pem: string } {
    const base = path.join(ca.dir, `crl-${n++}`);
    fs.writeFileSync(base + '.der', crl);
    fs.writeFileSync(base + '.pem', der.pemEncode('X509 CRL', crl));
    return { der: base + '.der', pem: base + '.pem' };
  }

  const crlText = (p: string) => openssl(['crl', '-in', p, '-inform', 'DER', '-CAfile', ca.chainPath, '-noout', '-text']);
  const verifyLeaf = (leaf: TestCert, crlPems: string[], extra: string[] = []) =>
    openssl(['verify', '-crl_check', ...extra, ...crlPems.flatMap((c) => ['-CRLfile', c]), '-CAfile', ca.chainPath, leaf.path]);

  let entries: RevokedEntry[];

  beforeAll(async () => {
    ca = await makeTestCa(alg);
    revokedLeaf = await ca.issueLeaf();
    goodLeaf = await ca.issueLeaf();
    entries = [
      { serial: revokedLeaf.serial, revokedAt: new Date(thisUpdate.getTime() - DAY), reason: 1, invalidityDate: invalidity },
      { serial: Buffer.from([0x01, 0x02, 0x03]), revokedAt: new Date(Date.UTC(2023, 0, 1)) }, // no reason
      { serial: Buffer.from([0x0a]), revokedAt: new Date(Date.UTC(2023, 0, 2)), reason: 0 }, // unspecified: omitted
      { serial: Buffer.from([0x00, 0x00, 0x99, 0x01]), revokedAt: new Date(Date.UTC(2023, 0, 3)), reason: 4 }, // leading zeros, high bit
      { serial: Buffer.alloc(20, 0x7f), revokedAt: new Date(Date.UTC(2023, 0, 4)), reason: 6, invalidityDate: new Date(Date.UTC(2022, 11, 31)) },
      { serial: Buffer.from([0x55]), revokedAt: new Date(Date.UTC(2023, 0, 5)), reason: 10 },
    ];
  });
  afterAll(() => ca?.cleanup());

  test('a complete CRL verifies and shows every extension and entry in openssl', async () => {
    const crl = await buildCrl(params(), pages(entries, 4), entries.length);
    const files = writeCrl(crl);
    const r = crlText(files.der);
    expect(r.status).toBe(0);
    expect(r.out).toContain('verify OK');
    expect(r.out).toContain('Version 2 (0x1)');
    expect(r.out).toMatch(/X509v3 CRL Number: *\n *42\n/);
    expect(r.out).toContain(colonHex(ca.issuer.ski));
    expect(r.out).toMatch(/X509v3 Authority Key Identifier: *\n/);
    expect(r.out).toMatch(/X509v3 Issuing Distribution Point: critical\n *Full Name:\n *URI:http:\/\/crl\.example\.test\/issuer\.crl\s*Only User Certificates\s*\n/);
    expect(r.out).toMatch(/X509v3 Freshest CRL: *\n *Full Name:\n *URI:http:\/\/crl\.example\.test\/issuer-delta\.crl\n/);
    expect(r.out).not.toContain('Delta CRL Indicator');
    expect(r.out).toContain(`Last Update: ${opensslDate(thisUpdate)}`);
    expect(r.out).toContain(`Next Update: ${opensslDate(nextUpdate)}`);

    // one block per entry, in order, with reason / invalidity date where expected
    const blocks = r.out.split('Serial Number: ').slice(1);
    expect(blocks).toHaveLength(entries.length);
    const reasonText: Record<number, string> = { 1: 'Key Compromise', 4: 'Superseded', 6: 'Certificate Hold', 10: 'AA Compromise' };
    entries.forEach((e, i) => {
      const b = blocks[i];
      expect(b.slice(0, b.indexOf('\n'))).toBe(serialHex(e.serial));
      expect(b).toContain(`Revocation Date: ${opensslDate(e.revokedAt)}`);
      if (e.reason) expect(b).toMatch(new RegExp(`X509v3 CRL Reason Code: *\\n *${reasonText[e.reason]}\\n`));
      else expect(b).not.toContain('Reason Code');
      if (e.invalidityDate) expect(b).toMatch(new RegExp(`Invalidity Date: *\\n *${opensslDate(e.invalidityDate)}`));
      else expect(b).not.toContain('Invalidity Date');
    });

    // openssl verify: the revoked leaf is rejected, the other one accepted
    const bad = verifyLeaf(revokedLeaf, [files.pem]);
    expect(bad.status).not.toBe(0);
    expect(bad.out).toContain('certificate revoked');
    const good = verifyLeaf(goodLeaf, [files.pem]);
    expect(good.out).toContain(': OK');
    expect(good.status).toBe(0);

    // second parser: @peculiar/asn1-x509
    const parsed = parseAndVerify(crl, ca.issuer);
    const tbs = parsed.tbsCertList;
    expect(tbs.version).toBe(Version.v2);
    expect(tbs.thisUpdate.getTime().getTime()).toBe(thisUpdate.getTime());
    expect(tbs.nextUpdate!.getTime().getTime()).toBe(nextUpdate.getTime());
    expect(tbs.thisUpdate.utcTime).toBeDefined(); // Time is UTCTime before 2050
    const exts = new Map(tbs.crlExtensions!.map((e) => [e.extnID, e]));
    expect([...exts.keys()].sort()).toEqual([id_ce_authorityKeyIdentifier, id_ce_cRLNumber, id_ce_issuingDistributionPoint, id_ce_freshestCRL].sort());
    const aki = AsnConvert.parse(exts.get(id_ce_authorityKeyIdentifier)!.extnValue, AuthorityKeyIdentifier);
    expect(Buffer.from(aki.keyIdentifier!.buffer).equals(ca.issuer.ski)).toBe(true);
    expect(exts.get(id_ce_authorityKeyIdentifier)!.critical).toBe(false);
    expect(AsnConvert.parse(exts.get(id_ce_cRLNumber)!.extnValue, CRLNumber).value).toBe(42);
    const idpExt = exts.get(id_ce_issuingDistributionPoint)!;
    expect(idpExt.critical).toBe(true);
    const idp = AsnConvert.parse(idpExt.extnValue, IssuingDistributionPoint);
    expect(idp.onlyContainsUserCerts).toBe(true);
    expect(idp.onlyContainsCACerts).toBe(false);
    expect(idp.distributionPoint!.fullName![0].uniformResourceIdentifier).toBe(ca.crlUrl);
    const freshest = AsnConvert.parse(exts.get(id_ce_freshestCRL)!.extnValue, FreshestCRL);
    expect(freshest[0].distributionPoint!.fullName![0].uniformResourceIdentifier).toBe(ca.deltaCrlUrl);
    expect(exts.get(id_ce_freshestCRL)!.critical).toBe(false);

    const revoked = tbs.revokedCertificates!;
    expect(revoked).toHaveLength(entries.length);
    revoked.forEach((rc, i) => {
      const e = entries[i];
      expect(serialHex(Buffer.from(rc.userCertificate))).toBe(serialHex(e.serial));
      expect(rc.revocationDate.getTime().getTime()).toBe(e.revokedAt.getTime());
      const ee = new Map((rc.crlEntryExtensions ?? []).map((x) => [x.extnID, x]));
      if (e.reason) {
        expect(ee.get(id_ce_cRLReasons)!.critical).toBe(false);
        expect(AsnConvert.parse(ee.get(id_ce_cRLReasons)!.extnValue, CRLReason).reason).toBe(e.reason as CRLReasons);
      } else {
        expect(ee.has(id_ce_cRLReasons)).toBe(false);
      }
      if (e.invalidityDate) {
        const inv = AsnConvert.parse(ee.get(id_ce_invalidityDate)!.extnValue, InvalidityDate);
        expect(inv.value.getTime()).toBe(e.invalidityDate.getTime());
        // GeneralizedTime, as RFC 5280 5.3.2 requires
        expect(Buffer.from(ee.get(id_ce_invalidityDate)!.extnValue.buffer)[0]).toBe(der.Tag.GENERALIZED_TIME);
      } else {
        expect(ee.has(id_ce_invalidityDate)).toBe(false);
      }
      if (!e.reason && !e.invalidityDate) expect(rc.crlEntryExtensions).toBeUndefined();
    });
  });

  test('an empty CRL omits revokedCertificates and verifies', async () => {
    const crl = await buildCrl(params({ crlNumber: 1n }), pages<RevokedEntry>([]));
    const files = writeCrl(crl);
    const r = crlText(files.der);
    expect(r.status).toBe(0);
    expect(r.out).toContain('verify OK');
    expect(r.out).toContain('No Revoked Certificates.');
    const tbsFields = der.children(der.children(der.readTop(crl))[0]);
    // version, signature, issuer, thisUpdate, nextUpdate, [0] crlExtensions: no empty SEQUENCE in between
    expect(tbsFields.map((f) => f.tag)).toEqual([0x02, 0x30, 0x30, 0x17, 0x17, 0xa0]);
    expect(parseAndVerify(crl, ca.issuer).tbsCertList.revokedCertificates).toBeUndefined();
    // and every certificate passes the revocation check against it
    expect(verifyLeaf(revokedLeaf, [files.pem]).status).toBe(0);

    // pages that are all empty give the same structure
    async function* emptyPages(): AsyncIterable<RevokedEntry[]> {
      yield [];
      yield [];
      yield [];
    }
    const crl2 = await buildCrl(params({ crlNumber: 2n }), emptyPages(), 0);
    expect(der.children(der.children(der.readTop(crl2))[0]).map((f) => f.tag)).toEqual([0x02, 0x30, 0x30, 0x17, 0x17, 0xa0]);
  });

  test('a delta CRL carries a critical Delta CRL Indicator and no Freshest CRL, and openssl uses it', async () => {
    const base = await buildCrl(params({ crlNumber: 100n }), pages(entries.slice(1), 2));
    const delta = await buildCrl(
      params({ crlNumber: 101n, deltaBaseCrlNumber: 100n }),
      pages([
        { serial: revokedLeaf.serial, revokedAt: new Date(thisUpdate.getTime() - HOUR), reason: 9 },
        { serial: Buffer.from([0x0a]), revokedAt: new Date(Date.UTC(2023, 0, 2)), reason: 8 }, // removeFromCRL: deltas only
      ]),
    );
    const df = writeCrl(delta);
    const bf = writeCrl(base);
    const r = crlText(df.der);
    expect(r.out).toContain('verify OK');
    expect(r.out).toMatch(/X509v3 Delta CRL Indicator: critical\n *100\n/);
    expect(r.out).toMatch(/X509v3 CRL Number: *\n *101\n/);
    expect(r.out).not.toContain('Freshest CRL');
    expect(r.out).toContain('Privilege Withdrawn');
    expect(r.out).toContain('Remove From CRL');
    expect(r.out).toContain('Only User Certificates');

    // the base alone does not revoke the leaf; base + delta does (openssl -use_deltas)
    expect(verifyLeaf(revokedLeaf, [bf.pem]).status).toBe(0);
    const withDelta = verifyLeaf(revokedLeaf, [bf.pem, df.pem], ['-use_deltas']);
    expect(withDelta.status).not.toBe(0);
    expect(withDelta.out).toContain('certificate revoked');
    expect(verifyLeaf(goodLeaf, [bf.pem, df.pem], ['-use_deltas']).status).toBe(0);

    const parsed = parseAndVerify(delta, ca.issuer);
    const exts = new Map(parsed.tbsCertList.crlExtensions!.map((e) => [e.extnID, e]));
    expect(exts.get(id_ce_deltaCRLIndicator)!.critical).toBe(true);
    expect(AsnConvert.parse(exts.get(id_ce_deltaCRLIndicator)!.extnValue, CRLNumber).value).toBe(100);
    expect(exts.has(id_ce_freshestCRL)).toBe(false);
  });

  test('without an IDP URL no IDP is written; onlyContainsUserCerts can be turned off', async () => {
    const noIdp = await buildCrl(params({ issuingDistributionPoint: undefined, freshestCrl: undefined }), pages(entries));
    const t1 = crlText(writeCrl(noIdp).der);
    expect(t1.out).toContain('verify OK');
    expect(t1.out).not.toContain('Issuing Distribution Point');
    expect(t1.out).not.toContain('Freshest CRL');
    const allCerts = await buildCrl(params({ onlyContainsUserCerts: false }), pages(entries));
    const t2 = crlText(writeCrl(allCerts).der);
    expect(t2.out).toMatch(/X509v3 Issuing Distribution Point: critical\n *Full Name:\n *URI:http:\/\/crl\.example\.test\/issuer\.crl\n/);
    expect(t2.out).not.toContain('Only User Certificates');
  });
});

describe('CRL encoding: streaming, sizes and validation', () => {
  let ca: TestCa;
  beforeAll(async () => {
    ca = await makeTestCa('ecdsa-p256');
  });
  afterAll(() => ca?.cleanup());

  const params = (over: Partial<CrlParams> = {}): CrlParams => ({
    issuerName: ca.issuer.subjectName,
    authorityKeyId: ca.issuer.ski,
    crlNumber: 7n,
    thisUpdate: new Date(Date.now() - HOUR),
    nextUpdate: new Date(Date.now() + DAY),
    signer: ca.issuer.key.signer,
    issuingDistributionPoint: ca.crlUrl,
    ...over,
  });

  function makeEntries(count: number): RevokedEntry[] {
    const out: RevokedEntry[] = [];
    for (let i = 0; i < count; i++) {
      out.push({
        serial: randomSerial(8 + (i % 13)),
        revokedAt: new Date(Date.UTC(2024, 0, 1) + i * 1000),
        reason: i % 3 === 0 ? undefined : [1, 3, 4, 5][i % 4],
        invalidityDate: i % 5 === 0 ? new Date(Date.UTC(2023, 11, 31) + i * 1000) : undefined,
      });
    }
    return out;
  }

  const tbsOf = (crl: Buffer) => der.raw(der.children(der.readTop(crl))[0]);

  test('the same TBS whatever the paging, the expectedCount hint or chunk spills', async () => {
    const entries = makeEntries(20000);
    const p = params();
    const reference = tbsOf(await buildCrl(p, pages(entries, 1000), entries.length));
    const variants = [
      await buildCrl(p, pages(entries, 1000)), // no hint: default first chunk, then spills
      await buildCrl(p, pages(entries, 7), 10), // hint far too small
      await buildCrl(p, pages(entries, 5000), 1_000_000), // hint far too large: trimmed
      await buildCrl(p, pages(entries, 1), entries.length),
    ];
    for (const v of variants) {
      expect(tbsOf(v).equals(reference)).toBe(true);
      // no large hidden slack behind the returned view
      expect(v.buffer.byteLength - v.length).toBeLessThan(Math.max(64 << 10, v.length >> 3) + 1);
    }
    const crl = variants[0];
    // (too many nodes for @peculiar/asn1-schema's parser: read the entries with our DER reader, and openssl below)
    const list = der.children(der.children(der.children(der.readTop(crl))[0])[5]);
    expect(list).toHaveLength(entries.length);
    list.forEach((rc, i) => {
      expect(der.readUnsignedInt(der.children(rc)[0]).equals(entries[i].serial)).toBe(true);
    });
    // the second parser (limited to 10,000 ASN.1 nodes) on a smaller CRL built the same way
    const small = entries.slice(0, 800);
    const smallCrl = await buildCrl(p, pages(small, 100), 1);
    const parsed = parseAndVerify(smallCrl, ca.issuer);
    expect(parsed.tbsCertList.revokedCertificates).toHaveLength(small.length);
    parsed.tbsCertList.revokedCertificates!.forEach((rc, i) => {
      expect(Buffer.from(rc.userCertificate).toString('hex').replace(/^00/, '')).toBe(small[i].serial.toString('hex'));
      expect(rc.revocationDate.getTime().getTime()).toBe(small[i].revokedAt.getTime());
    });
    const file = path.join(ca.dir, 'big.der');
    fs.writeFileSync(file, crl);
    const r = openssl(['crl', '-in', file, '-inform', 'DER', '-CAfile', ca.chainPath, '-noout']);
    expect(r.out).toContain('verify OK');
  });

  test('dates from 2050 on are GeneralizedTime, before are UTCTime', async () => {
    const crl = await buildCrl(
      params({ thisUpdate: new Date(Date.UTC(2049, 11, 31, 23, 59, 59)), nextUpdate: new Date(Date.UTC(2050, 0, 1)) }),
      pages([
        { serial: Buffer.from([1]), revokedAt: new Date(Date.UTC(2050, 5, 6, 7, 8, 9)) },
        { serial: Buffer.from([2]), revokedAt: new Date(Date.UTC(1999, 5, 6, 7, 8, 9)) },
      ]),
    );
    const tbs = der.children(der.children(der.readTop(crl))[0]);
    expect(der.content(tbs[3]).toString()).toBe('491231235959Z');
    expect(tbs[3].tag).toBe(der.Tag.UTC_TIME);
    expect(tbs[4].tag).toBe(der.Tag.GENERALIZED_TIME);
    expect(der.content(tbs[4]).toString()).toBe('20500101000000Z');
    const list = der.children(tbs[5]);
    const t0 = der.children(list[0])[1];
    expect(t0.tag).toBe(der.Tag.GENERALIZED_TIME);
    expect(der.content(t0).toString()).toBe('20500606070809Z');
    const t1 = der.children(list[1])[1];
    expect(t1.tag).toBe(der.Tag.UTC_TIME);
    expect(der.content(t1).toString()).toBe('990606070809Z');
    const parsed = AsnConvert.parse(crl, CertificateList);
    expect(parsed.tbsCertList.revokedCertificates![0].revocationDate.getTime().getTime()).toBe(Date.UTC(2050, 5, 6, 7, 8, 9));
  });

  test('serial INTEGERs are minimal and positive', async () => {
    const serials = [Buffer.from([0]), Buffer.from([0, 0, 0]), Buffer.from([0x80]), Buffer.from([0, 0x7f]), Buffer.from([0, 0, 0xff, 0])];
    const crl = await buildCrl(params(), pages(serials.map((serial) => ({ serial, revokedAt: new Date(Date.UTC(2024, 0, 1)) }))));
    const list = der.children(der.children(der.children(der.readTop(crl))[0])[5]);
    expect(list.map((e) => der.raw(der.children(e)[0]).toString('hex'))).toEqual(['020100', '020100', '02020080', '02017f', '020300ff00']);
  });

  test.each<[string, Partial<CrlParams>, RevokedEntry[]]>([
    ['reason 7', {}, [{ serial: Buffer.from([1]), revokedAt: new Date(), reason: 7 }]],
    ['reason 11', {}, [{ serial: Buffer.from([1]), revokedAt: new Date(), reason: 11 }]],
    ['reason -1', {}, [{ serial: Buffer.from([1]), revokedAt: new Date(), reason: -1 }]],
    ['removeFromCRL on a complete CRL', {}, [{ serial: Buffer.from([1]), revokedAt: new Date(), reason: 8 }]],
    ['an empty serial', {}, [{ serial: Buffer.alloc(0), revokedAt: new Date() }]],
    ['an invalid revocation date', {}, [{ serial: Buffer.from([1]), revokedAt: new Date(NaN) }]],
    ['an invalid invalidity date', {}, [{ serial: Buffer.from([1]), revokedAt: new Date(), invalidityDate: new Date(NaN) }]],
    ['nextUpdate before thisUpdate', { nextUpdate: new Date(Date.now() - 2 * HOUR) }, []],
    ['a delta base not below the CRL number', { crlNumber: 5n, deltaBaseCrlNumber: 5n }, []],
    ['a negative CRL number', { crlNumber: -1n }, []],
    ['a CRL number over 20 octets', { crlNumber: 1n << 160n }, []],
    ['an issuer that is not a DER Name', { issuerName: Buffer.from([0x04, 0x00]) }, []],
    ['an empty AKI', { authorityKeyId: Buffer.alloc(0) }, []],
    ['a non-ASCII IDP URL', { issuingDistributionPoint: 'http://exämple.test/x.crl' }, []],
  ])('refuses %s', async (_name, over, list) => {
    await expect(buildCrl(params(over), pages(list))).rejects.toThrow();
  });
});
