import { AcmeTestClient, createEab, requesterToken } from './helpers/acme-client';
import { ChallTestSrv, startChallTestSrv } from './helpers/challtestsrv';
import { makeCsr, writeTemp } from './helpers/csr';
import { backends, run, startTestCa, tempDir, TestCa } from './helpers/harness';
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

  describe('authorization reuse', () => {
    const order = (c: AcmeTestClient, ...names: string[]) => c.post(c.directory.newOrder, { identifiers: names.map((value) => ({ type: 'dns', value })) });
    const authzStatus = async (c: AcmeTestClient, url: string) => (await c.post(url, '')).body.status;

    it('reuses a valid authorization of the same account and identifier: the order is ready at once', async () => {
      const c = await account('both');
      const first = await order(c, 'reuse.acme.test');
      expect((await answer(c, first.headers.get('location')!, first.body.authorizations)).status).toBe('ready');
      const again = await order(c, 'reuse.acme.test');
      expect(again.status).toBe(201);
      expect(again.body.status).toBe('ready');
      expect(again.body.authorizations).toEqual(first.body.authorizations);
      const { csr } = makeCsr({ sans: 'DNS:reuse.acme.test' });
      const fin = await c.post(again.body.finalize, { csr: csrB64(csr) });
      expect([fin.status, fin.body.status]).toEqual([200, 'valid']);
      // mixed: the held name is reused, the new one waits for its validation, then the order is ready
      const mixed = await order(c, 'reuse.acme.test', 'new.acme.test');
      expect(mixed.body.status).toBe('pending');
      expect(mixed.body.authorizations).toContain(first.body.authorizations[0]);
      expect((await answer(c, mixed.headers.get('location')!, mixed.body.authorizations)).status).toBe('ready');
      // another account validates for itself
      const other = await account('both');
      const theirs = await order(other, 'reuse.acme.test');
      expect(theirs.body.status).toBe('pending');
      expect(theirs.body.authorizations).not.toContain(first.body.authorizations[0]);
    });

    it('never carries a wildcard authorization to the plain name, nor the other way round', async () => {
      const c = await account('both');
      const wild = await order(c, '*.wild.acme.test');
      expect((await answer(c, wild.headers.get('location')!, wild.body.authorizations)).status).toBe('ready');
      const plain = await order(c, 'wild.acme.test');
      expect(plain.body.status).toBe('pending');
      expect(plain.body.authorizations).not.toEqual(wild.body.authorizations);
      expect((await answer(c, plain.headers.get('location')!, plain.body.authorizations)).status).toBe('ready');
      const wildAgain = await order(c, '*.wild.acme.test');
      expect(wildAgain.body).toMatchObject({ status: 'ready', authorizations: wild.body.authorizations });
      const plainAgain = await order(c, 'wild.acme.test');
      expect(plainAgain.body).toMatchObject({ status: 'ready', authorizations: plain.body.authorizations });
    });

    it('never reuses a deactivated authorization, nor those behind a revoked certificate, nor a deactivated account\'s', async () => {
      const c = await account('both');
      const first = await order(c, 'gone.acme.test');
      await answer(c, first.headers.get('location')!, first.body.authorizations);
      const deact = await c.post(first.body.authorizations[0], { status: 'deactivated' });
      expect(deact.body.status).toBe('deactivated');
      const afterDeact = await order(c, 'gone.acme.test');
      expect(afterDeact.body.status).toBe('pending');
      const ready = await answer(c, afterDeact.headers.get('location')!, afterDeact.body.authorizations);
      const { csr } = makeCsr({ sans: 'DNS:gone.acme.test' });
      const fin = await c.post(ready.finalize, { csr: csrB64(csr) });
      const pem = ((await c.post(fin.body.certificate, '')).body as string).match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/)![0];
      const der = Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
      expect((await c.post(c.directory.revokeCert, { certificate: der.toString('base64url'), reason: 1 })).status).toBe(200);
      expect(await authzStatus(c, afterDeact.body.authorizations[0])).toBe('revoked');
      const afterRevoke = await order(c, 'gone.acme.test');
      expect(afterRevoke.body.status).toBe('pending');
      await answer(c, afterRevoke.headers.get('location')!, afterRevoke.body.authorizations);
      expect(await authzStatus(c, afterRevoke.body.authorizations[0])).toBe('valid');
      expect((await c.post(c.kid!, { status: 'deactivated' })).body.status).toBe('deactivated');
      // the account can no longer ask; its authorization is deactivated in the database too
      const held = await c.post(afterRevoke.body.authorizations[0], '');
      expect(held.body.type).toBe(`${PROBLEM}unauthorized`);
      const row = await ca.svc.core.db.knex('acme_authorizations').where({ id: afterRevoke.body.authorizations[0].split('/').pop() }).first();
      expect(row.status).toBe('deactivated');
    });
  });
});

