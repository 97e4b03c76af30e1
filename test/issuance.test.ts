import * as fs from 'node:fs';
import * as zlib from 'node:zlib';
import { X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { backends, run, runStatus, startTestCa, TestCa } from './helpers/harness';
import { makeCsr, TestKeyType, writeTemp } from './helpers/csr';

/** The whole issuance path over real HTTP, judged by the openssl CLI. */
describe.each(backends())('issuance and revocation over HTTP ($name)', (backend) => {
  let ca: TestCa;
  let rootFile: string;
  let issuerFile: string;
  let requester: string;
  let otherRequester: string;

  beforeAll(async () => {
    ca = await startTestCa(backend);
    const r = await ca.api('GET', '/api/v1/ca', { token: null });
    expect(r.status).toBe(200);
    rootFile = writeTemp('root.pem', r.body.root);
    issuerFile = writeTemp('issuer.pem', r.body.issuer);
    requester = (await ca.svc.core.tokens.create({ role: 'requester', name: 'svc-a' })).token;
    otherRequester = (await ca.svc.core.tokens.create({ role: 'requester', name: 'svc-b' })).token;
  });
  afterAll(async () => {
    await ca?.stop();
  });

  it('publishes the CA chain as JSON and DER', async () => {
    const r = await ca.api('GET', '/api/v1/ca', { token: null });
    expect(r.body.chain).toEqual([r.body.issuer, r.body.root]);
    const res = await fetch(`${ca.url}/ca/issuer.crt`);
    expect(res.headers.get('content-type')).toBe('application/pkix-cert');
    const issuer = new X509Certificate(Buffer.from(await res.arrayBuffer()));
    expect(issuer.ca).toBe(true);
    expect(issuer.toString()).toBe(new X509Certificate(r.body.issuer).toString());
    const text = run('openssl', ['x509', '-in', issuerFile, '-noout', '-text']);
    expect(text).toMatch(/CA:TRUE, pathlen:0/);
    expect(text).toMatch(/Certificate Sign, CRL Sign/);
    expect(run('openssl', ['verify', '-CAfile', rootFile, issuerFile])).toMatch(/: OK/);
  });

  it.each<[TestKeyType, RegExp]>([
    ['ec-p256', /Public Key Algorithm: id-ecPublicKey[\s\S]*NIST CURVE: P-256/],
    ['ec-p384', /NIST CURVE: P-384/],
    ['rsa-2048', /Public-Key: \(2048 bit\)/],
  ])('issues a tls-server certificate for a %s CSR that openssl verifies', async (key, keyText) => {
    const { csr } = makeCsr({ key, subject: '/CN=api.example.internal', sans: 'DNS:api.example.internal,DNS:www.example.internal,IP:10.1.2.3' });
    const r = await ca.api('POST', '/api/v1/certificates', { token: requester, body: { csr, profile: 'tls-server', validityDays: 30 } });
    expect(r.status).toBe(201);
    expect(r.body.serialNumber).toMatch(/^[0-9a-f]{16,40}$/);
    expect(r.body.chain).toHaveLength(2);
    const certFile = writeTemp('leaf.pem', r.body.certificate);
    expect(run('openssl', ['verify', '-CAfile', rootFile, '-untrusted', issuerFile, '-purpose', 'sslserver', certFile])).toMatch(/: OK/);
    const text = run('openssl', ['x509', '-in', certFile, '-noout', '-text']);
    expect(text).toMatch(/Version: 3 \(0x2\)/);
    expect(text).toMatch(keyText);
    expect(text).toMatch(/Signature Algorithm: ecdsa-with-SHA256/);
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
    expect(text).toMatch(key.startsWith('rsa') ? /X509v3 Key Usage: critical\s+Digital Signature, Key Encipherment/ : /X509v3 Key Usage: critical\s+Digital Signature\n/);
    expect(text).toMatch(/X509v3 Extended Key Usage:\s+TLS Web Server Authentication\n/);
    expect(text).toMatch(/X509v3 Subject Alternative Name:\s+DNS:api.example.internal, DNS:www.example.internal, IP Address:10.1.2.3/);
    expect(text).toMatch(/X509v3 Authority Key Identifier:/);
    expect(text).toMatch(/X509v3 Subject Key Identifier:/);
    expect(text).toContain(`OCSP - URI:${ca.env.HSMCA_PUBLIC_URL}/ocsp`);
    expect(text).toContain(`CA Issuers - URI:${ca.env.HSMCA_PUBLIC_URL}/ca/issuer.crt`);
    expect(text).toMatch(new RegExp(`X509v3 CRL Distribution Points:\\s+Full Name:\\s+URI:${ca.env.HSMCA_PUBLIC_URL}/crl`));
    expect(text).toMatch(/Subject: CN = api.example.internal/);

    // An independent parser agrees on the serial, the validity and the key.
    const cert = new x509.X509Certificate(r.body.certificate);
    expect(cert.serialNumber.toLowerCase()).toBe(r.body.serialNumber);
    expect(cert.notBefore.toISOString()).toBe(r.body.notBefore);
    expect(cert.notAfter.toISOString()).toBe(r.body.notAfter);
    const days = (cert.notAfter.getTime() - cert.notBefore.getTime() + 1000) / 86400_000;
    expect(days).toBe(30);
    expect(Buffer.from(r.body.serialNumber, 'hex').length).toBeGreaterThanOrEqual(8);
  });

  it('issues a tls-client certificate with email and URI names', async () => {
    const { csr } = makeCsr({ key: 'ec-p256', slot: 1, subject: '/CN=worker-7/O=Platform', sans: 'email:ops@example.com,URI:spiffe://example.org/worker' });
    const r = await ca.api('POST', '/api/v1/certificates', { token: requester, body: { csr, profile: 'tls-client' } });
    expect(r.status).toBe(201);
    const certFile = writeTemp('client.pem', r.body.certificate);
    expect(run('openssl', ['verify', '-CAfile', rootFile, '-untrusted', issuerFile, '-purpose', 'sslclient', certFile])).toMatch(/: OK/);
    const text = run('openssl', ['x509', '-in', certFile, '-noout', '-text']);
    expect(text).toMatch(/TLS Web Client Authentication/);
    expect(text).toMatch(/email:ops@example.com, URI:spiffe:\/\/example.org\/worker/);
    expect(text).toMatch(/Subject: CN = worker-7, O = Platform/);
    // default validity of the profile: 90 days
    const cert = new x509.X509Certificate(r.body.certificate);
    expect(Math.round((cert.notAfter.getTime() - cert.notBefore.getTime()) / 86400_000)).toBe(90);
  });

  it('draws a new serial every time', async () => {
    const { csr } = makeCsr({ sans: 'DNS:same.example' });
    const serials = new Set<string>();
    for (let i = 0; i < 10; i++) {
      const r = await ca.api('POST', '/api/v1/certificates', { token: requester, body: { csr } });
      expect(r.status).toBe(201);
      serials.add(r.body.serialNumber);
    }
    expect(serials.size).toBe(10);
  });

  it('looks records up in every spelling of the serial, and revokes once', async () => {
    // a key of its own: revoking for keyCompromise blocks the key
    const { csr } = makeCsr({ slot: 101, sans: 'DNS:revoke-me.example' });
    const issued = (await ca.api('POST', '/api/v1/certificates', { token: requester, body: { csr } })).body;
    const serial: string = issued.serialNumber;
    const colon = serial.toUpperCase().match(/../g)!.join(':');
    for (const spelling of [serial, serial.toUpperCase(), colon]) {
      const r = await ca.api('GET', `/api/v1/certificates/${spelling}`);
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ serialNumber: serial, status: 'good', profile: 'tls-server', revokedAt: null, revocationReason: null });
      expect(r.body.sans.dns).toEqual(['revoke-me.example']);
      expect(r.body.certificate).toBe(issued.certificate);
    }
    const rev = await ca.api('POST', `/api/v1/certificates/${colon}/revoke`, { body: { reason: 'keyCompromise' } });
    expect(rev.status).toBe(200);
    expect(rev.body).toMatchObject({ serialNumber: serial, status: 'revoked', revocationReason: 'keyCompromise' });
    expect(new Date(rev.body.revokedAt).getTime()).toBeGreaterThan(Date.now() - 60_000);
    const again = await ca.api('POST', `/api/v1/certificates/${serial}/revoke`, { body: {} });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('alreadyRevoked');
    const after = await ca.api('GET', `/api/v1/certificates/${serial}`);
    expect(after.body).toMatchObject({ status: 'revoked', revocationReason: 'keyCompromise' });
  });

  it('revokes with reason unspecified by default', async () => {
    const { csr } = makeCsr({ sans: 'DNS:default-reason.example' });
    const issued = (await ca.api('POST', '/api/v1/certificates', { token: requester, body: { csr } })).body;
    const rev = await ca.api('POST', `/api/v1/certificates/${issued.serialNumber}/revoke`, { rawBody: '' });
    expect(rev.status).toBe(200);
    expect(rev.body.revocationReason).toBe('unspecified');
  });

  it('lists newest first with a cursor, and a requester sees only its own', async () => {
    const mine: string[] = [];
    for (let i = 0; i < 5; i++) {
      const { csr } = makeCsr({ sans: `DNS:list-${i}.example` });
      mine.push((await ca.api('POST', '/api/v1/certificates', { token: otherRequester, body: { csr } })).body.serialNumber);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const q: string = `/api/v1/certificates?limit=2${cursor ? `&cursor=${cursor}` : ''}`;
      const r = await ca.api('GET', q, { token: otherRequester });
      expect(r.status).toBe(200);
      expect(r.body.items.length).toBeLessThanOrEqual(2);
      seen.push(...r.body.items.map((i: { serialNumber: string }) => i.serialNumber));
      cursor = r.body.nextCursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toEqual([...mine].reverse());

    // admin sees everything; status filter works
    const all = await ca.api('GET', '/api/v1/certificates?limit=500');
    expect(all.body.items.length).toBeGreaterThan(mine.length);
    const revoked = await ca.api('GET', '/api/v1/certificates?status=revoked&limit=500');
    expect(revoked.body.items.length).toBeGreaterThan(0);
    expect(revoked.body.items.every((i: { status: string }) => i.status === 'revoked')).toBe(true);

    // another requester's certificate is invisible
    const r = await ca.api('GET', `/api/v1/certificates/${mine[0]}`, { token: requester });
    expect(r.status).toBe(404);
  });

  it('answers /healthz and /metrics', async () => {
    const h = await ca.api('GET', '/healthz', { token: null });
    expect(h.status).toBe(200);
    expect(h.body.status).toBe('ok');
    const m = await fetch(`${ca.url}/metrics`);
    expect(m.status).toBe(200);
    const text = await m.text();
    expect(text).toMatch(/hsmca_certificates_issued_total\{profile="tls-server"\} \d+/);
    expect(text).toMatch(/hsmca_hsm_operations_total/);
  });

  it('sets security headers and never leaks a stack trace', async () => {
    const r = await ca.api('POST', '/api/v1/certificates', { token: requester, rawBody: '{"csr": ', headers: { 'content-type': 'application/json' } });
    expect(r.status).toBe(400);
    expect(r.headers.get('x-content-type-options')).toBe('nosniff');
    expect(JSON.stringify(r.body)).not.toMatch(/at .*\.(ts|js):\d+/);
  });

  describe('bad input gets a contract error', () => {
    const good = () => makeCsr({ sans: 'DNS:ok.example' }).csr;
    const cases: [string, () => { method?: string; path?: string; token?: string | null; body?: unknown; rawBody?: string; headers?: Record<string, string> }, number, string][] = [
      ['no token', () => ({ token: null, body: { csr: good() } }), 401, 'unauthorized'],
      ['unknown token', () => ({ token: 'f'.repeat(64), body: { csr: good() } }), 401, 'invalidToken'],
      ['malformed Authorization header', () => ({ token: null, headers: { authorization: 'Basic abc' }, body: { csr: good() } }), 401, 'unauthorized'],
      ['body is not JSON', () => ({ rawBody: 'csr=abc', headers: { 'content-type': 'application/json' } }), 400, 'malformedJson'],
      ['body is a JSON array', () => ({ body: [1, 2] }), 400, 'malformedJson'],
      ['csr missing', () => ({ body: { profile: 'tls-server' } }), 400, 'malformedCsr'],
      ['csr not PEM', () => ({ body: { csr: 'hello' } }), 400, 'malformedCsr'],
      ['csr PEM of garbage', () => ({ body: { csr: '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n' } }), 400, 'malformedCsr'],
      ['csr too large', () => ({ body: { csr: 'A'.repeat(65 * 1024) } }), 413, 'csrTooLarge'],
      ['body too large', () => ({ rawBody: JSON.stringify({ csr: 'A'.repeat(300 * 1024) }), headers: { 'content-type': 'application/json' } }), 413, 'bodyTooLarge'],
      ['unknown profile', () => ({ body: { csr: good(), profile: 'nope' } }), 400, 'unknownProfile'],
      ['validity not a number', () => ({ body: { csr: good(), validityDays: '30' } }), 400, 'invalidValidity'],
      ['validity too long', () => ({ body: { csr: good(), validityDays: 398 } }), 422, 'validityTooLong'],
      ['RSA-1024 key', () => ({ body: { csr: makeCsr({ key: 'rsa-1024', sans: 'DNS:a.example' }).csr } }), 422, 'weakKey'],
      ['P-521 key', () => ({ body: { csr: makeCsr({ key: 'ec-p521', sans: 'DNS:a.example' }).csr } }), 422, 'unsupportedKey'],
      ['Ed25519 key', () => ({ body: { csr: makeCsr({ key: 'ed25519', sans: 'DNS:a.example' }).csr } }), 422, 'unsupportedKey'],
      ['no SAN for tls-server', () => ({ body: { csr: makeCsr({ subject: '/CN=a.example' }).csr } }), 422, 'sanRequired'],
      ['CN not among the SANs', () => ({ body: { csr: makeCsr({ subject: '/CN=other.example', sans: 'DNS:a.example' }).csr } }), 422, 'commonNameNotInSans'],
      ['email SAN on tls-server', () => ({ body: { csr: makeCsr({ sans: 'DNS:a.example,email:x@example.com' }).csr } }), 422, 'sanTypeNotAllowed'],
      ['invalid DNS name', () => ({ body: { csr: makeCsr({ sans: 'DNS:bad_name!.example' }).csr } }), 422, 'invalidDnsName'],
      ['CSR signature broken', () => ({ body: { csr: tamperCsr(good()) } }), 400, 'csrSignatureInvalid'],
      ['unknown serial', () => ({ method: 'GET', path: '/api/v1/certificates/0123456789abcdef' }), 404, 'certificateNotFound'],
      ['serial not hex', () => ({ method: 'GET', path: '/api/v1/certificates/xyz' }), 400, 'invalidSerial'],
      ['revoke unknown serial', () => ({ path: '/api/v1/certificates/0123456789abcdef/revoke', body: {} }), 404, 'certificateNotFound'],
      ['revoke with an unknown reason', () => ({ path: '/api/v1/certificates/0123456789abcdef/revoke', body: { reason: 'bored' } }), 400, 'invalidReason'],
      ['revoke with certificateHold', () => ({ path: '/api/v1/certificates/0123456789abcdef/revoke', body: { reason: 'certificateHold' } }), 422, 'reasonNotAllowed'],
      ['list with a bad status', () => ({ method: 'GET', path: '/api/v1/certificates?status=maybe' }), 400, 'invalidStatus'],
      ['list with a bad limit', () => ({ method: 'GET', path: '/api/v1/certificates?limit=0' }), 400, 'invalidLimit'],
      ['list with a forged cursor', () => ({ method: 'GET', path: '/api/v1/certificates?cursor=abc' }), 400, 'invalidCursor'],
      ['unknown route', () => ({ method: 'GET', path: '/api/v1/nothing' }), 404, 'notFound'],
    ];
    it.each(cases)('%s', async (_name, make, status, code) => {
      const c = make();
      const r = await ca.api(c.method ?? 'POST', c.path ?? '/api/v1/certificates', { token: c.token, body: c.body, rawBody: c.rawBody, headers: c.headers });
      expect({ status: r.status, code: r.body?.error?.code }).toEqual({ status, code });
      expect(typeof r.body.error.message).toBe('string');
      expect(Object.keys(r.body)).toEqual(['error']);
    });

    it('a requester may not revoke (403)', async () => {
      const { csr } = makeCsr({ sans: 'DNS:mine.example' });
      const issued = (await ca.api('POST', '/api/v1/certificates', { token: requester, body: { csr } })).body;
      const r = await ca.api('POST', `/api/v1/certificates/${issued.serialNumber}/revoke`, { token: requester, body: {} });
      expect(r.status).toBe(403);
      expect(r.body.error.code).toBe('forbidden');
      const still = await ca.api('GET', `/api/v1/certificates/${issued.serialNumber}`);
      expect(still.body.status).toBe('good');
    });

    it('refused requests leave no record behind', async () => {
      const before = await ca.svc.core.certificates.count();
      await ca.api('POST', '/api/v1/certificates', { token: requester, body: { csr: makeCsr({ subject: '/CN=x.example' }).csr } });
      await ca.api('POST', '/api/v1/certificates', { token: requester, body: { csr: tamperCsr(good()) } });
      expect(await ca.svc.core.certificates.count()).toBe(before);
    });
  });

  it('answers issuance the same whether the body comes plain or gzip-encoded (decoded by body-parser), with the same headers', async () => {
    const huge = JSON.stringify({ csr: 'x'.repeat(200 * 1024) });
    const cases: { name: string; token?: string | null; body: string; status: number; code?: string }[] = [
      { name: 'good', token: requester, body: JSON.stringify({ csr: makeCsr({ sans: 'DNS:fast-path.example' }).csr }), status: 201 },
      { name: 'no token', token: null, body: '{}', status: 401, code: 'unauthorized' },
      { name: 'unknown token', token: 'not-a-token', body: '{}', status: 401, code: 'invalidToken' },
      { name: 'not JSON', token: requester, body: '{"csr": ', status: 400, code: 'malformedJson' },
      { name: 'JSON, not strict', token: requester, body: '"just a string"', status: 400, code: 'malformedJson' },
      { name: 'an array', token: requester, body: '[1]', status: 400, code: 'malformedJson' },
      { name: 'empty body', token: requester, body: '', status: 400, code: 'malformedCsr' },
      { name: 'BOM and whitespace', token: requester, body: '\ufeff \n{"csr": 5}', status: 400 },
      { name: 'too large', token: requester, body: huge, status: 413, code: 'bodyTooLarge' },
      { name: 'unknown profile', token: requester, body: JSON.stringify({ csr: makeCsr({ sans: 'DNS:p.example' }).csr, profile: 'nope' }), status: 400, code: 'unknownProfile' },
    ];
    const send = async (c: (typeof cases)[number], gzip: boolean) => {
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (c.token !== null) headers.authorization = `Bearer ${c.token}`;
      let body: Buffer = Buffer.from(c.body, 'utf8');
      if (gzip) {
        headers['content-encoding'] = 'gzip';
        body = zlib.gzipSync(body);
      }
      const res = await fetch(`${ca.url}/api/v1/certificates`, { method: 'POST', headers, body });
      const json = (await res.json()) as { error?: { code: string; message: string } };
      const h = Object.fromEntries(['content-type', 'cache-control', 'x-content-type-options', 'x-frame-options', 'content-security-policy', 'referrer-policy', 'cross-origin-resource-policy'].map((k) => [k, res.headers.get(k)]));
      return { status: res.status, code: json.error?.code as string | undefined, message: json.error?.message as string | undefined, keys: Object.keys(json).sort(), h };
    };
    for (const c of cases) {
      const fast = await send(c, false);
      const viaBodyParser = await send(c, true);
      expect({ name: c.name, ...fast }).toEqual({ name: c.name, ...viaBodyParser });
      expect(fast.status).toBe(c.status);
      if (c.code) expect(fast.code).toBe(c.code);
      expect(fast.h['cache-control']).toBe('no-store');
      expect(fast.h['x-content-type-options']).toBe('nosniff');
      expect(fast.h['content-type']).toBe('application/json; charset=utf-8');
    }
    const metrics = await (await fetch(`${ca.url}/metrics`)).text();
    expect(metrics).toMatch(/route="\/api\/v1\/certificates",status="201"/);
  });

  it('stores a certificate only together with its audit event, in one commit', async () => {
    const knex = ca.svc.core.db.knex;
    const events = async () => Number((await knex('audit_events').where({ type: 'certificateIssued' }).count({ n: '*' }))[0].n);
    const ok = await ca.api('POST', '/api/v1/certificates', { token: requester, body: { csr: makeCsr({ sans: 'DNS:atomic-1.example' }).csr } });
    expect(ok.status).toBe(201);
    const event = await knex('audit_events').where({ type: 'certificateIssued', subject: ok.body.serialNumber }).first();
    expect(JSON.parse(event.details)).toMatchObject({ profile: 'tls-server', sans: { dns: ['atomic-1.example'] } });

    // The audit table refuses every insert: the certificate must not be stored either.
    const sqlite = backend.database === 'sqlite';
    if (sqlite) await knex.raw(`CREATE TRIGGER audit_refuses BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'audit refused'); END`);
    else {
      await knex.raw(`CREATE FUNCTION audit_refuses() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$`);
      await knex.raw(`CREATE TRIGGER audit_refuses BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_refuses()`);
    }
    const [certsBefore, eventsBefore] = [await ca.svc.core.certificates.count(), await events()];
    try {
      const r = await ca.api('POST', '/api/v1/certificates', { token: requester, body: { csr: makeCsr({ sans: 'DNS:atomic-2.example' }).csr } });
      expect(r.status).toBe(503);
      expect(r.body.error.code).toBe('databaseUnavailable');
      expect(await ca.svc.core.certificates.count()).toBe(certsBefore);
      expect(await events()).toBe(eventsBefore);
      const row = await knex('certificates').orderBy('id', 'desc').first('state', 'der');
      expect(row.state).toBe('pending');
      expect(row.der).toBeNull();
    } finally {
      await knex.raw('DROP TRIGGER audit_refuses' + (sqlite ? '' : ' ON audit_events'));
      if (!sqlite) await knex.raw('DROP FUNCTION audit_refuses()');
    }
    const after = await ca.api('POST', '/api/v1/certificates', { token: requester, body: { csr: makeCsr({ sans: 'DNS:atomic-3.example' }).csr } });
    expect(after.status).toBe(201);
    expect(await events()).toBe(eventsBefore + 1);
    expect((await ca.svc.core.audit.verify()).ok).toBe(true);
  });
});

/** Flips one byte inside the CSR's signature so it no longer verifies. */
function tamperCsr(pem: string): string {
  const derBytes = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  derBytes[derBytes.length - 5] ^= 0x01;
  return `-----BEGIN CERTIFICATE REQUEST-----\n${derBytes.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
}

export {};
void fs;
void runStatus;
