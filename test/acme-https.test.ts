import * as https from 'node:https';
import { acmeBaseUrl } from '../src/acme/acme-urls';
import { loadConfig } from '../src/config';
import { AcmeTestClient } from './helpers/acme-client';
import { backends, freePort, startTestCa } from './helpers/harness';

jest.setTimeout(120_000);

/** Contract section 7: the ACME directory and every URL in it are served over HTTPS. */

/** GET or POST over HTTPS trusting only `ca`. */
function httpsFetch(url: string, ca: string, o: { method?: string; body?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: any; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method: o.method ?? 'GET', ca, headers: o.headers, agent: new https.Agent({ keepAlive: false }) }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          /* not JSON */
        }
        resolve({ status: res.statusCode ?? 0, body, headers: res.headers });
      });
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

describe('the ACME base URL setting', () => {
  it.each([
    ['http://ca.example.com/acme', /^HSMCA_ACME_BASE_URL: must be an https:\/\/ URL/],
    ['not a url', /^HSMCA_ACME_BASE_URL: must be an https:\/\/ URL/],
    ['https://ca.example.com/acme?x=1', /^HSMCA_ACME_BASE_URL: must be an https:\/\/ URL/],
    ['https://u:p@ca.example.com/acme', /^HSMCA_ACME_BASE_URL: must be an https:\/\/ URL/],
  ])('refuses %s', (value, message) => {
    expect(() => loadConfig({ HSMCA_ACME_BASE_URL: value })).toThrow(message);
  });

  it('is the HTTPS listener on the public URL\'s host, the override, or the public URL with HTTPS off', () => {
    expect(acmeBaseUrl(loadConfig({ HSMCA_PUBLIC_URL: 'http://ca.internal:8080' }))).toBe('https://ca.internal:8443/acme');
    expect(acmeBaseUrl(loadConfig({ HSMCA_PUBLIC_URL: 'http://ca.internal:8080', HSMCA_HTTPS_PORT: '9443' }))).toBe('https://ca.internal:9443/acme');
    expect(acmeBaseUrl(loadConfig({ HSMCA_PUBLIC_URL: 'http://[fd00::5]:8080' }))).toBe('https://[fd00::5]:8443/acme');
    expect(acmeBaseUrl(loadConfig({ HSMCA_PUBLIC_URL: 'http://ca.internal:8080', HSMCA_ACME_BASE_URL: 'https://acme.example.com/pki/acme/' }))).toBe('https://acme.example.com/pki/acme');
    expect(acmeBaseUrl(loadConfig({ HSMCA_PUBLIC_URL: 'https://ca.example.com', HSMCA_HTTPS_PORT: '0' }))).toBe('https://ca.example.com/acme');
  });
});

describe.each(backends({ pkcs11: false }))('ACME over HTTPS ($name)', (backend) => {
  it('on a host that is not loopback: the directory names HTTPS URLs only, and plain HTTP answers a problem naming it', async () => {
    const port = await freePort();
    const httpsPort = await freePort();
    const ca = await startTestCa(backend, { env: { HSMCA_HOST: '0.0.0.0', HSMCA_PORT: String(port), HSMCA_PUBLIC_URL: `http://127.0.0.1:${port}`, HSMCA_HTTPS_PORT: String(httpsPort) } });
    try {
      const root = ((await (await fetch(`http://127.0.0.1:${port}/api/v1/ca`)).json()) as { root: string }).root;
      const base = `https://127.0.0.1:${httpsPort}/acme`;
      const dir = await httpsFetch(`${base}/directory`, root);
      expect(dir.status).toBe(200);
      for (const k of ['newNonce', 'newAccount', 'newOrder', 'revokeCert', 'keyChange', 'renewalInfo']) expect([k, dir.body[k]]).toEqual([k, expect.stringMatching(new RegExp(`^${base.replace(/\./g, '\\.')}/`))]);
      const nonce = await httpsFetch(dir.body.newNonce, root, { method: 'HEAD' });
      expect(nonce.status).toBe(200);
      expect(nonce.headers['replay-nonce']).toMatch(/^[A-Za-z0-9_-]+$/);
      for (const [method, p] of [['GET', '/acme/directory'], ['HEAD', '/acme/new-nonce'], ['POST', '/acme/new-account'], ['POST', '/acme/new-order']]) {
        const r = await fetch(`http://127.0.0.1:${port}${p}`, { method, headers: { 'content-type': 'application/jose+json' }, body: method === 'POST' ? '{}' : undefined });
        expect([p, r.status, r.headers.get('content-type')]).toEqual([p, 403, 'application/problem+json']);
        if (method !== 'HEAD') {
          expect(await r.json()).toEqual({ type: 'urn:ietf:params:acme:error:malformed', status: 403, detail: `ACME is served on HTTPS only: the directory is ${base}/directory` });
        }
      }
    } finally {
      await ca.stop();
    }
  });

  it('on loopback, the plain port still answers ACME, its directory pointing at HTTPS', async () => {
    const httpsPort = await freePort();
    const ca = await startTestCa(backend, { env: { HSMCA_HTTPS_PORT: String(httpsPort) } });
    try {
      const dir = (await (await fetch(`${ca.url}/acme/directory`)).json()) as Record<string, string>;
      expect(dir.newAccount).toBe(`https://127.0.0.1:${httpsPort}/acme/new-account`);
    } finally {
      await ca.stop();
    }
  });

  it('HSMCA_ACME_BASE_URL: a proxy\'s URL in the directory, and JWS "url" headers naming it are accepted', async () => {
    const ca = await startTestCa(backend, { env: { HSMCA_ACME_BASE_URL: 'https://acme.example.test/pki/acme', HSMCA_ACME_REQUIRE_EAB: 'false', HSMCA_ACME_ALLOWED_DOMAINS: '*.acme.test' } });
    try {
      const c = await AcmeTestClient.open(ca);
      expect(c.directory.newAccount).toBe('https://acme.example.test/pki/acme/new-account');
      const nonce = async () => (await fetch(`${ca.url}/acme/new-nonce`, { method: 'HEAD' })).headers.get('replay-nonce')!;
      // what the proxy forwards to /acme/new-account, signed for the URL the client used
      const created = await c.post(`${ca.url}/acme/new-account`, { termsOfServiceAgreed: true }, { nonce: await nonce(), url: c.directory.newAccount, useJwk: true });
      expect(created.status).toBe(201);
      expect(created.headers.get('location')).toMatch(/^https:\/\/acme\.example\.test\/pki\/acme\/account\//);
      // the URL the server itself is at is not the one clients sign for
      const wrong = await c.post(`${ca.url}/acme/new-account`, { termsOfServiceAgreed: true }, { nonce: await nonce(), useJwk: true });
      expect(wrong.status).toBe(403);
      expect(wrong.body.type).toBe('urn:ietf:params:acme:error:unauthorized');
    } finally {
      await ca.stop();
    }
  });
});
