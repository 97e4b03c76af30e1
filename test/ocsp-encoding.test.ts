import 'reflect-metadata';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { AsnConvert } from '@peculiar/asn1-schema';
import { CRLReasons, SubjectPublicKeyInfo } from '@peculiar/asn1-x509';
import { BasicOCSPResponse, OCSPRequest, OCSPResponse, OCSPResponseStatus, id_pkix_ocsp_basic } from '@peculiar/asn1-ocsp';
import * as der from '../src/asn1/der';
import { OID } from '../src/asn1/oids';
import { OcspMalformedError, parseOcspRequest } from '../src/ocsp/request';
import {
  CertStatus,
  buildOcspResponse,
  certIdFor,
  certIdMatchesIssuer,
  encodeSingleResponse,
  issuerHashes,
  ocspErrorResponse,
} from '../src/ocsp/response';
import { spkiKeyBits } from '../src/ca/certificate';
import type { KeyAlgorithm } from '../src/hsm/key-algorithm';
import { TestCa, certNameAndSpki, makeTestCa, openssl, randomSerial } from './helpers/test-ca';

const HOUR = 3600e3;

// ------------------------------------------------------------ synthetic requests (for malformed cases)

interface SynthOptions {
  certIds?: Buffer[];
  nonceExtnValue?: Buffer | null;
  extraExtensions?: Buffer[];
  requestList?: Buffer;
  version?: Buffer;
}

function ext(oid: string, value: Buffer, critical = false): Buffer {
  return critical ? der.seq(der.oid(oid), der.bool(true), der.octets(value)) : der.seq(der.oid(oid), der.octets(value));
}

function synthRequest(o: SynthOptions): Buffer {
  const certIds = o.certIds ?? [];
  const list = o.requestList ?? der.seq(...certIds.map((c) => der.seq(c)));
  const exts: Buffer[] = [];
  if (o.nonceExtnValue) exts.push(ext(OID.ocspNonce, o.nonceExtnValue));
  exts.push(...(o.extraExtensions ?? []));
  const tbsParts = [...(o.version ? [o.version] : []), list];
  if (exts.length) tbsParts.push(der.ctx(2, der.seq(...exts)));
  return der.seq(der.seq(...tbsParts));
}

const nonceOf = (n: number) => der.octets(crypto.randomBytes(n));

