import { X509Certificate } from 'node:crypto';
import { makeCsr } from './helpers/csr';
import { backends, startTestCa, TestCa } from './helpers/harness';

/**
 * A token limited to names chooses no more of its subject than its scope
 * grants: the CN and emailAddress must be names in scope, other attributes
 * must be listed in the scope with their values, and nobody gets a subject
 * equal to one of the CA's own. URIs compare case-insensitively only in the
 * scheme and host.
 */
describe.each(backends({ pkcs11: false }))('subjects of scoped requesters ($name)', (backend) => {
  let ca: TestCa;
  let scoped: string;
  let withOrg: string;
  let spiffe: string;
  beforeAll(async () => {
    ca = await startTestCa(backend, { env: { HSMCA_ISSUE_RATE_PER_TOKEN: '0', HSMCA_ISSUE_RATE_PER_ADDRESS: '0' } });
    const token = async (scope: unknown) => {
      const r = await ca.api('POST', '/api/v1/tokens', { body: { role: 'requester', name: `t-${Math.random()}`, scope } });
      expect(r.status).toBe(201);
      return r.body.token as string;
    };
    scoped = await token({ names: ['*.svc.internal', '*@example.com', '10.0.0.0/8'] });
    withOrg = await token({ names: ['*.svc.internal'], subjectAttributes: { O: ['Example Corp'], OU: ['*'] } });
    spiffe = await token({ names: ['spiffe://Example.org/ns/prod/*'] });
  });
  afterAll(async () => ca?.stop());

  const issue = async (token: string, csr: { subject?: string; sans?: string }, profile = 'tls-client') =>
    ca.api('POST', '/api/v1/certificates', { token, body: { csr: makeCsr(csr).csr, profile } });
  const subjectOf = (pem: string) => new X509Certificate(pem).subject.split('\n');

  it.each<[string, () => string, { subject?: string; sans?: string }, number, string | null, string[] | null]>([
    ['a group in O and a free-text CN (the Kubernetes cluster-admin request)', () => scoped, { subject: '/O=system:masters/CN=ops:root' }, 403, 'nameNotAllowed', null],
    ['a group in O beside an in-scope CN', () => scoped, { subject: '/O=system:masters/CN=api.svc.internal' }, 403, 'subjectNotAllowed', null],
    ['a CN with a trailing dot', () => scoped, { subject: '/CN=api.svc.internal.' }, 403, 'nameNotAllowed', null],
    ['a CN outside the scope', () => scoped, { subject: '/CN=api.example.org' }, 403, 'nameNotAllowed', null],
    ['an emailAddress outside the email scope', () => scoped, { subject: '/CN=api.svc.internal/emailAddress=root@evil.example' }, 403, 'nameNotAllowed', null],
    ['an emailAddress inside the email scope', () => scoped, { subject: '/CN=api.svc.internal/emailAddress=ops@example.com' }, 201, null, ['CN=api.svc.internal', 'emailAddress=ops@example.com']],
    ['an in-scope CN alone', () => scoped, { subject: '/CN=api.svc.internal' }, 201, null, ['CN=api.svc.internal']],
    ['an address as CN inside the range', () => scoped, { subject: '/CN=10.1.2.3' }, 201, null, ['CN=10.1.2.3']],
    ['an O the scope grants', () => withOrg, { subject: '/O=Example Corp/OU=payments/CN=api.svc.internal' }, 201, null, ['O=Example Corp', 'OU=payments', 'CN=api.svc.internal']],
    ['an O the scope does not grant', () => withOrg, { subject: '/O=Other Corp/CN=api.svc.internal' }, 403, 'subjectNotAllowed', null],
    ['a country the scope does not list', () => withOrg, { subject: '/C=US/CN=api.svc.internal' }, 403, 'subjectNotAllowed', null],
  ])('%s', async (_what, token, csr, status, code, subject) => {
    const r = await issue(token(), csr);
    expect(r.status).toBe(status);
    if (code) expect(r.body.error.code).toBe(code);
    if (subject) expect(subjectOf(r.body.certificate)).toEqual(subject);
  });

  it('stores nothing for a refused subject', async () => {
    const before = await ca.svc.core.certificates.count();
    await issue(scoped, { subject: '/O=system:masters/CN=ops:root' });
    expect(await ca.svc.core.certificates.count()).toBe(before);
  });

  it.each([
    ['the same case', 'URI:spiffe://example.org/ns/prod/web', 201],
    ['another case in the scheme and host', 'URI:SPIFFE://EXAMPLE.ORG/ns/prod/web', 201],
    ['another case in the path', 'URI:spiffe://example.org/ns/PROD/web', 403],
    ['another path', 'URI:spiffe://example.org/ns/dev/web', 403],
  ])('matches URI scopes with %s', async (_what, sans, status) => {
    expect((await issue(spiffe, { sans })).status).toBe(status);
  });

  it('never issues a subject equal to one of the CA’s own, to anyone (admins too), whatever the case or string type', async () => {
    const pem = (await ca.api('GET', '/api/v1/ca', { token: null })).body.issuer as string;
    const parts = new X509Certificate(pem).subject.split('\n');
    const exact = '/' + parts.join('/');
    const lookAlike = '/' + parts.map((p) => p.toUpperCase().replace(' ', '  ')).join('/');
    for (const subject of [exact, lookAlike]) {
      const r = await issue(ca.adminToken, { subject });
      expect([r.status, r.body.error?.code]).toEqual([422, 'subjectIsCa']);
    }
    expect((await issue(ca.adminToken, { subject: exact.replace(/CN=/, 'CN=not ') })).status).toBe(201);
  });

  it('refuses a scope whose subjectAttributes are not attribute names with values', async () => {
    for (const subjectAttributes of [{ CN: ['x'] }, { O: [] }, { O: 'x' }, ['O']]) {
      const r = await ca.api('POST', '/api/v1/tokens', { body: { role: 'requester', name: 'bad', scope: { names: ['a.example'], subjectAttributes } } });
      expect([r.status, r.body.error.code]).toEqual([400, 'invalidScope']);
    }
  });
});
