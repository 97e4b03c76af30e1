import { backends, startTestCa, TestCa } from './helpers/harness';
import { makeCsr } from './helpers/csr';
import { RateLimiter } from '../src/http/rate-limit';

describe.each(backends({ pkcs11: false }))('scoped requesters, token lifecycle and rate limits ($name)', (backend) => {
  let ca: TestCa;
  beforeAll(async () => {
    ca = await startTestCa(backend, { env: { HSMCA_ISSUE_RATE_PER_TOKEN: '5', HSMCA_ISSUE_RATE_PER_ADDRESS: '0' } });
  });
  afterAll(async () => ca?.stop());

  const createToken = async (body: unknown) => {
    const r = await ca.api('POST', '/api/v1/tokens', { body });
    expect(r.status).toBe(201);
    expect(r.body.token).toMatch(/^[0-9a-f]{64}$/);
    return r.body as { id: string; token: string };
  };

  it.each<[string, Record<string, unknown>, string, number, string | null]>([
    ['a name inside the pattern', { names: ['*.svc.internal'] }, 'DNS:api.svc.internal', 201, null],
    ['a deeper name inside the pattern', { names: ['*.svc.internal'] }, 'DNS:a.b.svc.internal', 201, null],
    ['a name outside the pattern', { names: ['*.svc.internal'] }, 'DNS:api.example.com', 403, 'nameNotAllowed'],
    ['the bare domain of a wildcard pattern', { names: ['*.svc.internal'] }, 'DNS:svc.internal', 403, 'nameNotAllowed'],
    ['an address inside the range', { names: ['*.svc.internal', '10.0.0.0/8'] }, 'DNS:x.svc.internal,IP:10.20.30.40', 201, null],
    ['an address outside the range', { names: ['*.svc.internal', '10.0.0.0/8'] }, 'DNS:x.svc.internal,IP:192.168.1.1', 403, 'nameNotAllowed'],
    ['an exact name', { names: ['exact.example.com'] }, 'DNS:exact.example.com', 201, null],
  ])('%s', async (_what, scope, sans, status, code) => {
    const t = await createToken({ role: 'requester', name: `scoped-${Math.random()}`, scope });
    const { csr } = makeCsr({ sans });
    const r = await ca.api('POST', '/api/v1/certificates', { token: t.token, body: { csr } });
    expect(r.status).toBe(status);
    if (code) expect(r.body.error.code).toBe(code);
  });

  it('limits profiles and validity', async () => {
    const t = await createToken({ role: 'requester', name: 'limited', scope: { profiles: ['tls-client'], maxValidityDays: 7 } });
    const server = await ca.api('POST', '/api/v1/certificates', { token: t.token, body: { csr: makeCsr({ sans: 'DNS:a.example' }).csr, profile: 'tls-server' } });
    expect([server.status, server.body.error.code]).toEqual([403, 'profileNotAllowed']);
    const long = await ca.api('POST', '/api/v1/certificates', { token: t.token, body: { csr: makeCsr({ subject: '/CN=w' }).csr, profile: 'tls-client', validityDays: 8 } });
    expect([long.status, long.body.error.code]).toEqual([403, 'validityNotAllowed']);
    const ok = await ca.api('POST', '/api/v1/certificates', { token: t.token, body: { csr: makeCsr({ subject: '/CN=w' }).csr, profile: 'tls-client', validityDays: 7 } });
    expect(ok.status).toBe(201);
  });

  it('lets a requester revoke only its own certificates, and only when its scope allows', async () => {
    const a = await createToken({ role: 'requester', name: 'rev-a', scope: { canRevoke: true } });
    const b = await createToken({ role: 'requester', name: 'rev-b', scope: { canRevoke: true } });
    const plain = await createToken({ role: 'requester', name: 'rev-plain' });
    const issue = async (token: string) => (await ca.api('POST', '/api/v1/certificates', { token, body: { csr: makeCsr({ sans: 'DNS:r.example' }).csr } })).body.serialNumber as string;
    const ofA = await issue(a.token);
    const ofPlain = await issue(plain.token);
    const byB = await ca.api('POST', `/api/v1/certificates/${ofA}/revoke`, { token: b.token, body: {} });
    expect([byB.status, byB.body.error.code]).toEqual([403, 'notYourCertificate']);
    const byPlain = await ca.api('POST', `/api/v1/certificates/${ofPlain}/revoke`, { token: plain.token, body: {} });
    expect(byPlain.status).toBe(403);
    const byA = await ca.api('POST', `/api/v1/certificates/${ofA}/revoke`, { token: a.token, body: { reason: 'superseded' } });
    expect(byA.status).toBe(200);
    expect(byA.body.status).toBe('revoked');
  });

  it('lists and revokes tokens; a revoked or expired token is refused', async () => {
    const t = await createToken({ role: 'requester', name: 'short-lived' });
    const list = await ca.api('GET', '/api/v1/tokens');
    const found = list.body.items.find((i: { id: string }) => i.id === t.id);
    expect(found).toMatchObject({ name: 'short-lived', role: 'requester', revokedAt: null });
    expect(JSON.stringify(list.body)).not.toContain(t.token);
    const rev = await ca.api('POST', `/api/v1/tokens/${t.id}/revoke`, { body: {} });
    expect(rev.status).toBe(200);
    const use = await ca.api('GET', '/api/v1/certificates', { token: t.token });
    expect([use.status, use.body.error.code]).toEqual([401, 'invalidToken']);
    expect((await ca.api('POST', `/api/v1/tokens/${t.id}/revoke`, { body: {} })).status).toBe(409);
    expect((await ca.api('POST', '/api/v1/tokens/nope/revoke', { body: {} })).status).toBe(404);
    const expired = await ca.svc.core.tokens.create({ role: 'requester', name: 'expired', expiresAt: new Date(Date.now() - 1000) });
    const e = await ca.api('GET', '/api/v1/certificates', { token: expired.token });
    expect([e.status, e.body.error.code]).toEqual([401, 'tokenExpired']);
  });

  it.each([
    [{ role: 'root', name: 'x' }, 'invalidRole'],
    [{ role: 'requester', name: '' }, 'invalidName'],
    [{ role: 'requester', name: 'x', scope: { names: ['not a pattern!'] } }, 'invalidScope'],
    [{ role: 'requester', name: 'x', scope: { names: ['10.0.0.0/33'] } }, 'invalidScope'],
    [{ role: 'requester', name: 'x', scope: { colour: 'red' } }, 'invalidScope'],
    [{ role: 'admin', name: 'x', scope: { canRevoke: true } }, 'invalidScope'],
  ])('refuses token %j with %s', async (body, code) => {
    const r = await ca.api('POST', '/api/v1/tokens', { body });
    expect([r.status, r.body.error.code]).toEqual([400, code]);
  });

  it('token routes need the admin role', async () => {
    const t = await createToken({ role: 'requester', name: 'not-admin' });
    expect((await ca.api('GET', '/api/v1/tokens', { token: t.token })).status).toBe(403);
    expect((await ca.api('POST', '/api/v1/tokens', { token: t.token, body: { role: 'admin', name: 'x' } })).status).toBe(403);
  });

  it('rate-limits issuance per token with 429 and Retry-After, without touching OCSP', async () => {
    const t = await createToken({ role: 'requester', name: 'busy' });
    const other = await createToken({ role: 'requester', name: 'calm' });
    const { csr } = makeCsr({ sans: 'DNS:rate.example' });
    const statuses: number[] = [];
    let retryAfter: string | null = null;
    for (let i = 0; i < 8; i++) {
      const r = await ca.api('POST', '/api/v1/certificates', { token: t.token, body: { csr } });
      statuses.push(r.status);
      if (r.status === 429) {
        retryAfter = r.headers.get('retry-after');
        expect(r.body.error.code).toBe('rateLimited');
      }
    }
    expect(statuses.filter((s) => s === 201)).toHaveLength(5);
    expect(statuses.filter((s) => s === 429)).toHaveLength(3);
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
    expect((await ca.api('POST', '/api/v1/certificates', { token: other.token, body: { csr } })).status).toBe(201);
    for (let i = 0; i < 20; i++) expect((await fetch(`${ca.url}/ocsp/AAAA`)).status).toBe(200);
    expect((await fetch(`${ca.url}/crl`)).status).toBe(200);
  });
});

describe('rate limiter', () => {
  it('refills over time', () => {
    let now = 0;
    const l = new RateLimiter(60, () => now);
    for (let i = 0; i < 60; i++) expect(l.take('k')).toBe(0);
    expect(l.take('k')).toBe(1);
    now += 1000;
    expect(l.take('k')).toBe(0);
    expect(l.take('k')).toBeGreaterThan(0);
    expect(l.take('other')).toBe(0);
  });
});