describe.each(backends({ pkcs11: false }).slice(0, 1))('HSMCA_ACME_AUTHZ_REUSE_HOURS=0 ($name)', (backend) => {
  it('validates every order afresh', async () => {
    const dns = await startChallTestSrv();
    const ca = await startTestCa(backend, { env: { HSMCA_ACME_ALLOW_PRIVATE_ADDRESSES: 'true', HSMCA_ACME_DNS_RESOLVER: `127.0.0.1:${dns.dnsPort}`, HSMCA_ACME_AUTHZ_REUSE_HOURS: '0' } });
    try {
      await requesterToken(ca, 'web', { names: ['*.acme.test'] });
      const c = await AcmeTestClient.open(ca);
      const [kid, hmac] = await createEab(ca, 'web');
      await c.newAccount({ termsOfServiceAgreed: true, externalAccountBinding: await c.eab(kid, hmac) });
      const first = await c.post(c.directory.newOrder, { identifiers: [{ type: 'dns', value: 'once.acme.test' }] });
      const authz = (await c.post(first.body.authorizations[0], '')).body;
      const ch = authz.challenges.find((x: any) => x.type === 'dns-01');
      await dns.setTxt('_acme-challenge.once.acme.test', c.dnsDigest(await c.keyAuthorization(ch.token)));
      await c.post(ch.url, {});
      expect((await c.poll(first.headers.get('location')!, (b) => b.status !== 'pending')).status).toBe('ready');
      const again = await c.post(c.directory.newOrder, { identifiers: [{ type: 'dns', value: 'once.acme.test' }] });
      expect(again.body.status).toBe('pending');
      expect(again.body.authorizations).not.toEqual(first.body.authorizations);
    } finally {
      await ca.stop();
      await dns.stop();
    }
  });
});

describe.each(backends({ pkcs11: false }))('External Account Binding keys ($name)', (backend) => {
  let ca: TestCa;
  beforeAll(async () => {
    ca = await startTestCa(backend);
    await requesterToken(ca, 'eab-web', { names: ['*.acme.test'] });
  });
  afterAll(async () => ca?.stop());

  it('erases the HMAC key in the binding, and binds one account only', async () => {
    const [kid, hmac] = await createEab(ca, 'eab-web');
    const row = () => ca.svc.core.db.knex('acme_eab_keys').where({ kid }).first();
    expect((await row()).hmac_key).toBe(hmac);
    const c = await AcmeTestClient.open(ca);
    expect((await c.newAccount({ externalAccountBinding: await c.eab(kid, hmac) })).status).toBe(201);
    const bound = await row();
    expect(bound.hmac_key).toBe('');
    expect(bound.account_id).toBe(c.kid!.split('/').pop());
    // neither the old HMAC nor an empty one binds a second account
    for (const key of [hmac, '']) {
      const other = await AcmeTestClient.open(ca);
      const r = await other.newAccount({ externalAccountBinding: await other.eab(kid, key) });
      expect(r.status).toBe(403);
      expect(r.body.type).toBe(`${PROBLEM}unauthorized`);
    }
  });
});

describe('migration 009', () => {
  it('erases the HMAC keys of already bound EAB keys, keeps unbound ones, and links every authorization to its order', async () => {
    const { default: knexFactory } = await import('knex');
    const { migrationSource } = await import('../migrations');
    const dir = tempDir();
    const knex = knexFactory({ client: 'better-sqlite3', connection: { filename: `${dir}/m.db` }, useNullAsDefault: true });
    try {
      while (!(await knex.migrate.list({ migrationSource }))[0].some((m: { name: string } | string) => (typeof m === 'string' ? m : m.name) === '008_acme')) await knex.migrate.up({ migrationSource });
      await knex('acme_eab_keys').insert([
        { kid: 'bound', hmac_key: 'c2VjcmV0', token_id: 't', created_at: 1, account_id: 'a1' },
        { kid: 'free', hmac_key: 'c2VjcmV0Mg', token_id: 't', created_at: 1, account_id: null },
      ]);
      await knex('acme_authorizations').insert({ id: 'z1', order_id: 'o1', account_id: 'a1', identifier_type: 'dns', identifier_value: 'x.test', wildcard: false, status: 'valid', expires_at: 9 });
      await knex.migrate.latest({ migrationSource });
      expect(await knex('acme_eab_keys').orderBy('kid').select('kid', 'hmac_key')).toEqual([
        { kid: 'bound', hmac_key: '' },
        { kid: 'free', hmac_key: 'c2VjcmV0Mg' },
      ]);
      expect(await knex('acme_order_authorizations').select('order_id', 'authz_id')).toEqual([{ order_id: 'o1', authz_id: 'z1' }]);
    } finally {
      await knex.destroy();
    }
  });
});
