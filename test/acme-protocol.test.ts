import { AuthorityKeyIdentifierExtension, X509Certificate } from '@peculiar/x509';
import * as http from 'node:http';
import { AcmeTestClient, acmeKey, createEab, jws, requesterToken } from './helpers/acme-client';
import { ChallTestSrv, startChallTestSrv } from './helpers/challtestsrv';
import { makeCsr, writeTemp } from './helpers/csr';
import { backends, freePort, run, runAsync, startTestCa, TestCa } from './helpers/harness';

jest.setTimeout(120_000);

const PROBLEM = 'urn:ietf:params:acme:error:';
const csrB64 = (pem: string) => Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64').toString('base64url');

/** The http-01 responder a client would run: answers each token with its key authorization, or on purpose wrongly. */
class Responder {
  readonly answers = new Map<string, string>();
  mode: 'right' | 'wrong' | 'hang' = 'right';
  server = http.createServer((req, res) => {
    if (this.mode === 'hang') return; // never answers: the validation times out
    const token = (req.url ?? '').split('/').pop() ?? '';
    const a = this.answers.get(token);
    if (!a) return res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'text/plain' }).end(this.mode === 'wrong' ? `${a}x` : a);
  });
  async listen(port: number) {
    await new Promise<void>((r) => this.server.listen(port, '127.0.0.1', () => r()));
  }
  close() {
    this.server.closeAllConnections();
    return new Promise<void>((r) => this.server.close(() => r()));
  }
}

