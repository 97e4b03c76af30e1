import * as fs from 'node:fs';
import * as fc from 'fast-check';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { uiRoutes } from '../src/http/routes/ui';
import { CertificateStore, SEARCH_WINDOW } from '../src/storage/certificate-store';
import { fillCertificates, openBenchDatabase } from '../bench/fill';
import { AcmeTestClient } from './helpers/acme-client';
import { makeCsr } from './helpers/csr';
import { TestCa, backends, startTestCa, tempDir } from './helpers/harness';

/**
 * The API routes the admin console uses (and any script may): who am I, the
 * overview, issuances and revocations per hour, certificate search and decoded
 * details with the OCSP answer, audit filters, ACME accounts and EAB keys; and
 * the console's static files with their CSP. On every test back-end.
 */

const colons = (hex: string) => hex.toUpperCase().match(/../g)!.join(':');

describe.each(backends())('console API on $name', (backend) => {
  let ca: TestCa;
  let alice: { id: string; token: string };
  let bob: { id: string; token: string };
  const serials: Record<string, string> = {};

  const token = async (name: string, scope?: unknown) => {
    const r = await ca.api('POST', '/api/v1/tokens', { body: { role: 'requester', name, scope } });
    expect(r.status).toBe(201);
    return { id: r.body.id as string, token: r.body.token as string };
  };
  const issue = async (tok: string, cn: string, profile = 'tls-server', slot = 0) => {
    const { csr } = makeCsr({ subject: `/CN=${cn}`, sans: profile === 'tls-server' ? `DNS:${cn}` : `email:${cn}`, slot });
    const r = await ca.api('POST', '/api/v1/certificates', { token: tok, body: { csr, profile, validityDays: 30 } });
    expect(r.status).toBe(201);
    return r.body.serialNumber as string;
  };

  beforeAll(async () => {
    // the console as `npm run build` makes it (npm test builds it first)
    if (!fs.existsSync(path.join(__dirname, '..', 'dist', 'ui', 'app.js'))) await require('../scripts/build-ui.js').buildUi();
    ca = await startTestCa(backend);
    alice = await token('alice', { canRevoke: true });
    bob = await token('bob');
    serials.a1 = await issue(alice.token, 'shop.alice.example', 'tls-server', 1);
    serials.a2 = await issue(alice.token, 'api.alice.example', 'tls-server', 1);
    serials.b1 = await issue(bob.token, 'shop.bob.example', 'tls-server', 2);
    serials.c1 = await issue(ca.adminToken, 'ops@alice.example', 'tls-client', 3);
    expect((await ca.api('POST', `/api/v1/certificates/${serials.a2}/revoke`, { body: { reason: 'keyCompromise' } })).status).toBe(200);
  });
  afterAll(() => ca?.stop());

  it('whoami names the caller', async () => {
    expect((await ca.api('GET', '/api/v1/whoami')).body).toMatchObject({ name: 'admin', role: 'admin', scope: null });
    expect((await ca.api('GET', '/api/v1/whoami', { token: alice.token })).body).toEqual({ id: alice.id, name: 'alice', role: 'requester', scope: { canRevoke: true } });
    const refused = await ca.api('GET', '/api/v1/whoami', { token: 'f'.repeat(64) });
    expect(refused.status).toBe(401);
    expect(refused.body.error.code).toBe('invalidToken');
  });

  it('the overview: chain, HSM tokens, CRL, OCSP signer and counts, for admins', async () => {
    const r = await ca.api('GET', '/api/v1/overview');
    expect(r.status).toBe(200);
    const o = r.body;
    expect(o.ca.issuer.subject).toContain('Issuing CA');
    expect(o.ca.root.subject).toContain('Root CA');
    expect(o.hsm).toMatchObject({ kind: backend.hsm, status: 'ok' });
    expect(o.hsm.tokens.length).toBeGreaterThanOrEqual(1);
    expect(o.hsm.tokens.every((t: { status: string }) => t.status === 'ok')).toBe(true);
    expect(Number(o.crl.crlNumber)).toBeGreaterThanOrEqual(1);
    expect(new Date(o.crl.nextUpdate).getTime()).toBeGreaterThan(Date.now());
    expect(o.ocspSigner.subject).toContain('OCSP');
    expect(new Date(o.ocspSigner.notAfter).getTime()).toBeGreaterThan(Date.now());
    expect(o.counts).toMatchObject({ total: 4, revoked: 1, good: 3 });
    expect((await ca.api('GET', '/api/v1/overview', { token: alice.token })).status).toBe(403);
  });

  it('issuances and revocations per hour; a requester counts only its own', async () => {
    const all = await ca.api('GET', '/api/v1/stats/hourly?hours=48');
    expect(all.status).toBe(200);
    expect(all.body.hours).toHaveLength(48);
    const hours: { hour: string; issued: number; revoked: number }[] = all.body.hours;
    // one bucket per hour, oldest first, the current hour last
    for (let i = 1; i < hours.length; i++) expect(Date.parse(hours[i].hour) - Date.parse(hours[i - 1].hour)).toBe(3_600_000);
    expect(Date.parse(hours[47].hour)).toBe(Math.floor(Date.now() / 3_600_000) * 3_600_000);
    const sum = (h: typeof hours, k: 'issued' | 'revoked') => h.reduce((a, b) => a + b[k], 0);
    expect([sum(hours, 'issued'), sum(hours, 'revoked')]).toEqual([4, 1]);
    const mine = (await ca.api('GET', '/api/v1/stats/hourly', { token: alice.token })).body.hours;
    expect(mine).toHaveLength(168);
    expect([sum(mine, 'issued'), sum(mine, 'revoked')]).toEqual([2, 1]);
    const bobs = (await ca.api('GET', '/api/v1/stats/hourly?hours=24', { token: bob.token })).body.hours;
    expect([sum(bobs, 'issued'), sum(bobs, 'revoked')]).toEqual([1, 0]);
    for (const bad of ['0', '745', 'x', '1.5']) {
      const r = await ca.api('GET', `/api/v1/stats/hourly?hours=${bad}`);
      expect([r.status, r.body.error.code]).toEqual([400, 'invalidHours']);
    }
  });

  it.each([
    ['a name, any case', { q: 'ALICE.example' }, ['c1', 'a2', 'a1']],
    ['a name and a profile', { q: 'alice', profile: 'tls-server' }, ['a2', 'a1']],
    ['a name and a status', { q: 'alice', status: 'revoked' }, ['a2']],
    ['a serial with colons in upper case', { q: 'SERIAL:a1' }, ['a1']],
    ['a profile alone', { profile: 'tls-client' }, ['c1']],
    ['a LIKE wildcard taken literally', { q: '%' }, []],
    ['an underscore taken literally', { q: 'shop_alice' }, []],
  ])('searching by %s', async (_what, query, expected) => {
    const params = new URLSearchParams(Object.entries(query as Record<string, string>).map(([k, v]): [string, string] => [k, v.startsWith('SERIAL:') ? colons(serials[v.slice(7)]) : v]));
    const r = await ca.api('GET', `/api/v1/certificates?${params}`);
    expect(r.status).toBe(200);
    expect(r.body.items.map((i: { serialNumber: string }) => i.serialNumber)).toEqual(expected.map((k) => serials[k]));
  });

  it('search pages with a cursor, and a requester finds only its own', async () => {
    const first = await ca.api('GET', '/api/v1/certificates?q=shop&limit=1');
    expect(first.body.items.map((i: { serialNumber: string }) => i.serialNumber)).toEqual([serials.b1]);
    const second = await ca.api('GET', `/api/v1/certificates?q=shop&limit=1&cursor=${first.body.nextCursor}`);
    expect(second.body.items.map((i: { serialNumber: string }) => i.serialNumber)).toEqual([serials.a1]);
    expect(second.body.nextCursor).toBeNull();

    const asAlice = await ca.api('GET', '/api/v1/certificates?q=shop', { token: alice.token });
    expect(asAlice.body.items.map((i: { serialNumber: string }) => i.serialNumber)).toEqual([serials.a1]);
    expect((await ca.api('GET', `/api/v1/certificates?q=${serials.b1}`, { token: alice.token })).body.items).toEqual([]);
    expect((await ca.api('GET', `/api/v1/certificates?q=${'x'.repeat(201)}`)).body.error.code).toBe('invalidQ');
    const twice = await ca.api('GET', '/api/v1/certificates?q=a&q=b');
    expect([twice.status, twice.body.error.code]).toEqual([400, 'invalidQ']);
  });

  it('details: decoded fields and what OCSP answers, to the admin and the owner only', async () => {
    const r = await ca.api('GET', `/api/v1/certificates/${colons(serials.a1)}/details`, { token: alice.token });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ serialNumber: serials.a1, subject: 'CN=shop.alice.example', profile: 'tls-server', publicKey: { algorithm: 'ECDSA', curve: 'P-256' } });
    expect(r.body.sha256Fingerprint).toMatch(/^[0-9a-f]{64}$/);
    const ext = Object.fromEntries(r.body.extensions.map((e: { name: string; value: string; critical: boolean }) => [e.name, e]));
    expect(ext.subjectAltName.value).toBe('DNS:shop.alice.example');
    expect(ext.extKeyUsage.value).toBe('serverAuth');
    expect(ext.keyUsage).toMatchObject({ value: 'digitalSignature', critical: true });
    expect(ext.basicConstraints).toMatchObject({ value: 'CA:FALSE', critical: true });
    expect(ext.authorityInfoAccess.value).toContain(`OCSP ${ca.url}/ocsp`);
    expect(r.body.ocsp).toMatchObject({ status: 'good', revokedAt: null });
    expect(new Date(r.body.ocsp.nextUpdate).getTime()).toBeGreaterThan(Date.now());

    const revoked = await ca.api('GET', `/api/v1/certificates/${serials.a2}/details`);
    expect(revoked.body.ocsp).toMatchObject({ status: 'revoked', reason: 'keyCompromise' });

    const other = await ca.api('GET', `/api/v1/certificates/${serials.a1}/details`, { token: bob.token });
    expect([other.status, other.body.error.code]).toEqual([404, 'certificateNotFound']);
    expect((await ca.api('GET', '/api/v1/certificates/zz/details')).body.error.code).toBe('invalidSerial');
    expect((await ca.api('GET', '/api/v1/certificates/0badc0ffee/details')).status).toBe(404);
  });

  it('the audit trail filtered by type, actor and time, newest first with a cursor', async () => {
    const revoked = await ca.api('GET', '/api/v1/audit?type=certificateRevoked');
    expect(revoked.body.items.map((e: { subject: string }) => e.subject)).toEqual([serials.a2]);

    const alices = await ca.api('GET', '/api/v1/audit?actor=requester:alice&type=certificateIssued');
    expect(alices.body.items.map((e: { subject: string }) => e.subject)).toEqual([serials.a1, serials.a2]);

    const desc1 = await ca.api('GET', '/api/v1/audit?order=desc&type=certificateIssued&limit=3');
    expect(desc1.body.items.map((e: { subject: string }) => e.subject)).toEqual([serials.c1, serials.b1, serials.a2]);
    const desc2 = await ca.api('GET', `/api/v1/audit?order=desc&type=certificateIssued&limit=3&cursor=${desc1.body.nextCursor}`);
    expect(desc2.body.items.map((e: { subject: string }) => e.subject)).toEqual([serials.a1]);
    expect(desc2.body.nextCursor).toBeNull();
    // a cursor of one order is refused by the other
    const mixed = await ca.api('GET', `/api/v1/audit?cursor=${desc1.body.nextCursor}`);
    expect([mixed.status, mixed.body.error.code]).toEqual([400, 'invalidCursor']);

    const all = (await ca.api('GET', '/api/v1/audit?limit=500')).body.items;
    const mid = all[Math.floor(all.length / 2)].at;
    // the background jobs may append events meanwhile: compare the events that `all` read
    const lastSeq = all[all.length - 1].seq;
    const upTo = (items: { seq: number; at: string }[]) => items.filter((e) => e.seq <= lastSeq);
    const before = upTo((await ca.api('GET', `/api/v1/audit?limit=500&until=${encodeURIComponent(mid)}`)).body.items);
    const after = upTo((await ca.api('GET', `/api/v1/audit?limit=500&since=${Date.parse(mid)}`)).body.items);
    expect(before.length + after.length).toBe(all.length);
    expect(before.every((e: { at: string }) => e.at < mid)).toBe(true);
    expect(after.every((e: { at: string }) => e.at >= mid)).toBe(true);

    for (const [q, code] of [
      ['type=nonsense', 'invalidFilter'],
      ['since=yesterday', 'invalidTime'],
      ['until=2026-12-04', 'invalidTime'],
      ['order=sideways', 'invalidOrder'],
      ['actor=a&actor=b', 'invalidFilter'],
    ]) {
      const r = await ca.api('GET', `/api/v1/audit?${q}`);
      expect([q, r.status, r.body.error.code]).toEqual([q, 400, code]);
    }
    expect((await ca.api('GET', '/api/v1/audit', { token: alice.token })).status).toBe(403);
    expect((await ca.api('GET', '/api/v1/audit/verify')).body.ok).toBe(true);
  });

  it('EAB keys: created for a requester token, usable by an ACME client, listed without their HMAC key, withdrawn while unused', async () => {
    const made = await ca.api('POST', '/api/v1/acme/eab-keys', { body: { token: 'alice' } });
    expect(made.status).toBe(201);
    expect(made.body).toMatchObject({ tokenId: alice.id, tokenName: 'alice' });
    expect(made.body.hmacKey).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const spare = (await ca.api('POST', '/api/v1/acme/eab-keys', { body: { token: bob.id } })).body;

    // a real ACME account bound with it
    const client = await AcmeTestClient.open(ca);
    const acct = await client.newAccount({ termsOfServiceAgreed: true, contact: ['mailto:ops@alice.example'], externalAccountBinding: await client.eab(made.body.kid, made.body.hmacKey) });
    expect(acct.status).toBe(201);

    const keys = (await ca.api('GET', '/api/v1/acme/eab-keys')).body.items;
    const bound = keys.find((k: { kid: string }) => k.kid === made.body.kid);
    expect(bound).toMatchObject({ tokenId: alice.id, accountId: expect.any(String) });
    expect(JSON.stringify(keys)).not.toContain(made.body.hmacKey);
    expect(keys.find((k: { kid: string }) => k.kid === spare.kid)).toMatchObject({ tokenId: bob.id, accountId: null });

    const accounts = (await ca.api('GET', '/api/v1/acme/accounts')).body;
    expect(accounts.items).toHaveLength(1);
    expect(accounts.items[0]).toMatchObject({ id: bound.accountId, status: 'valid', contact: ['mailto:ops@alice.example'], tokenId: alice.id, eabKid: made.body.kid });
    expect(accounts.nextCursor).toBeNull();

    const used = await ca.api('POST', `/api/v1/acme/eab-keys/${made.body.kid}/revoke`);
    expect([used.status, used.body.error.code]).toEqual([409, 'eabKeyUsed']);
    expect((await ca.api('POST', `/api/v1/acme/eab-keys/${spare.kid}/revoke`)).status).toBe(200);
    expect((await ca.api('POST', `/api/v1/acme/eab-keys/${spare.kid}/revoke`)).body.error.code).toBe('eabKeyNotFound');
    // the withdrawn key binds nothing
    const late = await AcmeTestClient.open(ca);
    expect((await late.newAccount({ termsOfServiceAgreed: true, externalAccountBinding: await late.eab(spare.kid, spare.hmacKey) })).status).toBeGreaterThanOrEqual(400);
    const audit = (await ca.api('GET', '/api/v1/audit?type=acmeEabKeyRevoked')).body.items;
    expect(audit.map((e: { subject: string; actor: string }) => [e.subject, e.actor])).toEqual([[spare.kid, 'admin:admin']]);

    for (const [body, status, code] of [
      [{ token: 'admin' }, 400, 'notRequester'],
      [{ token: 'nobody' }, 404, 'tokenNotFound'],
      [{}, 400, 'invalidTokenName'],
      [[], 400, 'malformedJson'],
    ] as const) {
      const r = await ca.api('POST', '/api/v1/acme/eab-keys', { body });
      expect([r.status, r.body.error.code]).toEqual([status, code]);
    }
    expect((await ca.api('GET', '/api/v1/acme/eab-keys', { token: alice.token })).status).toBe(403);
    expect((await ca.api('GET', '/api/v1/acme/accounts?cursor=nope')).body.error.code).toBe('invalidCursor');
  });

  it('answers random search, filter and path input with results or contract errors, never a crash', async () => {
    const ok = (r: { status: number; body: any }) =>
      r.status === 200 || (r.status >= 400 && r.status < 500 && typeof r.body?.error?.code === 'string' && typeof r.body?.error?.message === 'string');
    const enc = encodeURIComponent;
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 60 }), fc.string({ maxLength: 30 }), fc.string({ maxLength: 30 }), async (a, b, c) => {
        const token = c.length % 2 ? alice.token : undefined;
        for (const p of [
          `/api/v1/certificates?q=${enc(a)}&profile=${enc(b)}&status=${enc(c)}`,
          `/api/v1/certificates?q=${enc(a)}&cursor=${enc(b)}`,
          `/api/v1/audit?type=${enc(a)}&actor=${enc(b)}&since=${enc(c)}&order=${enc(b)}`,
          `/api/v1/audit?until=${enc(a)}&cursor=${enc(c)}&order=desc`,
          `/api/v1/stats/hourly?hours=${enc(a)}`,
          `/api/v1/certificates/${enc(a) || '%20'}/details`,
          `/api/v1/acme/accounts?cursor=${enc(a)}&limit=${enc(b)}`,
          `/ui/${enc(a)}`,
        ]) {
          const r = await ca.api('GET', p, { token });
          expect({ p, ok: ok(r) || (p.startsWith('/ui/') && r.status === 308) }).toEqual({ p, ok: true });
        }
        const e = await ca.api('POST', `/api/v1/acme/eab-keys/${enc(a) || '%20'}/revoke`);
        expect(ok(e)).toBe(true);
      }),
      { numRuns: 150 },
    );
    expect((await ca.api('GET', '/healthz', { token: null })).status).toBe(200);
  });

  it('serves the console under /ui/ with a strict CSP, and nothing outside its folder', async () => {
    const ui = await fetch(`${ca.url}/ui`, { redirect: 'manual' });
    expect([ui.status, ui.headers.get('location')]).toEqual([308, '/ui/']);
    const index = await fetch(`${ca.url}/ui/`);
    expect(index.status).toBe(200);
    const csp = index.headers.get('content-security-policy')!;
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval/);
    expect(index.headers.get('set-cookie')).toBeNull();
    expect(await index.text()).toContain('<script type="module" src="app.js"></script>');
    expect((await fetch(`${ca.url}/ui/app.js`)).headers.get('content-type')).toContain('text/javascript');
    for (const p of ['/ui/../package.json', '/ui/%2e%2e/package.json', '/ui/nothing.js', '/ui/.env']) {
      const r = await fetch(`${ca.url}${p}`);
      expect([p, r.status]).toEqual([p, 404]);
    }
  });
});

