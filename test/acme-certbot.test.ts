import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createEab, requesterToken } from './helpers/acme-client';
import { ChallTestSrv, startChallTestSrv } from './helpers/challtestsrv';
import { writeTemp } from './helpers/csr';
import { backends, freePort, run, runAsync, startTestCa, tempDir, TestCa } from './helpers/harness';

jest.setTimeout(180_000);

/** certbot (Debian's package), a second unchanged ACME client: RSA account key (RS256), http-01 standalone, EAB, renew, revoke. */
function certbot(args: string[], root: string): Promise<{ status: number; out: string }> {
  return new Promise((resolve) => {
    // certbot trusts hsmca's root through REQUESTS_CA_BUNDLE, as an operator would set it
    execFile('certbot', args, { timeout: 120_000, env: { ...process.env, REQUESTS_CA_BUNDLE: root } }, (err, stdout, stderr) => resolve({ status: err ? ((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` }));
  });
}

describe.each(backends({ pkcs11: false }).slice(0, 1))('certbot against hsmca ($name)', (backend) => {
  let ca: TestCa;
  let dns: ChallTestSrv;
  let httpPort: number;
  let work: string;
  beforeAll(async () => {
    dns = await startChallTestSrv();
    httpPort = await freePort();
    work = tempDir('hsmca-certbot-');
    ca = await startTestCa(backend, {
      env: { HSMCA_HTTPS_PORT: String(await freePort()), HSMCA_ACME_ALLOW_PRIVATE_ADDRESSES: 'true', HSMCA_ACME_HTTP01_PORT: String(httpPort), HSMCA_ACME_DNS_RESOLVER: `127.0.0.1:${dns.dnsPort}` },
    });
    await requesterToken(ca, 'certbot-web', { names: ['*.acme.test'] });
  });
  afterAll(async () => {
    await ca?.stop();
    await dns?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('obtains with http-01 and EAB, renews, and revokes for keyCompromise; OCSP follows', async () => {
    const [kid, hmac] = await createEab(ca, 'certbot-web');
    const dirs = ['--config-dir', path.join(work, 'etc'), '--work-dir', path.join(work, 'work'), '--logs-dir', path.join(work, 'logs'), '--non-interactive'];
    const server = ['--server', `${ca.httpsUrl}/acme/directory`];
    const root = writeTemp('root.pem', (await ca.api('GET', '/api/v1/ca')).body.root);
    const got = await certbot(['certonly', '--standalone', '--http-01-port', String(httpPort), '--http-01-address', '127.0.0.1', ...server, '--eab-kid', kid, '--eab-hmac-key', hmac, '-m', 'ops@acme.test', '--agree-tos', '--no-eff-email', '-d', 'cb.acme.test', ...dirs], root);
    expect(got.out).toContain('Successfully received certificate');
    const live = path.join(work, 'etc', 'live', 'cb.acme.test');
    expect(run('openssl', ['verify', '-CAfile', root, '-untrusted', path.join(live, 'chain.pem'), path.join(live, 'cert.pem')])).toContain('OK');
    const serial = () => run('openssl', ['x509', '-in', path.join(live, 'cert.pem'), '-noout', '-serial']).trim();
    const first = serial();
    const renewed = await certbot(['renew', '--force-renewal', '--no-random-sleep-on-renew', '--cert-name', 'cb.acme.test', ...dirs], root);
    expect(renewed.status).toBe(0);
    expect(serial()).not.toBe(first);
    const ocsp = () => runAsync('openssl', ['ocsp', '-issuer', path.join(live, 'chain.pem'), '-CAfile', root, '-cert', path.join(live, 'cert.pem'), '-url', `${ca.url}/ocsp`]);
    expect((await ocsp()).out).toMatch(/: good/);
    const revoked = await certbot(['revoke', '--cert-name', 'cb.acme.test', '--reason', 'keycompromise', '--no-delete-after-revoke', ...server, ...dirs], root);
    expect(revoked.out).toContain('successfully revoked');
    expect((await ocsp()).out).toMatch(/: revoked[\s\S]*Reason: keyCompromise/);
  });
});