describe.each(backends({ pkcs11: false }))('ACME protocol over real HTTP ($name)', (backend) => {
  let ca: TestCa;
  let dns: ChallTestSrv;
  const responder = new Responder();
  let eab: () => Promise<[string, string]>;

  beforeAll(async () => {
    dns = await startChallTestSrv();
    const httpPort = await freePort();
    await responder.listen(httpPort);
    ca = await startTestCa(backend, {
      env: {
        HSMCA_ACME_ALLOW_PRIVATE_ADDRESSES: 'true',
        HSMCA_ACME_HTTP01_PORT: String(httpPort),
        HSMCA_ACME_DNS_RESOLVER: `127.0.0.1:${dns.dnsPort}`,
        HSMCA_ACME_VALIDATION_TIMEOUT_SECONDS: '2',
        HSMCA_ACME_VALIDATION_ATTEMPTS: '1',
      },
    });
    await requesterToken(ca, 'acme-web', { names: ['*.acme.test', '127.0.0.0/8'] });
    eab = () => createEab(ca, 'acme-web');
  });
  afterAll(async () => {
    await ca?.stop();
    await responder.close();
    await dns?.stop();
  });

  /** A client with an account bound to the acme-web token. */
  async function account(alg?: Parameters<typeof AcmeTestClient.open>[1]): Promise<AcmeTestClient> {
    const c = await AcmeTestClient.open(ca, alg);
    const [kid, hmac] = await eab();
    const r = await c.newAccount({ termsOfServiceAgreed: true, contact: ['mailto:ops@acme.test'], externalAccountBinding: await c.eab(kid, hmac) });
    expect(r.status).toBe(201);
    return c;
  }

  /** An order whose authorizations are all answered (http-01 for addresses, dns-01 for names), polled to ready. */
  async function readyOrder(c: AcmeTestClient, identifiers: { type: string; value: string }[]): Promise<any> {
    const o = await c.post(c.directory.newOrder, { identifiers });
    expect(o.status).toBe(201);
    for (const url of o.body.authorizations) {
      const authz = (await c.post(url, '')).body;
      const type = authz.identifier.type === 'ip' ? 'http-01' : 'dns-01';
      const ch = authz.challenges.find((x: any) => x.type === type);
      const ka = await c.keyAuthorization(ch.token);
      if (type === 'http-01') responder.answers.set(ch.token, ka);
      else await dns.setTxt(`_acme-challenge.${authz.identifier.value}`, c.dnsDigest(ka));
      expect((await c.post(ch.url, {})).status).toBe(200);
    }
    const order = await c.poll(o.headers.get('location')!, (b) => b.status !== 'pending');
    return { ...order, url: o.headers.get('location') };
  }

  it('serves the directory and nonces as RFC 8555 7.1.1 and 7.2 say', async () => {
    const d = (await (await fetch(`${ca.url}/acme/directory`)).json()) as Record<string, any>;
    expect(d).toMatchObject({ newNonce: `${ca.url}/acme/new-nonce`, newAccount: `${ca.url}/acme/new-account`, newOrder: `${ca.url}/acme/new-order`, revokeCert: `${ca.url}/acme/revoke-cert`, meta: { externalAccountRequired: true } });
    const head = await fetch(d.newNonce, { method: 'HEAD' });
    const get = await fetch(d.newNonce);
    expect([head.status, get.status]).toEqual([200, 204]);
    for (const r of [head, get]) {
      expect(r.headers.get('replay-nonce')).toMatch(/^[A-Za-z0-9_-]{16,}$/);
      expect(r.headers.get('cache-control')).toBe('no-store');
    }
    expect(head.headers.get('replay-nonce')).not.toBe(get.headers.get('replay-nonce'));
  });

  it.each(['ES256', 'ES384', 'RS256', 'EdDSA'] as const)('accepts an account key signing with %s', async (alg) => {
    const c = await account(alg);
    const again = await c.post(c.kid!, '');
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ status: 'valid', contact: ['mailto:ops@acme.test'] });
  });

  it('requires External Account Binding, binds a key once, and finds an existing account by its key', async () => {
    const c = await AcmeTestClient.open(ca);
    const none = await c.newAccount();
    expect(none.status).toBe(400);
    expect(none.headers.get('content-type')).toBe('application/problem+json');
    expect(none.body.type).toBe(`${PROBLEM}externalAccountRequired`);
    expect((await c.newAccount({ onlyReturnExisting: true })).body.type).toBe(`${PROBLEM}accountDoesNotExist`);
    const [kid, hmac] = await eab();
    const badMac = await c.newAccount({ externalAccountBinding: await c.eab(kid, Buffer.alloc(32, 1).toString('base64url')) });
    expect(badMac.body.type).toBe(`${PROBLEM}unauthorized`);
    const ok = await c.newAccount({ externalAccountBinding: await c.eab(kid, hmac) });
    expect(ok.status).toBe(201);
    expect((await c.newAccount({ onlyReturnExisting: true })).status).toBe(200);
    const other = await AcmeTestClient.open(ca);
    const reused = await other.newAccount({ externalAccountBinding: await other.eab(kid, hmac) });
    expect(reused.status).toBe(403);
    expect(reused.body.detail).toMatch(/unknown or already bound/);
  });

  it('rolls the account key over (RFC 8555 7.3.5): the old key no longer signs, the new one does, a taken key is a conflict', async () => {
    const c = await account();
    const other = await account();
    const keyChange = c.directory.keyChange;
    const inner = async (newKey: Awaited<ReturnType<typeof acmeKey>>, oldJwk = c.key.jwk) => JSON.parse(await jws(newKey, { jwk: newKey.jwk, url: keyChange }, { account: c.kid, oldKey: oldJwk }));
    const taken = await c.post(keyChange, await inner(other.key));
    expect(taken.status).toBe(409);
    expect(taken.headers.get('location')).toBe(other.kid);
    const newKey = await acmeKey('ES384');
    const wrongOld = await c.post(keyChange, await inner(newKey, newKey.jwk));
    expect(wrongOld.body.type).toBe(`${PROBLEM}malformed`);
    const ok = await c.post(keyChange, await inner(newKey));
    expect(ok.status).toBe(200);
    expect((await c.post(c.kid!, '')).status).toBe(400); // the old key's signature no longer verifies
    expect((await c.post(c.kid!, '', { key: newKey })).status).toBe(200);
  });

  it('issues through the whole flow (RFC 8738 ip and a dns name), answers OCSP good, then revoked after an ACME revocation', async () => {
    const c = await account();
    const order = await readyOrder(c, [
      { type: 'ip', value: '127.0.0.1' },
      { type: 'dns', value: 'flow.acme.test' },
    ]);
    expect(order.status).toBe('ready');
    const acct = (await c.post(c.kid!, '')).body;
    expect((await c.post(acct.orders, '')).body).toEqual({ orders: [order.url] });
    const { csr, keyFile } = makeCsr({ subject: '/CN=flow.acme.test', sans: 'DNS:flow.acme.test,IP:127.0.0.1' });
    const fin = await c.post(order.finalize, { csr: csrB64(csr) });
    expect(fin.status).toBe(200);
    expect(fin.body.status).toBe('valid');
    const cert = await c.post(fin.body.certificate, '');
    expect(cert.status).toBe(200);
    expect(cert.headers.get('content-type')).toBe('application/pem-certificate-chain');
    expect(cert.headers.get('link')).toContain(`<${ca.url}/ca/issuer.crt>;rel="up"`);
    const pems = (cert.body as string).match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g)!;
    expect(pems).toHaveLength(2);
    const leaf = writeTemp('leaf.pem', pems[0]);
    const issuer = writeTemp('issuer.pem', pems[1]);
    const root = writeTemp('root.pem', (await ca.api('GET', '/api/v1/ca')).body.root);
    expect(run('openssl', ['verify', '-CAfile', root, '-untrusted', issuer, leaf])).toContain('OK');
    expect(run('openssl', ['x509', '-in', leaf, '-noout', '-ext', 'subjectAltName'])).toMatch(/DNS:flow\.acme\.test, IP Address:127\.0\.0\.1/);
    expect(run('openssl', ['pkey', '-in', keyFile, '-pubout'])).toBe(run('openssl', ['x509', '-in', leaf, '-noout', '-pubkey']));
    const ocsp = () => runAsync('openssl', ['ocsp', '-issuer', issuer, '-CAfile', root, '-cert', leaf, '-url', `${ca.url}/ocsp`]);
    expect((await ocsp()).out).toMatch(/: good/);
    // RFC 9773 renewal information: a window inside the certificate's life while it is good, an open one once revoked
    const x = new X509Certificate(pems[0]);
    const aki = Buffer.from(x.getExtension(AuthorityKeyIdentifierExtension)!.keyId!, 'hex');
    const serial = Buffer.from(x.serialNumber.length % 2 ? `0${x.serialNumber}` : x.serialNumber, 'hex');
    const ariId = `${aki.toString('base64url')}.${(serial[0] & 0x80 ? Buffer.concat([Buffer.from([0]), serial]) : serial).toString('base64url')}`;
    const ari = async () => {
      const r = await fetch(`${c.directory.renewalInfo}/${ariId}`);
      expect(r.status).toBe(200);
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
      return ((await r.json()) as any).suggestedWindow;
    };
    const w = await ari();
    expect(new Date(w.start) > x.notBefore && new Date(w.start) < new Date(w.end) && new Date(w.end) < x.notAfter).toBe(true);
    for (const bad of ['nonsense', `AAAA.${ariId.split('.')[1]}`, `${ariId.split('.')[0]}.AQID`]) {
      const r = await fetch(`${c.directory.renewalInfo}/${bad}`);
      expect([r.status, r.headers.get('content-type')]).toEqual([bad === 'nonsense' ? 400 : 404, 'application/problem+json']);
    }
    const der = Buffer.from(pems[0].replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
    const rev = await c.post(c.directory.revokeCert, { certificate: der.toString('base64url'), reason: 4 });
    expect(rev.status).toBe(200);
    expect((await ocsp()).out).toMatch(/: revoked[\s\S]*Reason: superseded/);
    expect(new Date((await ari()).end).getTime()).toBeLessThanOrEqual(Date.now() + 1000);
    const again = await c.post(c.directory.revokeCert, { certificate: der.toString('base64url') });
    expect(again.body.type).toBe(`${PROBLEM}alreadyRevoked`);
  });

  it('lets the certificate key revoke (jwk), and refuses an account holding no authorization for its names', async () => {
    const c = await account();
    const order = await readyOrder(c, [{ type: 'dns', value: 'keyrev.acme.test' }]);
    const { csr, keyFile } = makeCsr({ key: 'ec-p256', slot: 7, sans: 'DNS:keyrev.acme.test' });
    const fin = await c.post(order.finalize, { csr: csrB64(csr) });
    const pem = (await c.post(fin.body.certificate, '')).body as string;
    const der = Buffer.from(pem.split('-----END CERTIFICATE-----')[0].replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64').toString('base64url');
    const stranger = await account();
    const refused = await stranger.post(stranger.directory.revokeCert, { certificate: der });
    expect(refused.status).toBe(403);
    expect(refused.body.type).toBe(`${PROBLEM}unauthorized`);
    const randomKey = await acmeKey();
    const wrongKey = await c.post(c.directory.revokeCert, { certificate: der }, { useJwk: true, key: randomKey });
    expect(wrongKey.body.type).toBe(`${PROBLEM}unauthorized`);
    // the certificate's own key, as a JWK
    const { createPrivateKey } = await import('node:crypto');
    const { importJWK } = await import('jose');
    const priv = createPrivateKey(require('node:fs').readFileSync(keyFile));
    const jwkFull = priv.export({ format: 'jwk' }) as any;
    const certKey = { alg: 'ES256' as const, privateKey: (await importJWK(jwkFull, 'ES256')) as any, jwk: { kty: jwkFull.kty, crv: jwkFull.crv, x: jwkFull.x, y: jwkFull.y } };
    const byKey = await c.post(c.directory.revokeCert, { certificate: der, reason: 1 }, { useJwk: true, key: certKey });
    expect(byKey.status).toBe(200);
  });

  it('refuses a CSR that does not name exactly the order\'s identifiers, and finalize before the order is ready', async () => {
    const c = await account();
    const pending = await c.post(c.directory.newOrder, { identifiers: [{ type: 'dns', value: 'early.acme.test' }] });
    const early = await c.post(pending.body.finalize, { csr: csrB64(makeCsr({ sans: 'DNS:early.acme.test' }).csr) });
    expect(early.status).toBe(403);
    expect(early.body.type).toBe(`${PROBLEM}orderNotReady`);
    const order = await readyOrder(c, [{ type: 'dns', value: 'exact.acme.test' }]);
    for (const sans of ['DNS:other.acme.test', 'DNS:exact.acme.test,DNS:extra.acme.test']) {
      const r = await c.post(order.finalize, { csr: csrB64(makeCsr({ sans }).csr) });
      expect(r.status).toBe(400);
      expect(r.body.type).toBe(`${PROBLEM}badCSR`);
    }
    expect((await c.post(order.url, '')).body.status).toBe('ready');
  });

  it('refuses names outside the bound token\'s scope at newOrder, naming the identifier', async () => {
    const c = await account();
    const r = await c.post(c.directory.newOrder, { identifiers: [{ type: 'dns', value: 'www.elsewhere.test' }] });
    expect(r.status).toBe(400);
    expect(r.body.type).toBe(`${PROBLEM}rejectedIdentifier`);
    expect(r.body.detail).toContain('www.elsewhere.test');
  });

  it.each([
    ['a bare name with no dot', [{ type: 'dns', value: 'localhost' }], 'rejectedIdentifier'],
    ['a wildcard not at the left', [{ type: 'dns', value: 'a.*.acme.test' }], 'rejectedIdentifier'],
    ['a bad address', [{ type: 'ip', value: '300.1.1.1' }], 'rejectedIdentifier'],
    ['an unknown identifier type', [{ type: 'email', value: 'a@acme.test' }], 'unsupportedIdentifier'],
    ['no identifiers', [], 'malformed'],
  ])('refuses an order with %s', async (_what, identifiers, type) => {
    const c = await account();
    const r = await c.post(c.directory.newOrder, { identifiers });
    expect(r.status).toBe(400);
    expect(r.body.type).toBe(`${PROBLEM}${type}`);
  });

  it('offers only dns-01 for a wildcard', async () => {
    const c = await account();
    const o = await c.post(c.directory.newOrder, { identifiers: [{ type: 'dns', value: '*.wild.acme.test' }] });
    const authz = (await c.post(o.body.authorizations[0], '')).body;
    expect(authz).toMatchObject({ identifier: { type: 'dns', value: 'wild.acme.test' }, wildcard: true });
    expect(authz.challenges.map((x: any) => x.type)).toEqual(['dns-01']);
  });

  it.each([
    ['http-01 answered with the wrong key authorization', 'http-01', 'wrong', 'incorrectResponse'],
    ['http-01 that never answers (timeout)', 'http-01', 'hang', 'connection'],
    ['dns-01 with a TXT record of another value', 'dns-01', 'right', 'incorrectResponse'],
  ] as const)('fails a challenge: %s', async (_what, type, mode, problem) => {
    const c = await account();
    const name = `fail-${type}-${mode}.acme.test`;
    const o = await c.post(c.directory.newOrder, { identifiers: [{ type: 'dns', value: name }] });
    const authz = (await c.post(o.body.authorizations[0], '')).body;
    const ch = authz.challenges.find((x: any) => x.type === type);
    if (type === 'http-01') responder.answers.set(ch.token, await c.keyAuthorization(ch.token));
    else await dns.setTxt(`_acme-challenge.${name}`, c.dnsDigest('not-the-key-authorization'));
    responder.mode = mode;
    try {
      expect((await c.post(ch.url, {})).status).toBe(200);
      const done = await c.poll(ch.url, (b) => b.status !== 'processing');
      expect(done.status).toBe('invalid');
      expect(done.error.type).toBe(`${PROBLEM}${problem}`);
    } finally {
      responder.mode = 'right';
    }
    const order = (await c.post(o.headers.get('location')!, '')).body;
    expect(order.status).toBe('invalid');
    expect(order.error.subproblems[0]).toMatchObject({ type: `${PROBLEM}${problem}`, identifier: { type: 'dns', value: name } });
  });

  describe('bad requests answer problem documents, badNonce with a fresh nonce', () => {
    let c: AcmeTestClient;
    beforeAll(async () => {
      c = await account();
    });

    it('refuses a replayed nonce, and an unknown one, with badNonce and a fresh Replay-Nonce', async () => {
      const nonce = await c.nonce();
      expect((await c.post(c.kid!, '', { nonce })).status).toBe(200);
      for (const n of [nonce, 'AAAAAAAAAAAAAAAAAAAAAA']) {
        const r = await c.post(c.kid!, '', { nonce: n });
        expect(r.status).toBe(400);
        expect(r.body.type).toBe(`${PROBLEM}badNonce`);
        const fresh = r.headers.get('replay-nonce')!;
        expect(fresh).toBeTruthy();
        expect((await c.post(c.kid!, '', { nonce: fresh })).status).toBe(200);
      }
    });

    it.each([
      ['a url header for another resource', async (cl: AcmeTestClient) => cl.post(cl.kid!, '', { url: `${cl.directory.newOrder}` }), 403, 'unauthorized'],
      ['a kid on newAccount', async (cl: AcmeTestClient) => cl.post(cl.directory.newAccount, {}, {}), 400, 'malformed'],
      ['a jwk on newOrder', async (cl: AcmeTestClient) => cl.post(cl.directory.newOrder, { identifiers: [{ type: 'dns', value: 'x.acme.test' }] }, { useJwk: true }), 400, 'malformed'],
      ['an unknown account', async (cl: AcmeTestClient) => cl.post(cl.directory.newOrder, {}, { kid: `${cl.base}/acme/account/nobody` }), 400, 'accountDoesNotExist'],
      ['a kid that is no account URL', async (cl: AcmeTestClient) => cl.post(cl.directory.newOrder, {}, { kid: 'https://elsewhere/acct/1' }), 400, 'accountDoesNotExist'],
      ['another key signing for the account', async (cl: AcmeTestClient) => cl.post(cl.kid!, '', { key: await acmeKey() }), 400, 'malformed'],
      ['an HMAC algorithm', async (cl: AcmeTestClient) => cl.post(cl.kid!, '', { raw: JSON.stringify({ protected: Buffer.from(JSON.stringify({ alg: 'HS256', kid: cl.kid, nonce: 'x', url: cl.kid })).toString('base64url'), payload: '', signature: 'AA' }) }), 400, 'badSignatureAlgorithm'],
      ['"none" as algorithm', async (cl: AcmeTestClient) => cl.post(cl.kid!, '', { raw: JSON.stringify({ protected: Buffer.from(JSON.stringify({ alg: 'none', kid: cl.kid, nonce: 'x', url: cl.kid })).toString('base64url'), payload: '', signature: '' }) }), 400, 'badSignatureAlgorithm'],
      ['both jwk and kid', async (cl: AcmeTestClient) => cl.post(cl.kid!, '', { raw: await jws(cl.key, { jwk: cl.key.jwk, kid: cl.kid, nonce: await cl.nonce(), url: cl.kid }, '') }), 400, 'malformed'],
      ['an unprotected header', async (cl: AcmeTestClient) => cl.post(cl.kid!, '', { raw: JSON.stringify({ ...JSON.parse(await jws(cl.key, { kid: cl.kid, nonce: await cl.nonce(), url: cl.kid }, '')), header: { kid: 'x' } }) }), 400, 'malformed'],
      ['a body that is not JSON', async (cl: AcmeTestClient) => cl.post(cl.kid!, '', { raw: 'not json' }), 400, 'malformed'],
      ['the wrong content type', async (cl: AcmeTestClient) => cl.post(cl.kid!, '', { contentType: 'application/json' }), 415, 'malformed'],
    ])('refuses %s', async (_what, send, status, type) => {
      const r = await send(c);
      expect(r.status).toBe(status);
      expect(r.headers.get('content-type')).toBe('application/problem+json');
      expect(r.body.type).toBe(`${PROBLEM}${type}`);
      expect(r.headers.get('replay-nonce')).toBeTruthy();
      expect(JSON.stringify(r.body)).not.toMatch(/at \w+ \(/); // never a stack trace
    });

    it('refuses every request of a deactivated account', async () => {
      const d = await account();
      const r = await d.post(d.kid!, { status: 'deactivated' });
      expect(r.status).toBe(200);
      expect(r.body.status).toBe('deactivated');
      const after = await d.post(d.directory.newOrder, { identifiers: [{ type: 'dns', value: 'late.acme.test' }] });
      expect(after.status).toBe(403);
      expect(after.body.type).toBe(`${PROBLEM}unauthorized`);
    });
  });
});