describe('the console on plain HTTP of a public host', () => {
  it('redirects to the HTTPS listener, so that no token is typed into a page served in clear', async () => {
    const dir = tempDir('hsmca-ui-');
    fs.writeFileSync(path.join(dir, 'index.html'), '<!doctype html><title>t</title>');
    const [route] = uiRoutes({ dir, httpsUiUrl: 'https://ca.example.test:8443/ui/' }).filter((r) => r.path === '/ui/*');
    const server = http.createServer((req, res) => void (route.handle({ req, res, params: {}, query: {}, ip: undefined, body: undefined }) as unknown));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const r = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/ui/index.html`, { redirect: 'manual' });
      expect([r.status, r.headers.get('location')]).toEqual([308, 'https://ca.example.test:8443/ui/']);
    } finally {
      server.close();
    }
  });
});

describe('a name search on a large table', () => {
  it('reads one window of ids per request and continues with the cursor until it finds an old certificate', async () => {
    const dir = tempDir('hsmca-search-');
    const db = await openBenchDatabase(dir);
    try {
      const count = SEARCH_WINDOW + 5_000;
      await fillCertificates(db, { count, revoked: false, der: Buffer.alloc(64, 1) });
      const store = new CertificateStore(db);
      // fill7 is the 8th row: among the oldest, outside the newest window
      const first = await store.list({ limit: 50, contains: 'FILL7.bench' });
      expect(first.items).toEqual([]);
      expect(first.more).toBe(true);
      expect(first.lastId).toBe(count + 1 - SEARCH_WINDOW);
      const second = await store.list({ limit: 50, contains: 'FILL7.bench', afterId: first.lastId });
      expect(second.items.map((r) => r.subject)).toEqual(['CN=fill7.bench.test']);
      expect(second.more).toBe(false);
      // a common name fills its page from the newest rows
      const common = await store.list({ limit: 50, contains: 'bench.test' });
      expect(common.items).toHaveLength(50);
      expect(common.items[0].subject).toBe(`CN=fill${count - 1}.bench.test`);
    } finally {
      await db.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