describe('OCSP encoding', () => {
  let ca: TestCa;
  let issuerName: Buffer;
  let issuerSpki: Buffer;
  let n = 0;
  const file = (name: string) => path.join(ca.dir, `${n++}-${name}`);

  /** runs `openssl ocsp -issuer issuer.pem <args> -reqout req.der` and returns the request and its path */
  function opensslRequest(args: string[]): { der: Buffer; path: string } {
    const p = file('req.der');
    const r = openssl(['ocsp', '-issuer', ca.issuer.path, ...args, '-reqout', p]);
    expect(r.status).toBe(0);
    return { der: fs.readFileSync(p), path: p };
  }

  const sampleCertId = () => certIdFor('sha1', issuerName, issuerSpki, randomSerial());

  beforeAll(async () => {
    ca = await makeTestCa('ecdsa-p256');
    ({ subject: issuerName, spki: issuerSpki } = certNameAndSpki(ca.issuer.der));
  });
  afterAll(() => ca?.cleanup());

  // ---------------------------------------------------------------- parsing openssl requests

  describe('parseOcspRequest on openssl requests', () => {
    test('one serial, SHA-1 CertID, with nonce', () => {
      const serial = randomSerial();
      const req = opensslRequest(['-serial', '0x' + serial.toString('hex')]);
      const info = parseOcspRequest(req.der);
      expect(info.signed).toBe(false);
      expect(info.certIds).toHaveLength(1);
      const c = info.certIds[0];
      expect(c.hash).toBe('sha1');
      expect(c.hashAlgorithm).toBe(OID.sha1);
      expect(c.serialNumber.equals(serial)).toBe(true);
      const h = issuerHashes(issuerName, issuerSpki);
      expect(c.issuerNameHash.equals(h.sha1.nameHash)).toBe(true);
      expect(c.issuerKeyHash.equals(h.sha1.keyHash)).toBe(true);
      expect(certIdMatchesIssuer(c, h)).toBe(true);
      // openssl writes the same CertID as certIdFor (NULL hash parameters)
      expect(c.raw.equals(certIdFor('sha1', issuerName, issuerSpki, serial))).toBe(true);
      // the nonce is the extnValue content: a DER OCTET STRING of 16 random octets
      expect(info.nonce).toBeDefined();
      expect(info.nonce![0]).toBe(0x04);
      expect(info.nonce![1]).toBe(16);
      expect(info.nonce).toHaveLength(18);
      expect(info.nonceValue!.equals(info.nonce!.subarray(2))).toBe(true);

      // second parser: @peculiar/asn1-ocsp agrees
      const p = AsnConvert.parse(req.der, OCSPRequest);
      const reqCert = p.tbsRequest.requestList[0].reqCert;
      expect(Buffer.from(reqCert.serialNumber).equals(serial)).toBe(true);
      expect(Buffer.from(reqCert.issuerKeyHash.buffer).equals(c.issuerKeyHash)).toBe(true);
      const nonceExt = p.tbsRequest.requestExtensions!.find((e) => e.extnID === OID.ocspNonce)!;
      expect(Buffer.from(nonceExt.extnValue.buffer).equals(info.nonce!)).toBe(true);
    });

    test('-no_nonce: no nonce', () => {
      const info = parseOcspRequest(opensslRequest(['-serial', '0x0123', '-no_nonce']).der);
      expect(info.nonce).toBeUndefined();
      expect(info.nonceValue).toBeUndefined();
      expect(info.certIds[0].serialNumber.equals(Buffer.from([0x01, 0x23]))).toBe(true);
    });

    test('-sha256 CertIDs', () => {
      const serial = randomSerial(20);
      const info = parseOcspRequest(opensslRequest(['-sha256', '-serial', '0x' + serial.toString('hex')]).der);
      const c = info.certIds[0];
      expect(c.hash).toBe('sha256');
      expect(c.issuerNameHash).toHaveLength(32);
      expect(certIdMatchesIssuer(c, issuerHashes(issuerName, issuerSpki))).toBe(true);
      expect(c.raw.equals(certIdFor('sha256', issuerName, issuerSpki, serial))).toBe(true);
    });

    test('several serials in one request keep their order', () => {
      const serials = [randomSerial(), Buffer.from([0x80, 0x01]), Buffer.from([0x05])];
      const args = serials.flatMap((s) => ['-serial', '0x' + s.toString('hex')]);
      const info = parseOcspRequest(opensslRequest(args).der);
      expect(info.certIds.map((c) => c.serialNumber.toString('hex'))).toEqual(serials.map((s) => s.toString('hex')));
    });

    test('a signed request (-signer/-signkey) is reported as signed, with its certificate', async () => {
      const leaf = await ca.issueLeaf();
      const req = opensslRequest(['-serial', '0x1234', '-signer', leaf.path, '-signkey', leaf.keyPath]);
      const info = parseOcspRequest(req.der);
      expect(info.signed).toBe(true);
      expect(info.signature!.certs).toHaveLength(1);
      expect(info.signature!.certs[0].equals(leaf.der)).toBe(true);
      expect(info.requestorName).toBeDefined();
      expect(info.requestorName![0]).toBe(0xa4); // directoryName
      // the signature covers tbsRequest: verify it with the leaf key
      const ok = crypto.verify('sha256', info.tbsRequest, { key: crypto.createPublicKey(leaf.key.privateKey), dsaEncoding: 'der' }, info.signature!.value);
      expect(ok).toBe(true);
      expect(info.certIds[0].serialNumber.toString('hex')).toBe('1234');
    });
  });

  // ---------------------------------------------------------------- synthetic edge cases that must parse

  describe('parseOcspRequest on well-formed synthetic requests', () => {
    test.each([1, 16, 32])('a %d-octet nonce is accepted and returned as the inner OCTET STRING TLV', (len) => {
      const nonceTlv = nonceOf(len);
      const info = parseOcspRequest(synthRequest({ certIds: [sampleCertId()], nonceExtnValue: nonceTlv }));
      expect(info.nonce!.equals(nonceTlv)).toBe(true);
      expect(info.nonceValue).toHaveLength(len);
    });

    test('an unknown hash algorithm parses, with hash undefined and the OID reported', () => {
      const md5 = '1.2.840.113549.2.5';
      const certId = der.seq(der.seq(der.oid(md5), der.nul()), der.octets(Buffer.alloc(16, 1)), der.octets(Buffer.alloc(16, 2)), der.int(7));
      const info = parseOcspRequest(synthRequest({ certIds: [certId] }));
      expect(info.certIds[0].hash).toBeUndefined();
      expect(info.certIds[0].hashAlgorithm).toBe(md5);
      expect(info.certIds[0].raw.equals(certId)).toBe(true);
      expect(certIdMatchesIssuer(info.certIds[0], issuerHashes(issuerName, issuerSpki))).toBe(false);
    });

    test('absent hash parameters, an explicit v1 version and a non-critical unknown extension are accepted', () => {
      const serial = randomSerial();
      const h = issuerHashes(issuerName, issuerSpki).sha256;
      const certId = der.seq(der.seq(der.oid(OID.sha256)), der.octets(h.nameHash), der.octets(h.keyHash), der.int(serial));
      const info = parseOcspRequest(
        synthRequest({ certIds: [certId], version: der.ctx(0, der.int(0)), extraExtensions: [ext('1.3.6.1.5.5.7.48.1.4', der.seq(der.oid(OID.ocspBasic)))] }),
      );
      expect(info.certIds[0].hash).toBe('sha256');
      expect(info.certIds[0].serialNumber.equals(serial)).toBe(true);
    });

    test('exactly maxCertIds CertIDs are accepted', () => {
      const certIds = Array.from({ length: 20 }, sampleCertId);
      expect(parseOcspRequest(synthRequest({ certIds })).certIds).toHaveLength(20);
      expect(parseOcspRequest(synthRequest({ certIds: certIds.slice(0, 5) }), { maxCertIds: 5 }).certIds).toHaveLength(5);
    });
  });

  // ---------------------------------------------------------------- malformed input

  describe('malformed requests throw OcspMalformedError', () => {
    let valid: Buffer;
    beforeAll(() => {
      valid = opensslRequest(['-serial', '0x0abc', '-serial', '0x0def']).der;
    });

    const prng = (seed: number, len: number) => {
      const out = Buffer.alloc(len);
      let x = seed;
      for (let i = 0; i < len; i++) {
        x = (x * 1103515245 + 12345) & 0x7fffffff;
        out[i] = x >> 16;
      }
      return out;
    };

    const cases: [string, () => Buffer | Parameters<typeof parseOcspRequest>][] = [
      ['empty input', () => Buffer.alloc(0)],
      ['random bytes (1)', () => prng(1, 64)],
      ['random bytes (2)', () => prng(2, 300)],
      ['random bytes after a SEQUENCE tag', () => Buffer.concat([Buffer.from([0x30, 0x40]), prng(3, 64)])],
      ['truncated by one byte', () => valid.subarray(0, valid.length - 1)],
      ['truncated to half', () => valid.subarray(0, valid.length >> 1)],
      ['only the outer header', () => valid.subarray(0, 2)],
      ['trailing zero byte', () => Buffer.concat([valid, Buffer.from([0])])],
      ['trailing garbage element', () => Buffer.concat([valid, Buffer.from([0x30, 0x00])])],
      ['outer tag SET instead of SEQUENCE', () => Buffer.concat([Buffer.from([0x31]), valid.subarray(1)])],
      ['outer tag OCTET STRING', () => Buffer.concat([Buffer.from([0x04]), valid.subarray(1)])],
      ['indefinite length', () => Buffer.concat([Buffer.from([0x30, 0x80]), valid.subarray(2), Buffer.from([0, 0])])],
      ['requestList as SET', () => synthRequest({ requestList: der.set(der.seq(sampleCertId())) })],
      ['CertID hash as BIT STRING', () => {
        const c = sampleCertId();
        const m = Buffer.from(c);
        m[m.indexOf(0x04, 4)] = 0x03;
        return synthRequest({ certIds: [m] });
      }],
      ['CertID serial as OCTET STRING', () => {
        const h = issuerHashes(issuerName, issuerSpki).sha1;
        return synthRequest({ certIds: [der.seq(der.seq(der.oid(OID.sha1), der.nul()), der.octets(h.nameHash), der.octets(h.keyHash), der.octets(Buffer.from([1])))] });
      }],
      ['CertID with three fields', () => {
        const h = issuerHashes(issuerName, issuerSpki).sha1;
        return synthRequest({ certIds: [der.seq(der.seq(der.oid(OID.sha1), der.nul()), der.octets(h.nameHash), der.octets(h.keyHash))] });
      }],
      ['negative serial', () => {
        const h = issuerHashes(issuerName, issuerSpki).sha1;
        return synthRequest({ certIds: [der.seq(der.seq(der.oid(OID.sha1), der.nul()), der.octets(h.nameHash), der.octets(h.keyHash), der.tlv(0x02, Buffer.from([0xff, 0x01])))] });
      }],
      ['non-minimal serial', () => {
        const h = issuerHashes(issuerName, issuerSpki).sha1;
        return synthRequest({ certIds: [der.seq(der.seq(der.oid(OID.sha1), der.nul()), der.octets(h.nameHash), der.octets(h.keyHash), der.tlv(0x02, Buffer.from([0x00, 0x01])))] });
      }],
      ['SHA-1 CertID with a 19-octet name hash', () => {
        const h = issuerHashes(issuerName, issuerSpki).sha1;
        return synthRequest({ certIds: [der.seq(der.seq(der.oid(OID.sha1), der.nul()), der.octets(h.nameHash.subarray(1)), der.octets(h.keyHash), der.int(1))] });
      }],
      ['hash parameters that are not NULL', () => {
        const h = issuerHashes(issuerName, issuerSpki).sha1;
        return synthRequest({ certIds: [der.seq(der.seq(der.oid(OID.sha1), der.int(0)), der.octets(h.nameHash), der.octets(h.keyHash), der.int(1))] });
      }],
      ['nonce of 33 octets', () => synthRequest({ certIds: [sampleCertId()], nonceExtnValue: nonceOf(33) })],
      ['nonce of 64 octets', () => synthRequest({ certIds: [sampleCertId()], nonceExtnValue: nonceOf(64) })],
      ['nonce of 200 octets', () => synthRequest({ certIds: [sampleCertId()], nonceExtnValue: nonceOf(200) })],
      ['empty nonce', () => synthRequest({ certIds: [sampleCertId()], nonceExtnValue: der.octets(Buffer.alloc(0)) })],
      ['nonce not wrapped in an OCTET STRING', () => synthRequest({ certIds: [sampleCertId()], nonceExtnValue: Buffer.from('0123456789abcdef') })],
      ['nonce with trailing bytes in extnValue', () => synthRequest({ certIds: [sampleCertId()], nonceExtnValue: Buffer.concat([nonceOf(16), Buffer.from([0])]) })],
      ['duplicate nonce extension', () => synthRequest({ certIds: [sampleCertId()], nonceExtnValue: nonceOf(16), extraExtensions: [ext(OID.ocspNonce, nonceOf(16))] })],
      ['unknown critical request extension', () => synthRequest({ certIds: [sampleCertId()], extraExtensions: [ext('1.2.3.4', der.nul(), true)] })],
      ['empty requestExtensions', () => der.seq(der.seq(der.seq(der.seq(sampleCertId())), der.ctx(2, der.seq())))],
      ['zero CertIDs', () => synthRequest({ certIds: [] })],
      ['zero CertIDs with a nonce', () => synthRequest({ certIds: [], nonceExtnValue: nonceOf(16) })],
      ['21 CertIDs (default limit 20)', () => synthRequest({ certIds: Array.from({ length: 21 }, sampleCertId) })],
      ['1000 CertIDs', () => synthRequest({ certIds: Array.from({ length: 1000 }, sampleCertId) })],
      ['3 CertIDs with maxCertIds 2', () => [synthRequest({ certIds: Array.from({ length: 3 }, sampleCertId) }), { maxCertIds: 2 }]],
      ['version v2', () => synthRequest({ certIds: [sampleCertId()], version: der.ctx(0, der.int(1)) })],
      ['Request that is not a SEQUENCE', () => synthRequest({ requestList: der.seq(der.set(sampleCertId())) })],
      ['unknown field after the extensions', () => der.seq(der.seq(der.seq(der.seq(sampleCertId())), der.ctx(3, der.nul())))],
      ['optionalSignature without [0] tag', () => der.seq(der.seq(der.seq(der.seq(sampleCertId()))), der.seq(der.seq(der.oid(OID.ecdsaWithSHA256)), der.bits(Buffer.alloc(8))))],
      ['three top-level fields', () => der.seq(der.seq(der.seq(der.seq(sampleCertId()))), der.ctx(0, der.seq()), der.nul())],
      ['non-minimal length octets', () => Buffer.concat([Buffer.from([0x30, 0x81, valid.length - 2]), valid.subarray(2)])],
      ['high tag number', () => Buffer.from([0x1f, 0x81, 0x01, 0x00])],
      ['huge declared length', () => Buffer.from([0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x00])],
    ];

    test.each(cases)('%s', (_name, make) => {
      const arg = make();
      const [input, limits] = Array.isArray(arg) ? arg : [arg, undefined];
      let thrown: unknown;
      try {
        parseOcspRequest(input, limits);
      } catch (e) {
        thrown = e;
      }
      expect(thrown).toBeInstanceOf(OcspMalformedError);
    });

    test('a non-buffer input throws OcspMalformedError', () => {
      expect(() => parseOcspRequest('0x30' as unknown as Buffer)).toThrow(OcspMalformedError);
      expect(() => parseOcspRequest(undefined as unknown as Buffer)).toThrow(OcspMalformedError);
    });

    const returnsOrThrowsMalformed = (input: Uint8Array): boolean => {
      try {
        parseOcspRequest(Buffer.from(input));
        return true;
      } catch (e) {
        return e instanceof OcspMalformedError;
      }
    };

    test('property: random bytes either parse or throw OcspMalformedError', () => {
      fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), returnsOrThrowsMalformed), { numRuns: 3000 });
      // random bytes behind a plausible outer header reach deeper into the parser
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 200 }), (body) =>
          returnsOrThrowsMalformed(Buffer.concat([der.header(0x30, body.length), Buffer.from(body)])),
        ),
        { numRuns: 3000 },
      );
    });

    test('property: mutated valid requests either parse or throw OcspMalformedError', () => {
      const signedLeafReq = opensslRequest(['-sha256', '-serial', '0x01']).der;
      const seeds = [valid, signedLeafReq, synthRequest({ certIds: [sampleCertId()], nonceExtnValue: nonceOf(32) })];
      const mutation = fc.oneof(
        fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
        fc.record({ kind: fc.constant('xor' as const), at: fc.nat(), value: fc.integer({ min: 1, max: 255 }) }),
        fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
        fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), value: fc.constant(0) }),
        fc.record({ kind: fc.constant('truncate' as const), at: fc.nat(), value: fc.constant(0) }),
      );
      fc.assert(
        fc.property(fc.integer({ min: 0, max: seeds.length - 1 }), fc.array(mutation, { minLength: 1, maxLength: 4 }), (which, muts) => {
          let b = Buffer.from(seeds[which]);
          for (const m of muts) {
            const at = b.length ? m.at % b.length : 0;
            if (m.kind === 'set' && b.length) b[at] = m.value;
            else if (m.kind === 'xor' && b.length) b[at] ^= m.value;
            else if (m.kind === 'insert') b = Buffer.concat([b.subarray(0, at), Buffer.from([m.value]), b.subarray(at)]);
            else if (m.kind === 'delete') b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1)]);
            else if (m.kind === 'truncate') b = b.subarray(0, at);
          }
          return returnsOrThrowsMalformed(b);
        }),
        { numRuns: 5000 },
      );
    });
  });

  // ---------------------------------------------------------------- responses

  describe.each<KeyAlgorithm>(['ecdsa-p256', 'ecdsa-p384', 'rsa-2048'])('responses signed with %s', (alg) => {
    let rca: TestCa;
    let rName: Buffer;
    let rSpki: Buffer;
    beforeAll(async () => {
      rca = alg === 'ecdsa-p256' ? ca : await makeTestCa(alg);
      ({ subject: rName, spki: rSpki } = certNameAndSpki(rca.issuer.der));
    });
    afterAll(() => {
      if (rca !== ca) rca.cleanup();
    });

    const responder = () => ({ signer: rca.ocsp.key.signer, certificate: rca.ocsp.der });

    function request(args: string[]) {
      const p = path.join(rca.dir, `${n++}-req.der`);
      const r = openssl(['ocsp', '-issuer', rca.issuer.path, ...args, '-reqout', p]);
      expect(r.status).toBe(0);
      return { der: fs.readFileSync(p), path: p };
    }

    function check(respDer: Buffer, reqPath: string, extra: string[] = []) {
      const p = path.join(rca.dir, `${n++}-resp.der`);
      fs.writeFileSync(p, respDer);
      return openssl(['ocsp', '-respin', p, '-issuer', rca.issuer.path, '-CAfile', rca.root.path, '-reqin', reqPath, '-resp_text', ...extra]);
    }

    test('good, revoked with reason, unknown and revoked without reason in one response, nonce echoed', async () => {
      const serials = [randomSerial(), randomSerial(), randomSerial(), randomSerial()];
      const req = request(serials.flatMap((s) => ['-serial', '0x' + s.toString('hex')]));
      const info = parseOcspRequest(req.der);
      const now = new Date();
      const thisUpdate = new Date(now.getTime() - HOUR);
      const nextUpdate = new Date(now.getTime() + 24 * HOUR);
      const revokedAt = new Date(Date.UTC(2024, 0, 2, 3, 4, 5));
      const statuses: CertStatus[] = [
        { kind: 'good' },
        { kind: 'revoked', revokedAt, reason: 1 },
        { kind: 'unknown' },
        { kind: 'revoked', revokedAt, reason: 0 },
      ];
      const singles = info.certIds.map((c, i) => encodeSingleResponse({ certId: c.raw, status: statuses[i], thisUpdate, nextUpdate }));
      const resp = await buildOcspResponse({ responder: responder(), producedAt: now, singleResponses: singles, nonce: info.nonce });

      const r = check(resp, req.path);
      expect(r.status).toBe(0);
      expect(r.out).toContain('Response verify OK');
      expect(r.out).not.toContain('Nonce Verify error');
      expect(r.out).not.toContain('WARNING: no nonce');
      expect(r.out).toContain('Response Status: successful (0x0)');
      expect(r.out).toContain('Response Type: Basic OCSP Response');
      expect(r.out).toContain('OCSP Nonce:');
      const keyHash = crypto.createHash('sha1').update(spkiKeyBits(rca.ocsp.key.publicKey)).digest('hex').toUpperCase();
      expect(r.out).toContain(`Responder Id: ${keyHash}`);
      const statusLines = r.out.match(/Cert Status: \w+/g);
      expect(statusLines).toEqual(['Cert Status: good', 'Cert Status: revoked', 'Cert Status: unknown', 'Cert Status: revoked']);
      // the reason is written for keyCompromise and omitted for unspecified
      expect(r.out.match(/Revocation Reason: .*/g)).toEqual(['Revocation Reason: keyCompromise (0x1)']);
      expect(r.out).toContain('Revocation Time: Jan  2 03:04:05 2024 GMT');
      for (const s of serials) expect(r.out).toContain(`Serial Number: ${s.toString('hex').toUpperCase()}`);

      // status lines from the summary (request built again from -serial, nonce check off)
      const p = path.join(rca.dir, `${n++}-resp.der`);
      fs.writeFileSync(p, resp);
      const summary = openssl([
        'ocsp', '-respin', p, '-issuer', rca.issuer.path, '-CAfile', rca.root.path, '-no_nonce',
        ...serials.flatMap((s) => ['-serial', '0x' + s.toString('hex')]),
      ]);
      expect(summary.out).toContain('Response verify OK');
      expect(summary.out).toContain(`0x${serials[0].toString('hex')}: good`);
      expect(summary.out).toContain(`0x${serials[1].toString('hex')}: revoked`);
      expect(summary.out).toContain(`0x${serials[2].toString('hex')}: unknown`);
      expect(summary.out).toContain('Reason: keyCompromise');

      // second parser: @peculiar/asn1-ocsp
      const parsed = AsnConvert.parse(resp, OCSPResponse);
      expect(parsed.responseStatus).toBe(OCSPResponseStatus.successful);
      expect(parsed.responseBytes!.responseType).toBe(id_pkix_ocsp_basic);
      const basic = AsnConvert.parse(parsed.responseBytes!.response.buffer, BasicOCSPResponse);
      const rd = basic.tbsResponseData;
      expect(Buffer.from(rd.responderID.byKey!.buffer).toString('hex').toUpperCase()).toBe(keyHash);
      expect(rd.producedAt.getTime()).toBe(Math.floor(now.getTime() / 1000) * 1000);
      expect(rd.responses).toHaveLength(4);
      expect(rd.responses[0].certStatus.good).toBeNull();
      expect(rd.responses[1].certStatus.revoked!.revocationReason!.reason).toBe(CRLReasons.keyCompromise);
      expect(rd.responses[1].certStatus.revoked!.revocationTime.getTime()).toBe(revokedAt.getTime());
      expect(rd.responses[2].certStatus.unknown).toBeDefined();
      expect(rd.responses[3].certStatus.revoked!.revocationReason).toBeUndefined();
      expect(rd.responses[0].nextUpdate!.getTime()).toBe(Math.floor(nextUpdate.getTime() / 1000) * 1000);
      const nonceExt = rd.responseExtensions!.find((e) => e.extnID === OID.ocspNonce)!;
      expect(nonceExt.critical).toBe(false);
      expect(Buffer.from(nonceExt.extnValue.buffer).equals(info.nonce!)).toBe(true);
      expect(basic.certs).toHaveLength(1);
      expect(Buffer.from(AsnConvert.serialize(basic.certs![0])).equals(rca.ocsp.der)).toBe(true);
      // signature over tbsResponseData verifies with the responder's key
      const tbs = der.raw(der.children(der.readTop(Buffer.from(parsed.responseBytes!.response.buffer)))[0]);
      const hash = alg === 'ecdsa-p384' ? 'sha384' : 'sha256';
      expect(crypto.verify(hash, tbs, { key: crypto.createPublicKey({ key: rca.ocsp.key.publicKey, format: 'der', type: 'spki' }), dsaEncoding: 'der' }, Buffer.from(basic.signature))).toBe(true);
    });

    test('SHA-256 CertIDs without nonce', async () => {
      const serial = randomSerial();
      const req = request(['-sha256', '-no_nonce', '-serial', '0x' + serial.toString('hex')]);
      const info = parseOcspRequest(req.der);
      expect(info.nonce).toBeUndefined();
      const now = new Date();
      const single = encodeSingleResponse({ certId: info.certIds[0].raw, status: { kind: 'good' }, thisUpdate: now, nextUpdate: new Date(now.getTime() + HOUR) });
      const resp = await buildOcspResponse({ responder: responder(), producedAt: now, singleResponses: [single] });
      const r = check(resp, req.path);
      expect(r.out).toContain('Response verify OK');
      expect(r.out).toContain('Hash Algorithm: sha256');
      expect(r.out).toContain('Cert Status: good');
      expect(r.out).not.toContain('OCSP Nonce');
    });

    test('a response for a certIdFor() CertID matches the request openssl builds', async () => {
      const serial = randomSerial();
      const req = request(['-serial', '0x' + serial.toString('hex')]);
      const info = parseOcspRequest(req.der);
      const now = new Date();
      const single = encodeSingleResponse({
        certId: certIdFor('sha1', rName, rSpki, serial),
        status: { kind: 'revoked', revokedAt: new Date(now.getTime() - 2 * HOUR), reason: 4 },
        thisUpdate: now,
        nextUpdate: new Date(now.getTime() + HOUR),
      });
      const resp = await buildOcspResponse({ responder: responder(), producedAt: now, singleResponses: [single], nonce: info.nonce });
      const r = check(resp, req.path);
      expect(r.out).toContain('Response verify OK');
      expect(r.out).toContain('Revocation Reason: superseded (0x4)');
    });
  });

  describe('nonce handling against openssl', () => {
    const responder = () => ({ signer: ca.ocsp.key.signer, certificate: ca.ocsp.der });
    async function respond(reqDer: Buffer, nonce: Buffer | undefined) {
      const info = parseOcspRequest(reqDer);
      const now = new Date();
      const single = encodeSingleResponse({ certId: info.certIds[0].raw, status: { kind: 'good' }, thisUpdate: now, nextUpdate: new Date(now.getTime() + HOUR) });
      return buildOcspResponse({ responder: responder(), producedAt: now, singleResponses: [single], nonce });
    }
    const check = (resp: Buffer, reqPath: string) => {
      const p = file('resp.der');
      fs.writeFileSync(p, resp);
      return openssl(['ocsp', '-respin', p, '-issuer', ca.issuer.path, '-CAfile', ca.root.path, '-reqin', reqPath]);
    };

    test('a different nonce fails openssl nonce verification', async () => {
      const req = opensslRequest(['-serial', '0x42']);
      const r = check(await respond(req.der, nonceOf(16)), req.path);
      expect(r.out).toContain('Nonce Verify error');
      expect(r.status).not.toBe(0);
    });

    test('omitting the nonce makes openssl warn', async () => {
      const req = opensslRequest(['-serial', '0x42']);
      const r = check(await respond(req.der, undefined), req.path);
      expect(r.out).toContain('WARNING: no nonce in response');
      expect(r.out).toContain('Response verify OK');
    });

    test.each([
      ['raw nonce octets', Buffer.from('30820102030405060708090a0b0c0d0e', 'hex')],
      ['a SEQUENCE', der.seq(der.octets(Buffer.alloc(16)))],
      ['an OCTET STRING with trailing bytes', Buffer.concat([nonceOf(16), Buffer.from([0])])],
      ['an empty buffer', Buffer.alloc(0)],
    ])('a nonce that is not one DER OCTET STRING (%s) is refused by the builder', async (_name, nonce) => {
      const req = opensslRequest(['-serial', '0x42']);
      await expect(respond(req.der, nonce)).rejects.toThrow(TypeError);
    });
  });

  describe('encodeSingleResponse', () => {
    const base = () => ({ certId: sampleCertId(), thisUpdate: new Date(), nextUpdate: new Date(Date.now() + HOUR) });

    test('good / unknown / revoked encodings', () => {
      const s = base();
      const good = encodeSingleResponse({ ...s, status: { kind: 'good' } });
      const parts = der.children(der.readTop(good));
      expect(der.raw(parts[0]).equals(s.certId)).toBe(true);
      expect(der.raw(parts[1]).toString('hex')).toBe('8000');
      expect(parts[2].tag).toBe(der.Tag.GENERALIZED_TIME);
      expect(parts[3].tag).toBe(0xa0);
      const unknown = der.children(der.readTop(encodeSingleResponse({ ...s, status: { kind: 'unknown' } })));
      expect(der.raw(unknown[1]).toString('hex')).toBe('8200');
      const revoked = der.children(der.readTop(encodeSingleResponse({ ...s, status: { kind: 'revoked', revokedAt: new Date(Date.UTC(2030, 5, 1)), reason: 9 } })));
      expect(der.raw(revoked[1]).toString('hex')).toBe('a116' + '180f' + Buffer.from('20300601000000Z').toString('hex') + 'a0030a0109');
    });

    test.each([7, 8, 11, -1, 1.5])('reason %p is refused', (reason) => {
      expect(() => encodeSingleResponse({ ...base(), status: { kind: 'revoked', revokedAt: new Date(), reason } })).toThrow(RangeError);
    });

    test('an invalid date or CertID is refused', () => {
      expect(() => encodeSingleResponse({ ...base(), thisUpdate: new Date(NaN), status: { kind: 'good' } })).toThrow(TypeError);
      expect(() => encodeSingleResponse({ ...base(), certId: Buffer.from([0x04, 0x00]), status: { kind: 'good' } })).toThrow();
    });
  });

  describe('ocspErrorResponse', () => {
    test.each([
      ['malformedRequest', 1, 'malformedrequest'],
      ['internalError', 2, 'internalerror'],
      ['tryLater', 3, 'trylater'],
      ['sigRequired', 5, 'sigrequired'],
      ['unauthorized', 6, 'unauthorized'],
    ] as const)('%s', (status, code, text) => {
      const b = ocspErrorResponse(status);
      expect(b.toString('hex')).toBe('30030a010' + code);
      const p = file('err.der');
      fs.writeFileSync(p, b);
      const r = openssl(['ocsp', '-respin', p, '-resp_text', '-noverify']);
      expect(r.out).toContain(`Responder Error: ${text} (${code})`);
      expect(AsnConvert.parse(b, OCSPResponse).responseStatus).toBe(code);
      // constant bytes, but a caller mutating its copy does not affect the next one
      b[4] = 0;
      expect(ocspErrorResponse(status)[4]).toBe(code);
    });
  });

  test('issuerHashes and certIdFor agree with OpenSSL-independent hashing', () => {
    const h = issuerHashes(issuerName, issuerSpki);
    for (const alg of ['sha1', 'sha256', 'sha384', 'sha512'] as const) {
      expect(h[alg].nameHash.equals(crypto.createHash(alg).update(issuerName).digest())).toBe(true);
      const spki = AsnConvert.parse(issuerSpki, SubjectPublicKeyInfo);
      expect(h[alg].keyHash.equals(crypto.createHash(alg).update(Buffer.from(spki.subjectPublicKey)).digest())).toBe(true);
      const id = certIdFor(alg, issuerName, issuerSpki, Buffer.from([0x00, 0x00, 0x81]));
      const parsed = parseOcspRequest(synthRequest({ certIds: [id] })).certIds[0];
      expect(parsed.hash).toBe(alg);
      expect(parsed.serialNumber.toString('hex')).toBe('81');
      expect(parsed.issuerKeyHash.equals(h[alg].keyHash)).toBe(true);
    }
  });
});
