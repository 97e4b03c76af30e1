import { AuditEvent } from '../src/audit/events';
import { CaError } from '../src/errors';
import { IssuanceRateLimit, RateLimiter, addressKey } from '../src/http/rate-limit';
import { openDatabase } from '../src/storage/database';
import { backends, startTestCa, TestCa } from './helpers/harness';

/**
 * Failed authentications are throttled per client address (429 before any
 * token lookup) and audited as the first failure of an interval at once,
 * then one summary per address and interval, instead of one durable audit
 * append per failure.
 */

describe('per-address rate limiter', () => {
  it('a flood of distinct addresses does not reset a limited address', () => {
    let now = 1_000_000;
    const l = new RateLimiter(2, () => now, 100);
    expect(l.take('10.0.0.1')).toBe(0);
    expect(l.take('10.0.0.1')).toBe(0);
    expect(l.take('10.0.0.1')).toBeGreaterThan(0);
    for (let i = 0; i < 5000; i++) {
      now += 1;
      l.take(`192.0.2.${i % 250}.${i}`);
    }
    expect(l.take('10.0.0.1')).toBeGreaterThan(0);
    expect(l.size).toBeLessThanOrEqual(100);
  });

  it('evicts full buckets before buckets still in use, and the least recently used last', () => {
    let now = 0;
    const l = new RateLimiter(60, () => now, 10);
    // "busy" is used recently and is far from full; the others refilled long ago.
    for (let i = 0; i < 9; i++) l.take(`idle-${i}`);
    now += 120_000;
    for (let i = 0; i < 30; i++) l.take('busy');
    l.take('new-1');
    l.take('new-2');
    // busy kept its state: 30 of 60 tokens are gone
    for (let i = 0; i < 30; i++) expect(l.take('busy')).toBe(0);
    expect(l.take('busy')).toBeGreaterThan(0);
  });

  it.each([
    ['two addresses of one IPv6 /64', '2001:db8:1:2::1', '2001:db8:1:2:ffff:ffff:ffff:ffff', true],
    ['the same /64 written compressed and in full', '2001:db8:0:0::7', '2001:0db8:0000:0000:0000:0000:0000:0008', true],
    ['a zone index', 'fe80::1%eth0', 'fe80::2', true],
    ['an IPv4-mapped address and its IPv4 form', '::ffff:192.0.2.7', '192.0.2.7', true],
    ['two /64 prefixes', '2001:db8:1:2::1', '2001:db8:1:3::1', false],
    ['two IPv4 addresses', '192.0.2.7', '192.0.2.8', false],
  ])('buckets %s together: %s and %s -> %s', (_n, a, b, same) => {
    expect(addressKey(a) === addressKey(b)).toBe(same);
    const limit = new IssuanceRateLimit({ perToken: 0, perAddress: 1 });
    limit.take(a, undefined);
    if (same) expect(() => limit.take(b, undefined)).toThrow(CaError);
    else expect(() => limit.take(b, undefined)).not.toThrow();
  });
});

const BACKENDS = backends({ pkcs11: false });

describe.each(BACKENDS)('failed authentications on $name', (backend) => {
  let ca: TestCa;
  afterEach(async () => {
    await ca?.stop();
  });

  const events = async (type: string): Promise<AuditEvent[]> => (await ca.svc.core.audit.list({ limit: 1000 })).items.filter((e) => e.type === type);

  it('after the limit, requests from the address get 429 with Retry-After before any token lookup; one event at once, one summary at stop', async () => {
    ca = await startTestCa(backend, { env: { HSMCA_AUTH_FAILURE_LIMIT: '5', HSMCA_AUTH_FAILURE_AUDIT_INTERVAL_SECONDS: '3600' } });
    for (let i = 0; i < 5; i++) {
      const r = await ca.api('GET', '/api/v1/certificates', { token: i % 2 ? 'not-a-token' : null });
      expect(r.status).toBe(401);
    }
    const limited = await ca.api('GET', '/api/v1/certificates', { token: 'still-not-a-token' });
    expect(limited.status).toBe(429);
    expect(limited.body).toEqual({ error: { code: 'rateLimited', message: expect.stringContaining('failed authentications') } });
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    // even a valid token is not looked up from this address now
    expect((await ca.api('GET', '/api/v1/certificates')).status).toBe(429);
    // what needs no token is served as before
    expect((await ca.api('GET', '/healthz', { token: null })).status).toBe(200);

    // metrics count every failed authentication
    expect(ca.svc.core.metrics.authFailures.get()).toBe(5);
    await ca.svc.core.audit.flush();
    const single = await events('authenticationFailed');
    expect(single).toHaveLength(1);
    expect(single[0].details).toEqual({ code: 'unauthorized', ip: expect.stringMatching(/127\.0\.0\.1/), path: '/api/v1/certificates' });
    expect(await events('authenticationFailures')).toHaveLength(0);

    // a graceful stop writes the interval's summary
    await ca.svc.stop();
    const db = await openDatabase({ url: ca.env.HSMCA_DATABASE_URL, dataDir: ca.dataDir });
    try {
      const rows = await db.knex('audit_events').where({ type: 'authenticationFailures' });
      expect(rows).toHaveLength(1);
      expect(JSON.parse(rows[0].details)).toEqual({
        address: '127.0.0.1',
        count: 4,
        throttled: 2,
        codes: { unauthorized: 2, invalidToken: 2 },
        firstAt: expect.any(String),
        lastAt: expect.any(String),
        intervalSeconds: 3600,
      });
      // the summary is inside the final signed checkpoint
      const last = await db.knex('audit_events').orderBy('seq', 'desc').first();
      expect(last.type).toBe('auditCheckpoint');
    } finally {
      await db.close();
    }
  });

  it('records one summary per address when the interval ends, then the next failure at once again', async () => {
    ca = await startTestCa(backend, { env: { HSMCA_AUTH_FAILURE_LIMIT: '100', HSMCA_AUTH_FAILURE_AUDIT_INTERVAL_SECONDS: '1' } });
    for (let i = 0; i < 4; i++) expect((await ca.api('GET', '/api/v1/audit', { token: 'wrong' })).status).toBe(401);
    await ca.svc.core.audit.flush();
    expect(await events('authenticationFailed')).toHaveLength(1);
    const deadline = Date.now() + 10_000;
    while ((await events('authenticationFailures')).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const [summary] = await events('authenticationFailures');
    expect(summary).toMatchObject({ actor: 'anonymous', details: { count: 3, throttled: 0, codes: { invalidToken: 3 }, intervalSeconds: 1 } });
    expect((await ca.api('GET', '/api/v1/audit', { token: 'wrong again' })).status).toBe(401);
    await ca.svc.core.audit.flush();
    expect(await events('authenticationFailed')).toHaveLength(2);
  });

  it('HSMCA_AUTH_FAILURE_LIMIT=0 turns the limit off', async () => {
    ca = await startTestCa(backend, { env: { HSMCA_AUTH_FAILURE_LIMIT: '0' } });
    for (let i = 0; i < 40; i++) expect((await ca.api('GET', '/api/v1/certificates', { token: null })).status).toBe(401);
    expect((await ca.api('GET', '/api/v1/certificates')).status).toBe(200);
    expect(ca.svc.core.metrics.authFailures.get()).toBe(40);
  });
});
