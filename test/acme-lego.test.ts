import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createEab, requesterToken } from './helpers/acme-client';
import { ChallTestSrv, startChallTestSrv } from './helpers/challtestsrv';
import { writeTemp } from './helpers/csr';
import { backends, freePort, run, runAsync, startTestCa, tempDir, TestCa } from './helpers/harness';

jest.setTimeout(180_000);

/**
 * lego (Debian's package), an unchanged mainstream ACME client, against a
 * real hsmca: http-01 (lego's own server on --http.port), tls-alpn-01
 * (--tls.port), dns-01 through lego's exec provider setting TXT records in
 * pebble-challtestsrv, which is also the resolver of lego and of hsmca.
 */
function lego(args: string[], env: Record<string, string> = {}): Promise<{ status: number; out: string }> {
  return new Promise((resolve) => {
    execFile('lego', args, { timeout: 90_000, env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      resolve({ status: err ? ((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` });
    });
  });
}

describe.each(backends({ pkcs11: false }))('lego against hsmca ($name)', (backend) => {
  let ca: TestCa;
  let dns: ChallTestSrv;
  let httpPort: number;
  let tlsPort: number;
  let work: string;
  let root: string;
  const ports = async () => {
    httpPort = await freePort();
    tlsPort = await freePort();
  };

  beforeAll(async () => {
    dns = await startChallTestSrv();
    await ports();
    work = tempDir('hsmca-lego-');
    ca = await startTestCa(backend, {
      env: {
        HSMCA_HTTPS_PORT: String(await freePort()),
        HSMCA_ACME_ALLOW_PRIVATE_ADDRESSES: 'true',
        HSMCA_ACME_HTTP01_PORT: String(httpPort),
        HSMCA_ACME_TLSALPN01_PORT: String(tlsPort),
        HSMCA_ACME_DNS_RESOLVER: `127.0.0.1:${dns.dnsPort}`,
      },
    });
    root = writeTemp('root.pem', (await ca.api('GET', '/api/v1/ca')).body.root);
    await requesterToken(ca, 'lego-web', { names: ['*.acme.test'] });
  });
  afterAll(async () => {
    await ca?.stop();
    await dns?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  async function legoWithEab(email: string) {
    const [kid, hmac] = await createEab(ca, 'lego-web');
    // the HTTPS directory, trusting hsmca's root as an operator would (LEGO_CA_CERTIFICATES)
    const base = ['--server', `${ca.httpsUrl}/acme/directory`, '--path', path.join(work, email), '--email', email, '--accept-tos', '--eab', '--kid', kid, '--hmac', hmac];
    return (args: string[], env?: Record<string, string>) => lego([...base, ...args], { LEGO_CA_CERTIFICATES: root, ...env });
  }

  const files = (email: string, domain: string) => {
    const dir = path.join(work, email, 'certificates');
    return { crt: path.join(dir, `${domain.replace('*', '_')}.crt`), issuer: path.join(dir, `${domain.replace('*', '_')}.issuer.crt`) };
  };
  const serialOf = (crt: string) => run('openssl', ['x509', '-in', crt, '-noout', '-serial']).trim();
  const ocsp = (f: { crt: string; issuer: string }) => runAsync('openssl', ['ocsp', '-issuer', f.issuer, '-CAfile', root, '-cert', f.crt, '-url', `${ca.url}/ocsp`]);

  it('obtains with http-01, renews, revokes; OCSP says good, then revoked', async () => {
    const l = await legoWithEab('http@acme.test');
    const http = ['-d', 'www.acme.test', '--http', '--http.port', `127.0.0.1:${httpPort}`];
    const got = await l([...http, 'run']);
    expect(got.out).toContain('Server responded with a certificate');
    expect(got.status).toBe(0);
    const f = files('http@acme.test', 'www.acme.test');
    expect(run('openssl', ['verify', '-CAfile', root, '-untrusted', f.issuer, f.crt])).toContain('OK');
    expect(run('openssl', ['x509', '-in', f.crt, '-noout', '-ext', 'subjectAltName,extendedKeyUsage'])).toMatch(/TLS Web Server Authentication[\s\S]*DNS:www\.acme\.test/);
    expect((await ocsp(f)).out).toMatch(/: good/);
    const first = serialOf(f.crt);
    const renewed = await l([...http, 'renew', '--days', '3650', '--no-random-sleep']);
    expect(renewed.status).toBe(0);
    expect(serialOf(f.crt)).not.toBe(first);
    expect((await ocsp(f)).out).toMatch(/: good/);
    const revoked = await l(['-d', 'www.acme.test', 'revoke']);
    expect(revoked.out).toContain('Certificate was revoked');
    // lego archives what it revoked; the archived copy is the one OCSP now reports
    const archived = fs.readdirSync(path.join(work, 'http@acme.test', 'archives')).find((n) => /www\.acme\.test\.crt$/.test(n))!;
    const arch = { crt: path.join(work, 'http@acme.test', 'archives', archived), issuer: path.join(work, 'http@acme.test', 'archives', archived.replace(/\.crt$/, '.issuer.crt')) };
    expect((await ocsp(arch)).out).toMatch(/: revoked/);
  });

  it('obtains with tls-alpn-01', async () => {
    const l = await legoWithEab('tls@acme.test');
    const got = await l(['-d', 'tls.acme.test', '--tls', '--tls.port', `127.0.0.1:${tlsPort}`, 'run']);
    expect(got.status).toBe(0);
    expect(run('openssl', ['x509', '-in', files('tls@acme.test', 'tls.acme.test').crt, '-noout', '-ext', 'subjectAltName'])).toContain('DNS:tls.acme.test');
  });

  it('obtains a wildcard with dns-01 through pebble-challtestsrv', async () => {
    const script = path.join(work, 'set-txt.sh');
    fs.writeFileSync(
      script,
      `#!/bin/sh\n# lego exec DNS provider: present|cleanup FQDN VALUE\nM=http://127.0.0.1:${dns.managementPort}\ncase "$1" in\n  present) curl -s -X POST -d "{\\"host\\":\\"$2\\",\\"value\\":\\"$3\\"}" $M/set-txt ;;\n  cleanup) curl -s -X POST -d "{\\"host\\":\\"$2\\"}" $M/clear-txt ;;\nesac\n`,
      { mode: 0o755 },
    );
    const l = await legoWithEab('dns@acme.test');
    const got = await l(['-d', '*.wild.acme.test', '--dns', 'exec', '--dns.resolvers', `127.0.0.1:${dns.dnsPort}`, '--dns.disable-cp', 'run'], { EXEC_PATH: script, EXEC_POLLING_INTERVAL: '1', EXEC_PROPAGATION_TIMEOUT: '30' });
    if (got.status !== 0) console.log(got.out);
    expect(got.status).toBe(0);
    const f = files('dns@acme.test', '*.wild.acme.test');
    expect(run('openssl', ['x509', '-in', f.crt, '-noout', '-ext', 'subjectAltName'])).toContain('DNS:*.wild.acme.test');
    expect(run('openssl', ['verify', '-CAfile', root, '-untrusted', f.issuer, f.crt])).toContain('OK');
  });

  it('is refused a name outside the bound token\'s scope', async () => {
    const l = await legoWithEab('scope@acme.test');
    const got = await l(['-d', 'www.elsewhere.test', '--http', '--http.port', `127.0.0.1:${httpPort}`, 'run']);
    expect(got.status).not.toBe(0);
    expect(got.out).toMatch(/rejectedIdentifier/);
  });
});

describe.each(backends({ pkcs11: false }).slice(0, 1))('lego without External Account Binding ($name)', (backend) => {
  let ca: TestCa;
  let dns: ChallTestSrv;
  let httpPort: number;
  let work: string;
  let root: string;
  beforeAll(async () => {
    dns = await startChallTestSrv();
    httpPort = await freePort();
    work = tempDir('hsmca-lego-');
    ca = await startTestCa(backend, {
      env: {
        HSMCA_HTTPS_PORT: String(await freePort()),
        HSMCA_ACME_REQUIRE_EAB: 'false',
        HSMCA_ACME_ALLOWED_DOMAINS: '*.open.test',
        HSMCA_ACME_ALLOW_PRIVATE_ADDRESSES: 'true',
        HSMCA_ACME_HTTP01_PORT: String(httpPort),
        HSMCA_ACME_DNS_RESOLVER: `127.0.0.1:${dns.dnsPort}`,
      },
    });
    root = writeTemp('root-open.pem', (await ca.api('GET', '/api/v1/ca')).body.root);
  });
  afterAll(async () => {
    await ca?.stop();
    await dns?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('obtains a name of HSMCA_ACME_ALLOWED_DOMAINS and is refused any other', async () => {
    const base = ['--server', `${ca.httpsUrl}/acme/directory`, '--path', work, '--email', 'open@open.test', '--accept-tos', '--http', '--http.port', `127.0.0.1:${httpPort}`];
    const env = { LEGO_CA_CERTIFICATES: root };
    const ok = await lego([...base, '-d', 'www.open.test', 'run'], env);
    expect(ok.status).toBe(0);
    expect(ok.out).toContain('Server responded with a certificate');
    const refused = await lego([...base, '-d', 'www.closed.test', 'run'], env);
    expect(refused.status).not.toBe(0);
    expect(refused.out).toMatch(/rejectedIdentifier/);
  });
});
