import { AcmeTestClient, createEab, requesterToken } from './helpers/acme-client';
import { ChallTestSrv, startChallTestSrv } from './helpers/challtestsrv';
import { makeCsr, writeTemp } from './helpers/csr';
import { backends, run, startTestCa, TestCa } from './helpers/harness';
import { loadConfig } from '../src/config';

jest.setTimeout(120_000);

const PROBLEM = 'urn:ietf:params:acme:error:';
const csrB64 = (pem: string) => Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64').toString('base64url');

/** ACME policy beyond RFC 8555's core: profiles (draft-ietf-acme-profiles), authorization reuse, EAB keys. */

describe('HSMCA_ACME_PROFILES', () => {
  it('defaults to tls-server, and names only profiles of this CA, once each', () => {
    expect(loadConfig({}).acme.profiles).toEqual(['tls-server']);
    expect(loadConfig({ HSMCA_ACME_PROFILES: 'tls-client, tls-server' }).acme.profiles).toEqual(['tls-client', 'tls-server']);
    expect(() => loadConfig({ HSMCA_ACME_PROFILES: 'tls-server,nope' })).toThrow(/^HSMCA_ACME_PROFILES: "nope" is not a profile of this CA/);
    expect(() => loadConfig({ HSMCA_ACME_PROFILES: 'tls-server,tls-server' })).toThrow(/^HSMCA_ACME_PROFILES: names a profile twice/);
  });
});

describe.each(backends({ pkcs11: false }))('ACME policy ($name)', (backend) => {
  let ca: TestCa;
  let dns: ChallTestSrv;

  beforeAll(async () => {
    dns = await startChallTestSrv();
    ca = await startTestCa(backend, {
      env: {
        HSMCA_ACME_ALLOW_PRIVATE_ADDRESSES: 'true',
        HSMCA_ACME_DNS_RESOLVER: `127.0.0.1:${dns.dnsPort}`,
        HSMCA_ACME_VALIDATION_TIMEOUT_SECONDS: '2',
        HSMCA_ACME_VALIDATION_ATTEMPTS: '1',
        HSMCA_ACME_PROFILES: 'tls-server,tls-client',
      },
    });
    await requesterToken(ca, 'servers-only', { names: ['*.acme.test'], profiles: ['tls-server'] });
    await requesterToken(ca, 'both', { names: ['*.acme.test'], profiles: ['tls-server', 'tls-client'] });
  });
  afterAll(async () => {
    await ca?.stop();
    await dns?.stop();
  });

  async function account(token: string): Promise<AcmeTestClient> {
    const c = await AcmeTestClient.open(ca);
    const [kid, hmac] = await createEab(ca, token);
    const r = await c.newAccount({ termsOfServiceAgreed: true, externalAccountBinding: await c.eab(kid, hmac) });
    expect(r.status).toBe(201);
    return c;
  }

  /** answers each pending authorization of the order by dns-01 and waits for the order to leave pending */
  async function answer(c: AcmeTestClient, orderUrl: string, authzUrls: string[]): Promise<any> {
    for (const url of authzUrls) {
      const authz = (await c.post(url, '')).body;
      if (authz.status !== 'pending') continue;
      const ch = authz.challenges.find((x: any) => x.type === 'dns-01');
      await dns.setTxt(`_acme-challenge.${authz.identifier.value}`, c.dnsDigest(await c.keyAuthorization(ch.token)));
      expect((await c.post(ch.url, {})).status).toBe(200);
    }
    return c.poll(orderUrl, (b) => b.status !== 'pending');
  }

  it('lists the offered profiles in the directory, name → description', async () => {
    const d = (await (await fetch(`${ca.url}/acme/directory`)).json()) as any;
    expect(Object.keys(d.meta.profiles)).toEqual(['tls-server', 'tls-client']);
    expect(d.meta.profiles['tls-server']).toMatch(/serverAuth/);
    expect(d.meta.profiles['tls-client']).toMatch(/clientAuth/);
  });

  it('stores the asked profile, issues with it, and refuses unknown or unpermitted profiles with invalidProfile', async () => {
    const servers = await account('servers-only');
    const dflt = await servers.post(servers.directory.newOrder, { identifiers: [{ type: 'dns', value: 'd.acme.test' }] });
    expect(dflt.status).toBe(201);
    expect(dflt.body.profile).toBe('tls-server');
    for (const [profile, detail] of [
      ['tls-client', /may not use the profile "tls-client"/],
      ['nope', /"nope" is not a profile offered here/],
    ] as const) {
      const r = await servers.post(servers.directory.newOrder, { identifiers: [{ type: 'dns', value: 'x.acme.test' }], profile });
      expect(r.status).toBe(400);
      expect(r.headers.get('content-type')).toBe('application/problem+json');
      expect(r.body).toMatchObject({ type: `${PROBLEM}invalidProfile`, detail: expect.stringMatching(detail) });
    }
    expect((await servers.post(servers.directory.newOrder, { identifiers: [{ type: 'dns', value: 'x.acme.test' }], profile: 7 })).body.type).toBe(`${PROBLEM}malformed`);

    const both = await account('both');
    const o = await both.post(both.directory.newOrder, { identifiers: [{ type: 'dns', value: 'client.acme.test' }], profile: 'tls-client' });
    expect(o.status).toBe(201);
    expect(o.body.profile).toBe('tls-client');
    const ready = await answer(both, o.headers.get('location')!, o.body.authorizations);
    expect(ready.status).toBe('ready');
    const { csr } = makeCsr({ sans: 'DNS:client.acme.test' });
    const fin = await both.post(ready.finalize, { csr: csrB64(csr) });
    expect(fin.status).toBe(200);
    expect(fin.body.profile).toBe('tls-client');
    const pem = ((await both.post(fin.body.certificate, '')).body as string).match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/)![0];
    expect(run('openssl', ['x509', '-in', writeTemp('client.pem', pem), '-noout', '-ext', 'extendedKeyUsage'])).toContain('TLS Web Client Authentication');
  });
});
