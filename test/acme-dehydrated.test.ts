import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { createEab, requesterToken } from './helpers/acme-client';
import { ChallTestSrv, startChallTestSrv } from './helpers/challtestsrv';
import { writeTemp } from './helpers/csr';
import { backends, freePort, run, runAsync, startTestCa, tempDir, TestCa } from './helpers/harness';

jest.setTimeout(180_000);

/**
 * dehydrated (Debian's package), a third unchanged ACME client, written in
 * bash over curl and openssl: RSA account key (RS256), EAB, P-384 certificate
 * keys, http-01 answered by a hook script that drops the token into the
 * directory a web server serves, renewal and revocation, all through the
 * HTTPS directory with hsmca's root as the only trust anchor.
 */
function dehydrated(args: string[]): Promise<{ status: number; out: string }> {
  return new Promise((resolve) => {
    execFile('dehydrated', args, { timeout: 120_000 }, (err, stdout, stderr) => resolve({ status: err ? ((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` }));
  });
}

describe.each(backends({ pkcs11: false }))('dehydrated against hsmca ($name)', (backend) => {
  let ca: TestCa;
  let dns: ChallTestSrv;
  let web: http.Server;
  let work: string;
  let served: string;
  let httpPort: number;

  beforeAll(async () => {
    dns = await startChallTestSrv();
    httpPort = await freePort();
    work = tempDir('hsmca-dehydrated-');
    served = path.join(work, 'served');
    fs.mkdirSync(served);
    // the site's own web server: serves whatever the hook put in the challenge folder
    web = http.createServer((req, res) => {
      const m = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/.exec(req.url ?? '');
      const file = m && path.join(served, m[1]);
      if (!file || !fs.existsSync(file)) return res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'text/plain' }).end(fs.readFileSync(file));
    });
    await new Promise<void>((r) => web.listen(httpPort, '127.0.0.1', () => r()));
    ca = await startTestCa(backend, {
      env: { HSMCA_HTTPS_PORT: String(await freePort()), HSMCA_ACME_ALLOW_PRIVATE_ADDRESSES: 'true', HSMCA_ACME_HTTP01_PORT: String(httpPort), HSMCA_ACME_DNS_RESOLVER: `127.0.0.1:${dns.dnsPort}` },
    });
    await requesterToken(ca, 'dehydrated-web', { names: ['*.acme.test'] });
  });
  afterAll(async () => {
    await ca?.stop();
    await dns?.stop();
    web?.closeAllConnections();
    await new Promise((r) => web?.close(r));
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('registers with EAB, obtains with http-01 through a hook, renews, and revokes; OCSP follows', async () => {
    const [kid, hmac] = await createEab(ca, 'dehydrated-web');
    const root = writeTemp('dehydrated-root.pem', (await ca.api('GET', '/api/v1/ca')).body.root);
    const hook = path.join(work, 'hook.sh');
    fs.writeFileSync(
      hook,
      `#!/bin/bash\n# dehydrated hook: deploy_challenge|clean_challenge DOMAIN TOKEN_FILENAME TOKEN_VALUE\ncase "$1" in\n  deploy_challenge) printf '%s' "$4" > "${served}/$3" ;;\n  clean_challenge) rm -f "${served}/$3" ;;\nesac\n`,
      { mode: 0o755 },
    );
    fs.mkdirSync(path.join(work, 'wellknown'));
    const config = path.join(work, 'config');
    fs.writeFileSync(
      config,
      [
        `CA="${ca.httpsUrl}/acme/directory"`,
        `BASEDIR="${work}"`,
        `WELLKNOWN="${path.join(work, 'wellknown')}"`,
        `HOOK="${hook}"`,
        'CHALLENGETYPE="http-01"',
        // hsmca's root is the only trust anchor of every curl call
        `CURL_OPTS="--cacert ${root}"`,
        `EAB_KID="${kid}"`,
        `EAB_HMAC_KEY="${hmac}"`,
        'CONTACT_EMAIL="ops@acme.test"',
        'KEY_ALGO=secp384r1',
        'KEYSIZE=2048', // the RSA account key (RS256)
      ].join('\n') + '\n',
    );
    const reg = await dehydrated(['-f', config, '--register', '--accept-terms']);
    expect(reg.out).toMatch(/Done!/);
    expect(reg.status).toBe(0);

    const got = await dehydrated(['-f', config, '-c', '-d', 'dh.acme.test']);
    if (got.status !== 0) console.log(got.out);
    expect(got.status).toBe(0);
    const dir = path.join(work, 'certs', 'dh.acme.test');
    const cert = path.join(dir, 'cert.pem');
    const chain = path.join(dir, 'chain.pem');
    expect(run('openssl', ['verify', '-CAfile', root, '-untrusted', chain, cert])).toContain('OK');
    expect(run('openssl', ['x509', '-in', cert, '-noout', '-ext', 'subjectAltName,extendedKeyUsage'])).toMatch(/TLS Web Server Authentication[\s\S]*DNS:dh\.acme\.test/);
    expect(run('openssl', ['x509', '-in', cert, '-noout', '-text'])).toMatch(/ASN1 OID: secp384r1/);
    expect(fs.readdirSync(served)).toEqual([]); // the hook cleaned up
    const serial = () => run('openssl', ['x509', '-in', cert, '-noout', '-serial']).trim();
    const ocsp = () => runAsync('openssl', ['ocsp', '-issuer', chain, '-CAfile', root, '-cert', cert, '-url', `${ca.url}/ocsp`]);
    expect((await ocsp()).out).toMatch(/: good/);

    const first = serial();
    const renewed = await dehydrated(['-f', config, '-c', '-d', 'dh.acme.test', '--force']);
    expect(renewed.status).toBe(0);
    expect(serial()).not.toBe(first);
    expect((await ocsp()).out).toMatch(/: good/);

    // dehydrated renames what it revoked: keep a copy to ask OCSP about
    const kept = writeTemp('dehydrated-revoked.pem', fs.readFileSync(cert, 'utf8'));
    const revoked = await dehydrated(['-f', config, '-r', fs.realpathSync(cert)]);
    expect(revoked.status).toBe(0);
    expect(revoked.out).toMatch(/Done/);
    expect((await runAsync('openssl', ['ocsp', '-issuer', chain, '-CAfile', root, '-cert', kept, '-url', `${ca.url}/ocsp`])).out).toMatch(/: revoked/);
  });
});