describe.each(backends({ pkcs11: false }).slice(0, 1))('ACME without External Account Binding ($name)', (backend) => {
  let ca: TestCa;
  let dns: ChallTestSrv;
  beforeAll(async () => {
    dns = await startChallTestSrv();
    ca = await startTestCa(backend, {
      env: {
        HSMCA_ACME_REQUIRE_EAB: 'false',
        HSMCA_ACME_ALLOWED_DOMAINS: '*.open.test',
        HSMCA_ACME_DNS_RESOLVER: `127.0.0.1:${dns.dnsPort}`,
        HSMCA_ACME_HTTP01_PORT: String(await freePort()),
        HSMCA_ACME_VALIDATION_ATTEMPTS: '1',
        HSMCA_ACME_NEW_ACCOUNTS_PER_ADDRESS_PER_HOUR: '3',
      },
    });
  });
  afterAll(async () => {
    await ca?.stop();
    await dns?.stop();
  });

  it('allows only HSMCA_ACME_ALLOWED_DOMAINS, refuses to validate against private addresses, and limits new accounts per address', async () => {
    const c = await AcmeTestClient.open(ca);
    expect(c.directory.meta).toEqual({ externalAccountRequired: false, profiles: { 'tls-server': expect.stringMatching(/serverAuth/) } });
    expect((await c.newAccount()).status).toBe(201);
    const outside = await c.post(c.directory.newOrder, { identifiers: [{ type: 'dns', value: 'www.closed.test' }] });
    expect(outside.body.type).toBe(`${PROBLEM}rejectedIdentifier`);
    const o = await c.post(c.directory.newOrder, { identifiers: [{ type: 'dns', value: 'www.open.test' }] });
    expect(o.status).toBe(201);
    // www.open.test resolves to 127.0.0.1 (challtestsrv): without HSMCA_ACME_ALLOW_PRIVATE_ADDRESSES the CA does not connect there
    const authz = (await c.post(o.body.authorizations[0], '')).body;
    const ch = authz.challenges.find((x: any) => x.type === 'http-01');
    await c.post(ch.url, {});
    const done = await c.poll(ch.url, (b) => b.status !== 'processing');
    expect(done.status).toBe('invalid');
    expect(done.error.type).toBe(`${PROBLEM}rejectedIdentifier`);
    expect(done.error.detail).toMatch(/private, loopback or link-local/);
    for (let i = 0; i < 2; i++) expect((await (await AcmeTestClient.open(ca)).newAccount()).status).toBe(201);
    const limited = await (await AcmeTestClient.open(ca)).newAccount();
    expect(limited.status).toBe(429);
    expect(limited.body.type).toBe(`${PROBLEM}rateLimited`);
  });
});

