import * as fs from 'node:fs';
import { backends, run, runAsync, runStatus, startTestCa, TestCa } from './helpers/harness';
import { makeCsr, writeTemp } from './helpers/csr';

/** OCSP and CRLs as any standard client sees them: the openssl CLI is the client. */
describe.each(backends())('OCSP and CRLs ($name)', (backend) => {
  let ca: TestCa;
  let rootFile: string;
  let issuerFile: string;
  let chainFile: string;

  // a key per certificate: revoking one for keyCompromise blocks its key
  let slot = 100;
  const issue = async (name: string) => {
    const { csr } = makeCsr({ slot: slot++, sans: `DNS:${name}` });
    const r = await ca.api('POST', '/api/v1/certificates', { body: { csr } });
    expect(r.status).toBe(201);
    return { serial: r.body.serialNumber as string, file: writeTemp(`${name}.pem`, r.body.certificate) };
  };
  const ocsp = (...args: string[]) => runAsync('openssl', ['ocsp', '-issuer', issuerFile, '-CAfile', rootFile, '-url', `${ca.url}/ocsp`, ...args]);

  beforeAll(async () => {
    ca = await startTestCa(backend);
    const r = await ca.api('GET', '/api/v1/ca', { token: null });
    rootFile = writeTemp('root.pem', r.body.root);
    issuerFile = writeTemp('issuer.pem', r.body.issuer);
    chainFile = writeTemp('chain.pem', r.body.issuer + r.body.root);
  });
  afterAll(async () => {
    await ca?.stop();
  });

  it('answers good, then revoked with the reason on the very next request', async () => {
    const leaf = await issue('ocsp-a.example');
    const before = await ocsp('-cert', leaf.file);
    expect(before.out).toMatch(/Response verify OK/);
    expect(before.out).toMatch(new RegExp(`${leaf.file}: good`));
    expect(before.out).toMatch(/This Update: .*\n\s*Next Update: /);

    const rev = await ca.api('POST', `/api/v1/certificates/${leaf.serial}/revoke`, { body: { reason: 'keyCompromise' } });
    expect(rev.status).toBe(200);
    for (const extra of [[], ['-no_nonce']]) {
      const after = await ocsp('-cert', leaf.file, ...extra);
      expect(after.out).toMatch(/Response verify OK/);
      expect(after.out).toMatch(new RegExp(`${leaf.file}: revoked`));
      expect(after.out).toMatch(/Reason: keyCompromise/);
      expect(after.out).toMatch(/Revocation Time: /);
    }
  });

  it('serves SHA-256 CertIDs, several CertIDs at once, unknown serials, and echoes the nonce', async () => {
    const a = await issue('multi-a.example');
    const b = await issue('multi-b.example');
    await ca.api('POST', `/api/v1/certificates/${b.serial}/revoke`, { body: { reason: 'superseded' } });
    const r = await ocsp('-sha256', '-cert', a.file, '-cert', b.file, '-serial', '0x0123456789abcdef', '-resp_text');
    expect(r.out).toMatch(/Response verify OK/);
    expect(r.out).toMatch(new RegExp(`${a.file}: good`));
    expect(r.out).toMatch(new RegExp(`${b.file}: revoked`));
    expect(r.out).toMatch(/0x0123456789abcdef: unknown/);
    expect(r.out).toMatch(/Hash Algorithm: sha256/);
    expect(r.out).toMatch(/OCSP Nonce:/);
    expect(r.out).toMatch(/Reason: superseded/);
    // the delegated responder certificate
    expect(r.out).toMatch(/OCSP Signing/);
    expect(r.out).toMatch(/OCSP No Check/);
  });

  it('answers unauthorized for another issuer and malformedRequest for bad bytes, never an HTML page', async () => {
    const other = writeTemp('other-ca.pem', run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', '/dev/null', '-subj', '/CN=Other CA', '-days', '1']));
    const r = await runAsync('openssl', ['ocsp', '-issuer', other, '-serial', '0x01', '-url', `${ca.url}/ocsp`, '-no_nonce']);
    expect(r.out).toMatch(/Responder Error: unauthorized/);
    for (const body of [Buffer.from('not an OCSP request'), Buffer.alloc(0), Buffer.from([0x30, 0x82, 0xff, 0xff]), Buffer.alloc(100 * 1024, 0x30)]) {
      const res = await fetch(`${ca.url}/ocsp`, { method: 'POST', body, headers: { 'content-type': 'application/ocsp-request' } });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/ocsp-response');
      const f = writeTemp('bad.der', Buffer.from(await res.arrayBuffer()));
      expect(runStatus('openssl', ['ocsp', '-respin', f, '-resp_text', '-noverify']).out).toMatch(/Responder Error: malformedrequest/);
    }
    for (const path of ['/ocsp/!!!', '/ocsp/AAAA', '/ocsp/%ZZ']) {
      const res = await fetch(`${ca.url}${path}`);
      expect(res.status).toBe(200);
      const f = writeTemp('bad.der', Buffer.from(await res.arrayBuffer()));
      expect(runStatus('openssl', ['ocsp', '-respin', f, '-resp_text', '-noverify']).out).toMatch(/malformedrequest/);
    }
  });

  it('refuses an over-long nonce as malformed (RFC 8954)', async () => {
    const leaf = await issue('nonce.example');
    const longNonce = await ocsp('-cert', leaf.file, '-nonce', '-reqout', writeTemp('x.der', ''), '-no_nonce');
    void longNonce;
    // Build a request with a 40-octet nonce by hand: openssl only makes 16-octet ones.
    const req = writeTemp('req.der', '');
    run('openssl', ['ocsp', '-issuer', issuerFile, '-cert', leaf.file, '-no_nonce', '-reqout', req]);
    const withNonce = addNonce(fs.readFileSync(req), Buffer.alloc(40, 7));
    const res = await fetch(`${ca.url}/ocsp`, { method: 'POST', body: withNonce });
    const f = writeTemp('resp.der', Buffer.from(await res.arrayBuffer()));
    expect(runStatus('openssl', ['ocsp', '-respin', f, '-resp_text', '-noverify']).out).toMatch(/malformedrequest/);
    const ok = addNonce(fs.readFileSync(req), Buffer.alloc(32, 7));
    const res2 = await fetch(`${ca.url}/ocsp`, { method: 'POST', body: ok });
    const f2 = writeTemp('resp.der', Buffer.from(await res2.arrayBuffer()));
    expect(runStatus('openssl', ['ocsp', '-respin', f2, '-resp_text', '-noverify']).out).toMatch(/Cert Status: good/);
  });

  it('serves GET with RFC 5019 caching headers and 304 on a conditional request', async () => {
    const leaf = await issue('get.example');
    const reqFile = writeTemp('get-req.der', '');
    run('openssl', ['ocsp', '-issuer', issuerFile, '-cert', leaf.file, '-no_nonce', '-reqout', reqFile]);
    const b64 = fs.readFileSync(reqFile).toString('base64');
    const urls = [`${ca.url}/ocsp/${encodeURIComponent(b64)}`, `${ca.url}/ocsp/${b64}`];
    let etag = '';
    for (const url of urls) {
      const res = await fetch(url);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/ocsp-response');
      const cc = res.headers.get('cache-control')!;
      const maxAge = Number(cc.match(/max-age=(\d+)/)![1]);
      expect(maxAge).toBeGreaterThan(0);
      expect(maxAge).toBeLessThanOrEqual(3600);
      expect(res.headers.get('last-modified')).toBeTruthy();
      etag = res.headers.get('etag')!;
      expect(etag).toMatch(/^".+"$/);
      const f = writeTemp('get-resp.der', Buffer.from(await res.arrayBuffer()));
      const text = run('openssl', ['ocsp', '-respin', f, '-issuer', issuerFile, '-CAfile', rootFile, '-cert', leaf.file, '-resp_text']);
      expect(text).toMatch(/good/);
    }
    // the pre-signed response is reused: same bytes, same ETag
    const again = await fetch(urls[0]);
    expect(again.headers.get('etag')).toBe(etag);
    const cond = await fetch(urls[0], { headers: { 'if-none-match': etag } });
    expect(cond.status).toBe(304);
    // a revocation changes the answer at once, even for a cached GET
    await ca.api('POST', `/api/v1/certificates/${leaf.serial}/revoke`, { body: { reason: 'cessationOfOperation' } });
    const changed = await fetch(urls[0], { headers: { 'if-none-match': etag } });
    expect(changed.status).toBe(200);
    expect(changed.headers.get('etag')).not.toBe(etag);
    const f = writeTemp('get-resp2.der', Buffer.from(await changed.arrayBuffer()));
    expect(run('openssl', ['ocsp', '-respin', f, '-issuer', issuerFile, '-CAfile', rootFile, '-cert', leaf.file, '-resp_text'])).toMatch(/revoked[\s\S]*cessationOfOperation/);
  });

  it('publishes a verifiable CRL that openssl uses to reject a revoked certificate', async () => {
    const good = await issue('crl-good.example');
    const bad = await issue('crl-bad.example');
    await ca.api('POST', `/api/v1/certificates/${bad.serial}/revoke`, { body: { reason: 'keyCompromise', invalidityDate: '2026-01-02T03:04:05Z' } });
    const n1 = (await ca.api('POST', '/api/v1/crl/refresh', { body: {} })).body.crlNumber;
    const refreshed = await ca.api('POST', '/api/v1/crl/refresh', { body: {} });
    expect(refreshed.status).toBe(200);
    expect(refreshed.body.crlNumber).toBeGreaterThan(n1);
    const res = await fetch(`${ca.url}/crl`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/pkix-crl');
    const derFile = writeTemp('crl.der', Buffer.from(await res.arrayBuffer()));
    const text = runStatus('openssl', ['crl', '-inform', 'DER', '-in', derFile, '-CAfile', chainFile, '-noout', '-text']).out;
    expect(text).toMatch(/verify OK/);
    expect(text).toMatch(new RegExp(`X509v3 CRL Number:\\s+${refreshed.body.crlNumber}\\b`));
    expect(text).toMatch(/X509v3 Authority Key Identifier/);
    expect(text).toMatch(/X509v3 Issuing Distribution Point: critical/);
    expect(text).toMatch(/X509v3 Freshest CRL/);
    expect(text).toContain(`${ca.env.HSMCA_PUBLIC_URL}/crl/delta`);
    expect(text).toMatch(/Last Update: [\s\S]*Next Update: /);
    expect(text).toMatch(new RegExp(`Serial Number: ${bad.serial.toUpperCase()}\\s+Revocation Date: .*\\s+CRL entry extensions:\\s+X509v3 CRL Reason Code:\\s+Key Compromise\\s+Invalidity Date:\\s+Jan  2 03:04:05 2026 GMT`));
    expect(text).not.toContain(good.serial.toUpperCase());

    const pem = writeTemp('crl.pem', run('openssl', ['crl', '-inform', 'DER', '-in', derFile]));
    const revoked = runStatus('openssl', ['verify', '-crl_check', '-CRLfile', pem, '-CAfile', rootFile, '-untrusted', issuerFile, bad.file]);
    expect(revoked.status).not.toBe(0);
    expect(revoked.out).toMatch(/certificate revoked/);
    const ok = runStatus('openssl', ['verify', '-crl_check', '-CRLfile', pem, '-CAfile', rootFile, '-untrusted', issuerFile, good.file]);
    expect(ok.out).toMatch(/: OK/);

    const delta = await fetch(`${ca.url}/crl/delta`);
    const deltaFile = writeTemp('delta.der', Buffer.from(await delta.arrayBuffer()));
    const dtext = runStatus('openssl', ['crl', '-inform', 'DER', '-in', deltaFile, '-CAfile', chainFile, '-noout', '-text']).out;
    expect(dtext).toMatch(/verify OK/);
    expect(dtext).toMatch(new RegExp(`X509v3 Delta CRL Indicator: critical\\s+${refreshed.body.crlNumber}\\b`));

    // validators: 304 for the same ETag
    const etag = res.headers.get('etag')!;
    expect((await fetch(`${ca.url}/crl`, { headers: { 'if-none-match': etag } })).status).toBe(304);
  });

  it('refreshes the CRL by itself within seconds of a revocation', async () => {
    const leaf = await issue('auto-crl.example');
    await ca.api('POST', `/api/v1/certificates/${leaf.serial}/revoke`, { body: { reason: 'affiliationChanged' } });
    const deadline = Date.now() + 10_000;
    let found = false;
    while (Date.now() < deadline && !found) {
      await new Promise((r) => setTimeout(r, 250));
      const der = Buffer.from(await (await fetch(`${ca.url}/crl`)).arrayBuffer());
      const f = writeTemp('auto.der', der);
      found = run('openssl', ['crl', '-inform', 'DER', '-in', f, '-noout', '-text']).includes(leaf.serial.toUpperCase());
    }
    expect(found).toBe(true);
  });

  it('drops expired certificates from the CRL (retention 0) and keeps the valid ones', async () => {
    const k = ca.svc.core.db.knex;
    const row = (serial: string, notAfter: number) => ({
      serial,
      state: 'issued',
      profile: 'tls-server',
      subject: '',
      sans: '{"dns":[],"ip":[],"email":[],"uri":[]}',
      not_before: Date.now() - 90 * 86400_000,
      not_after: notAfter,
      der: Buffer.from([0x30, 0x00]),
      created_at: Date.now(),
      revoked_at: Date.now() - 3600_000,
      revocation_reason: 1,
    });
    await k('certificates').insert([row('7e57ed0ff1ce0001', Date.now() - 86400_000), row('7e57ed0ff1ce0002', Date.now() + 86400_000)]);
    const before = (await ca.api('POST', '/api/v1/crl/refresh', { body: {} })).body.crlNumber;
    const der = Buffer.from(await (await fetch(`${ca.url}/crl`)).arrayBuffer());
    const text = run('openssl', ['crl', '-inform', 'DER', '-in', writeTemp('ret.der', der), '-noout', '-text']);
    expect(text).toContain('7E57ED0FF1CE0002');
    expect(text).not.toContain('7E57ED0FF1CE0001');
    // the CRL number only grows
    const after = (await ca.api('POST', '/api/v1/crl/refresh', { body: {} })).body.crlNumber;
    expect(after).toBeGreaterThan(before);
  });

  it('refresh needs the admin role', async () => {
    const requester = (await ca.svc.core.tokens.create({ role: 'requester', name: 'r' })).token;
    const r = await ca.api('POST', '/api/v1/crl/refresh', { token: requester, body: {} });
    expect(r.status).toBe(403);
    expect((await ca.api('POST', '/api/v1/crl/refresh', { token: null })).status).toBe(401);
  });
});

/** Adds a nonce extension (RFC 8954) to a DER OCSPRequest that has none. */
function addNonce(req: Buffer, nonce: Buffer): Buffer {
  const der = require('../src/asn1/der') as typeof import('../src/asn1/der');
  const top = der.readTop(req);
  const [tbs] = der.children(top);
  const parts = der.children(tbs).map(der.raw);
  const ext = der.seq(der.oid('1.3.6.1.5.5.7.48.1.2'), der.octets(der.octets(nonce)));
  return der.seq(der.seq(...parts, der.ctx(2, der.seq(ext))));
}
