import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import { AsnConvert } from '@peculiar/asn1-schema';
import { BasicOCSPResponse, OCSPResponse } from '@peculiar/asn1-ocsp';
import * as der from '../src/asn1/der';
import { OID } from '../src/asn1/oids';
import { FakeClock } from '../src/clock';
import { silentLogger } from '../src/log';
import { OcspResponder } from '../src/ocsp/responder';
import { certIdFor } from '../src/ocsp/response';
import { makeCsr } from './helpers/csr';
import { backends, startTestCa, TestCa } from './helpers/harness';
import { certNameAndSpki } from './helpers/test-ca';

/**
 * What a stranger can make the OCSP responder do: random serials and nonces
 * cannot make the HSM sign without limit nor push real certificates'
 * pre-signed responses out of the cache. And a flood of idle connections
 * cannot hold every socket of the process.
 */
describe.each(backends({ pkcs11: false }))('OCSP under abuse ($name)', (backend) => {
  let ca: TestCa;
  let issuer: { subject: Buffer; spki: Buffer };
  let realSerial: Buffer;
  beforeAll(async () => {
    ca = await startTestCa(backend, { env: { HSMCA_OCSP_SIGNATURES_PER_SECOND: '3' } });
    issuer = certNameAndSpki(ca.svc.core.hierarchy.issuing.certificate);
    const r = await ca.api('POST', '/api/v1/certificates', { body: { csr: makeCsr({ sans: 'DNS:ocsp-abuse.example' }).csr } });
    expect(r.status).toBe(201);
    realSerial = Buffer.from(r.body.serialNumber, 'hex');
  });
  afterAll(async () => ca?.stop());

  const request = (serial: Buffer, nonce?: Buffer) => {
    const one = der.seq(certIdFor('sha1', issuer.subject, issuer.spki, serial));
    const tbs = nonce ? der.seq(der.seq(one), der.ctx(2, der.seq(der.seq(der.oid(OID.ocspNonce), der.octets(der.octets(nonce)))))) : der.seq(der.seq(one));
    return der.seq(tbs);
  };
  /** the response's status, whether it carries a nonce, and its certificate status */
  const read = (body: Buffer) => {
    const r = AsnConvert.parse(body, OCSPResponse);
    if (r.responseStatus !== 0) return { status: r.responseStatus, nonce: false, cert: undefined };
    const basic = AsnConvert.parse(r.responseBytes!.response.buffer, BasicOCSPResponse);
    const nonce = (basic.tbsResponseData.responseExtensions ?? []).some((e) => e.extnID === OID.ocspNonce);
    const s = basic.tbsResponseData.responses[0].certStatus;
    return { status: 0, nonce, cert: s.good !== undefined ? 'good' : s.revoked ? 'revoked' : 'unknown' };
  };
  const responder = (onDemandSignaturesPerSecond: number, cacheSize = 100) => {
    const core = ca.svc.core;
    return new OcspResponder({
      issuer: core.hierarchy.issuing,
      responders: core.responders,
      certificates: core.certificates,
      clock: new FakeClock(new Date()),
      log: silentLogger,
      settings: { validitySeconds: 3600, refreshAtFraction: 0.5, cacheSize, onDemandSignaturesPerSecond },
    });
  };

  it('keeps a real certificate’s pre-signed response however many unknown serials are asked for', async () => {
    const r = responder(0, 10);
    const first = (await r.respond(request(realSerial))).body;
    for (let i = 0; i < 50; i++) expect(read((await r.respond(request(randomBytes(16)))).body).cert).toBe('unknown');
    // the same bytes: served from the cache, not signed again (ECDSA signatures differ each time)
    expect((await r.respond(request(realSerial))).body.equals(first)).toBe(true);
  });

  it('signs unknown serials within the budget and asks the rest to try later', async () => {
    const r = responder(5);
    const answers = await Promise.all(Array.from({ length: 20 }, () => r.respond(request(randomBytes(16)))));
    const statuses = answers.map((a) => read(a.body));
    expect(statuses.filter((s) => s.status === 0 && s.cert === 'unknown')).toHaveLength(5);
    expect(statuses.filter((s) => s.status === 3)).toHaveLength(15); // tryLater
  });

  it('echoes nonces within the budget; past it, answers from the pre-signed response without the nonce', async () => {
    const r = responder(4);
    const statuses: ReturnType<typeof read>[] = [];
    for (let i = 0; i < 12; i++) statuses.push(read((await r.respond(request(realSerial, randomBytes(16)))).body));
    expect(statuses.every((s) => s.status === 0 && s.cert === 'good')).toBe(true);
    expect(statuses.filter((s) => s.nonce)).toHaveLength(4);
  });

  it('applies HSMCA_OCSP_SIGNATURES_PER_SECOND to the served responder', async () => {
    const posts = await Promise.all(
      Array.from({ length: 12 }, async () => {
        const res = await fetch(`${ca.url}/ocsp`, { method: 'POST', headers: { 'content-type': 'application/ocsp-request' }, body: request(randomBytes(16)) });
        return read(Buffer.from(await res.arrayBuffer())).status;
      }),
    );
    expect(posts.filter((s) => s === 3).length).toBeGreaterThanOrEqual(6);
    expect(posts.filter((s) => s === 0).length).toBeGreaterThanOrEqual(1);
    // a real certificate is still answered, from its pre-signed response
    const real = await fetch(`${ca.url}/ocsp`, { method: 'POST', body: request(realSerial) });
    expect(read(Buffer.from(await real.arrayBuffer()))).toMatchObject({ status: 0, cert: 'good' });
  });
});

describe('connection limit', () => {
  let ca: TestCa;
  beforeAll(async () => {
    ca = await startTestCa(backends({ pkcs11: false })[0], { env: { HSMCA_MAX_CONNECTIONS: '2' } });
  });
  afterAll(async () => ca?.stop());

  const connect = () =>
    new Promise<net.Socket>((resolve, reject) => {
      const u = new URL(ca.url);
      const s = net.connect(Number(u.port), u.hostname, () => resolve(s));
      s.on('error', reject);
    });
  /** sends a request and reads until the server closes; '' when it closed without answering */
  const ask = (s: net.Socket) =>
    new Promise<string>((resolve) => {
      let text = '';
      s.on('data', (d) => (text += d));
      s.on('close', () => resolve(text));
      s.on('error', () => undefined);
      s.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    });

  it('closes connections past HSMCA_MAX_CONNECTIONS at once, and takes new ones when others close', async () => {
    const idle = [await connect(), await connect()];
    await new Promise((r) => setTimeout(r, 100));
    expect(await ask(await connect())).toBe('');
    idle[0].destroy();
    await new Promise((r) => setTimeout(r, 100));
    expect(await ask(await connect())).toMatch(/^HTTP\/1.1 200/);
    idle[1].destroy();
  });
});