describe.each(backends({ pkcs11: false }).slice(0, 1))('ACME finalizations take from the issuance rate limits ($name)', (backend) => {
  let ca: TestCa;
  let dns: ChallTestSrv;
  beforeAll(async () => {
    dns = await startChallTestSrv();
    ca = await startTestCa(backend, {
      env: { HSMCA_ACME_DNS_RESOLVER: `127.0.0.1:${dns.dnsPort}`, HSMCA_ACME_VALIDATION_ATTEMPTS: '1', HSMCA_ISSUE_RATE_PER_TOKEN: '1' },
    });
    await requesterToken(ca, 'limited', { names: ['*.acme.test'] });
  });
  afterAll(async () => {
    await ca?.stop();
    await dns?.stop();
  });

  it('answers rateLimited with Retry-After past the bound token\'s issuance limit', async () => {
    const c = await AcmeTestClient.open(ca);
    const [kid, hmac] = await createEab(ca, 'limited');
    expect((await c.newAccount({ externalAccountBinding: await c.eab(kid, hmac) })).status).toBe(201);
    const statuses: any[] = [];
    for (const name of ['one.acme.test', 'two.acme.test']) {
      const o = await c.post(c.directory.newOrder, { identifiers: [{ type: 'dns', value: name }] });
      const authz = (await c.post(o.body.authorizations[0], '')).body;
      const ch = authz.challenges.find((x: any) => x.type === 'dns-01');
      await dns.setTxt(`_acme-challenge.${name}`, c.dnsDigest(await c.keyAuthorization(ch.token)));
      await c.post(ch.url, {});
      expect((await c.poll(o.headers.get('location')!, (b) => b.status !== 'pending')).status).toBe('ready');
      const fin = await c.post(o.body.finalize, { csr: csrB64(makeCsr({ sans: `DNS:${name}` }).csr) });
      statuses.push([fin.status, fin.body.type ?? fin.body.status, fin.headers.get('retry-after') !== null]);
    }
    expect(statuses).toEqual([
      [200, 'valid', false],
      [429, `${PROBLEM}rateLimited`, true],
    ]);
  });
});
