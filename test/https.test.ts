import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as net from 'node:net';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { FakeClock } from '../src/clock';
import { loadConfig } from '../src/config';
import { silentLogger } from '../src/log';
import { startService } from '../src/service';
import { makeCsr, writeTemp } from './helpers/csr';
import { Backend, backends, freePort, run, runAsync, startTestCa, TestCa, tempDir } from './helpers/harness';

/** Contract section 6: HTTPS beside the plain port, with hsmca's own certificate or the operator's. */

/** openssl with its stdin closed (s_client would wait on it), without blocking the event loop of the server under test. */
function openssl(args: string[]): Promise<{ status: number; out: string }> {
  return new Promise((resolve) => {
    const child = spawn('openssl', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.stdin.end();
    const timer = setTimeout(() => child.kill(), 30_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ status: code ?? 1, out });
    });
  });
}

interface HttpsAnswer {
  status: number;
  body: any;
  /** the serial of the certificate the server presented on this connection */
  serial: string;
  reusedSocket: boolean;
}

/** A request over HTTPS trusting only `ca` (the root as a client fetched it from /ca/root.crt). */
function httpsRequest(url: string, o: { ca: string; method?: string; token?: string; body?: unknown; agent?: https.Agent }): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (o.token) headers.authorization = `Bearer ${o.token}`;
    const payload = o.body === undefined ? undefined : JSON.stringify(o.body);
    if (payload) headers['content-type'] = 'application/json';
    // a fresh connection unless the test brings its agent (and with it a connection to reuse)
    const agent = o.agent ?? new https.Agent({ keepAlive: false });
    const req = https.request(url, { method: o.method ?? 'GET', headers, ca: o.ca, servername: 'localhost', agent }, (res) => {
      const serial = (res.socket as tls.TLSSocket).getPeerCertificate().serialNumber.toLowerCase();
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('error', reject);
      res.on('end', () => {
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          /* not JSON */
        }
        resolve({ status: res.statusCode ?? 0, body, serial, reusedSocket: req.reusedSocket });
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** The certificate a TLS handshake presents, without judging it. */
function servedCertificate(port: number): Promise<tls.DetailedPeerCertificate> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false }, () => {
      const c = s.getPeerCertificate(true);
      s.end();
      resolve(c);
    });
    s.on('error', reject);
  });
}

async function rootPem(ca: TestCa): Promise<string> {
  const der = Buffer.from(await (await fetch(`${ca.url}/ca/root.crt`)).arrayBuffer());
  return `-----BEGIN CERTIFICATE-----\n${der.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`;
}

async function startHttpsCa(backend: Backend, o: { env?: Record<string, string>; clock?: FakeClock } = {}): Promise<TestCa & { httpsPort: number }> {
  const httpsPort = await freePort();
  const ca = await startTestCa(backend, { env: { HSMCA_HTTPS_PORT: String(httpsPort), ...o.env }, clock: o.clock });
  return Object.assign(ca, { httpsPort });
}

const portOf = (url: string) => Number(new URL(url).port);

describe.each(backends())('the HTTPS listener ($name)', (backend) => {
  let ca: TestCa & { httpsPort: number };
  let root: string;
  let rootFile: string;

  beforeAll(async () => {
    ca = await startHttpsCa(backend);
    root = await rootPem(ca);
    rootFile = writeTemp('https-root.pem', root);
  });
  afterAll(async () => {
    await ca?.stop();
  });

  it('is verified by openssl against the root, with the default names', async () => {
    expect(ca.httpsUrl).toBe(`https://127.0.0.1:${ca.httpsPort}`);
    const r = await openssl(['s_client', '-connect', `127.0.0.1:${ca.httpsPort}`, '-servername', 'localhost', '-CAfile', rootFile, '-verify_return_error', '-showcerts']);
    expect(r.out).toContain('Verify return code: 0 (ok)');
    expect(r.status).toBe(0);
    const leaf = r.out.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)![0];
    const text = run('openssl', ['x509', '-noout', '-ext', 'subjectAltName,extendedKeyUsage'], { input: leaf });
    expect(text).toMatch(/DNS:localhost, IP Address:127\.0\.0\.1/);
    expect(text).toContain('TLS Web Server Authentication');
  });

  it.each([
    ['TLS 1.1', ['-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0'], /protocol version|unsupported protocol|no protocols available/i],
    // both are in node's default list and usable with the server's P-256 key: refused only by the listener's own list
    ['TLS 1.2 with ECDHE and AES-CBC-SHA', ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-SHA'], /handshake failure|no cipher/i],
    ['TLS 1.2 with ECDHE and AES-CBC-SHA384', ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES256-SHA384'], /handshake failure|no cipher/i],
  ])('refuses %s', async (_what, args, why) => {
    const r = await openssl(['s_client', '-connect', `127.0.0.1:${ca.httpsPort}`, '-servername', 'localhost', ...(args as string[])]);
    expect(r.status).not.toBe(0);
    expect(r.out).toMatch(why as RegExp);
  });

  it.each([
    ['TLS 1.3', ['-tls1_3'], /TLSv1\.3/],
    ['TLS 1.2 with ECDHE and AES-GCM', ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256'], /ECDHE-ECDSA-AES128-GCM-SHA256/],
    ['TLS 1.2 with ECDHE and ChaCha20', ['-tls1_2', '-cipher', 'ECDHE-ECDSA-CHACHA20-POLY1305'], /ECDHE-ECDSA-CHACHA20-POLY1305/],
  ])('accepts %s', async (_what, args, cipher) => {
    const r = await openssl(['s_client', '-connect', `127.0.0.1:${ca.httpsPort}`, '-servername', 'localhost', '-CAfile', rootFile, '-verify_return_error', ...(args as string[])]);
    expect(r.status).toBe(0);
    expect(r.out).toMatch(cipher as RegExp);
  });

  it('serves the whole API, and its certificate is stored, audited and good by OCSP', async () => {
    const base = ca.httpsUrl!;
    const issued = await httpsRequest(`${base}/api/v1/certificates`, { ca: root, method: 'POST', token: ca.adminToken, body: { csr: makeCsr({ sans: 'DNS:over-tls.example' }).csr } });
    expect(issued.status).toBe(201);
    const revoke = await httpsRequest(`${base}/api/v1/certificates/${issued.body.serialNumber}/revoke`, { ca: root, method: 'POST', token: ca.adminToken, body: { reason: 'superseded' } });
    expect(revoke.status).toBe(200);
    const tokens = await httpsRequest(`${base}/api/v1/tokens`, { ca: root, token: ca.adminToken });
    expect(tokens.status).toBe(200);
    expect((await httpsRequest(`${base}/api/v1/certificates`, { ca: root })).status).toBe(401);
    expect((await httpsRequest(`${base}/crl`, { ca: root })).status).toBe(200);

    const own = await httpsRequest(`${base}/api/v1/certificates/${issued.serial}`, { ca: root, token: ca.adminToken });
    expect(own.status).toBe(200);
    expect(own.body).toMatchObject({ serialNumber: issued.serial, status: 'good', profile: 'tls-server', sans: { dns: ['localhost'], ip: ['127.0.0.1'] } });
    const audit = await httpsRequest(`${base}/api/v1/audit?limit=500`, { ca: root, token: ca.adminToken });
    const event = audit.body.items.find((e: { type: string; subject: string }) => e.type === 'certificateIssued' && e.subject === issued.serial);
    expect(event).toMatchObject({ actor: 'system:tls', details: { profile: 'tls-server' } });

    const leafFile = writeTemp('https-leaf.pem', own.body.certificate);
    const issuerFile = writeTemp('https-issuer.pem', ((await (await fetch(`${ca.url}/api/v1/ca`)).json()) as { issuer: string }).issuer);
    const ocsp = await runAsync('openssl', ['ocsp', '-issuer', issuerFile, '-CAfile', rootFile, '-cert', leafFile, '-url', `${ca.url}/ocsp`]);
    expect(ocsp.out).toMatch(/: good/);
  });

  it('keeps the key 0600 in a 0700 folder of the data folder, and reuses it after a restart', async () => {
    const dir = path.join(ca.dataDir, 'tls');
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(dir, 'server.key')).mode & 0o777).toBe(0o600);
    const key = fs.readFileSync(path.join(dir, 'server.key'), 'utf8');
    const before = await servedCertificate(ca.httpsPort);
    await ca.svc.stop();
    const again = await startService(loadConfig(ca.env), { log: silentLogger, announce: () => undefined });
    try {
      const after = await servedCertificate(portOf(again.httpsUrl!));
      expect(after.serialNumber).toBe(before.serialNumber);
      expect(fs.readFileSync(path.join(dir, 'server.key'), 'utf8')).toBe(key);
    } finally {
      await again.stop();
    }
  });
});

describe('renewal (sqlite+soft)', () => {
  const backend = backends({ pkcs11: false })[0];

  it('renews after two thirds of the life and swaps the certificate without a restart; open connections keep working', async () => {
    const clock = new FakeClock();
    const ca = await startHttpsCa(backend, { clock });
    try {
      const root = await rootPem(ca);
      const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
      const first = await httpsRequest(`${ca.httpsUrl}/healthz`, { ca: root, agent });
      expect(first.status).toBe(200);
      const firstNotAfter = new Date((await servedCertificate(ca.httpsPort)).valid_to);

      clock.advance(19 * 86_400_000); // under two thirds of 30 days: nothing to do
      expect(await ca.svc.tls!.refresh()).toBe(false);
      clock.advance(2 * 86_400_000); // past them
      expect(await ca.svc.tls!.refresh()).toBe(true);
      expect(await ca.svc.tls!.refresh()).toBe(false);

      const fresh = await servedCertificate(ca.httpsPort);
      expect(fresh.serialNumber.toLowerCase()).not.toBe(first.serial);
      expect(new Date(fresh.valid_to).getTime()).toBeGreaterThan(firstNotAfter.getTime());
      // the connection opened before the swap keeps its certificate and still answers
      const old = await httpsRequest(`${ca.httpsUrl}/healthz`, { ca: root, agent });
      expect(old).toMatchObject({ status: 200, reusedSocket: true, serial: first.serial });
      agent.destroy();
      // the protocol settings survive the swap
      const weak = await openssl(['s_client', '-connect', `127.0.0.1:${ca.httpsPort}`, '-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0']);
      expect(weak.status).not.toBe(0);
      // both certificates are on record; the new key replaced the old one on disk
      const listed = await ca.api('GET', '/api/v1/certificates');
      expect(listed.body.items.map((c: { serialNumber: string; profile: string }) => c.serialNumber).sort()).toEqual([first.serial, fresh.serialNumber.toLowerCase()].sort());
      const onDisk = fs.readFileSync(path.join(ca.dataDir, 'tls', 'server.crt'), 'utf8');
      expect(run('openssl', ['x509', '-noout', '-serial'], { input: onDisk }).trim().toLowerCase()).toBe(`serial=${fresh.serialNumber.toLowerCase()}`);
    } finally {
      await ca.stop();
    }
  });

  it('replaces a revoked server certificate at the next check', async () => {
    const ca = await startHttpsCa(backend);
    try {
      const before = (await servedCertificate(ca.httpsPort)).serialNumber.toLowerCase();
      expect((await ca.api('POST', `/api/v1/certificates/${before}/revoke`, { body: { reason: 'keyCompromise' } })).status).toBe(200);
      expect(await ca.svc.tls!.refresh()).toBe(true);
      expect((await servedCertificate(ca.httpsPort)).serialNumber.toLowerCase()).not.toBe(before);
    } finally {
      await ca.stop();
    }
  });
});

/** A self-signed certificate and key made by openssl, as an operator would bring them. */
function operatorCertificate(dir: string, name: string): { cert: string; key: string } {
  const cert = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.key`);
  run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '5', '-subj', `/CN=${name}`, '-addext', 'subjectAltName=DNS:localhost']);
  fs.chmodSync(key, 0o600);
  return { cert, key };
}

describe('a certificate brought by the operator (sqlite+soft)', () => {
  const backend = backends({ pkcs11: false })[0];

  it('is served as it is, issues nothing, and is reloaded when the files change', async () => {
    const dir = tempDir();
    const own = operatorCertificate(dir, 'operator-one');
    const ca = await startHttpsCa(backend, { env: { HSMCA_TLS_CERT: own.cert, HSMCA_TLS_KEY: own.key } });
    try {
      const fp = (pem: string) => run('openssl', ['x509', '-noout', '-fingerprint', '-sha256'], { input: pem }).trim();
      const served = await openssl(['s_client', '-connect', `127.0.0.1:${ca.httpsPort}`, '-servername', 'localhost', '-CAfile', own.cert, '-verify_return_error']);
      expect(served.status).toBe(0);
      expect(fp(served.out.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)![0])).toBe(fp(fs.readFileSync(own.cert, 'utf8')));
      expect(fs.existsSync(path.join(ca.dataDir, 'tls'))).toBe(false);
      expect((await ca.api('GET', '/api/v1/certificates')).body.items).toEqual([]);

      expect(await ca.svc.tls!.refresh()).toBe(false);
      const next = operatorCertificate(dir, 'operator-two');
      fs.copyFileSync(next.key, own.key);
      fs.copyFileSync(next.cert, own.cert);
      expect(await ca.svc.tls!.refresh()).toBe(true);
      expect((await servedCertificate(ca.httpsPort)).subject.CN).toBe('operator-two');
    } finally {
      await ca.stop();
    }
  });

  it.each([
    ['a key that is not the certificate\'s', (a: { cert: string; key: string }, b: { cert: string; key: string }) => ({ HSMCA_TLS_CERT: a.cert, HSMCA_TLS_KEY: b.key }), /the private key is not the key of the certificate/],
    ['a key file others can read', (a: { cert: string; key: string }) => (fs.chmodSync(a.key, 0o644), { HSMCA_TLS_CERT: a.cert, HSMCA_TLS_KEY: a.key }), /readable by other users/],
    ['a missing file', (a: { cert: string; key: string }) => ({ HSMCA_TLS_CERT: a.cert + '.missing', HSMCA_TLS_KEY: a.key }), /ENOENT/],
    ['a certificate file without a certificate', (a: { cert: string; key: string }) => ({ HSMCA_TLS_CERT: a.key, HSMCA_TLS_KEY: a.key }), /no PEM certificate/],
  ])('refuses to start with %s, naming the settings', async (_what, make, why) => {
    const dir = tempDir();
    const env = make(operatorCertificate(dir, 'a'), operatorCertificate(dir, 'b'));
    const config = loadConfig({ HSMCA_DATA_DIR: path.join(dir, 'data'), HSMCA_PORT: '0', HSMCA_HTTPS_PORT: String(await freePort()), HSMCA_LOG_LEVEL: 'silent', ...env });
    const started = startService(config, { log: silentLogger, announce: () => undefined });
    await expect(started).rejects.toThrow(/^HSMCA_TLS_CERT\/HSMCA_TLS_KEY: /);
    await expect(started).rejects.toThrow(why);
  });
});

describe('the settings', () => {
  it.each([
    [{ HSMCA_HTTPS_PORT: 'https' }, /^HSMCA_HTTPS_PORT: must be a whole number/],
    [{ HSMCA_HTTPS_PORT: '70000' }, /^HSMCA_HTTPS_PORT: must be between 0 and 65535/],
    [{ HSMCA_HTTPS_PORT: '8080' }, /^HSMCA_HTTPS_PORT: must differ from HSMCA_PORT/],
    [{ HSMCA_TLS_NAMES: 'ok.example,not a name' }, /^HSMCA_TLS_NAMES: "not a name" is neither a DNS name nor an IP address/],
    [{ HSMCA_TLS_NAMES: ' , ' }, /^HSMCA_TLS_NAMES: must name at least one/],
    [{ HSMCA_TLS_CERT: '/etc/hsmca/tls.crt' }, /^HSMCA_TLS_KEY: is required when HSMCA_TLS_CERT is set/],
    [{ HSMCA_TLS_KEY: '/etc/hsmca/tls.key' }, /^HSMCA_TLS_CERT: is required when HSMCA_TLS_KEY is set/],
  ])('refuses %j', (env, why) => {
    expect(() => loadConfig(env)).toThrow(why);
  });

  it('defaults to port 8443 and the public URL host, localhost and 127.0.0.1', () => {
    expect(loadConfig({})).toMatchObject({ httpsPort: 8443, tlsNames: ['127.0.0.1', 'localhost'] });
    expect(loadConfig({ HSMCA_PUBLIC_URL: 'https://CA.Example.com' })).toMatchObject({ tlsNames: ['ca.example.com', 'localhost', '127.0.0.1'] });
    expect(loadConfig({ HSMCA_TLS_NAMES: 'ca.internal, 10.0.0.5,::1' })).toMatchObject({ tlsNames: ['ca.internal', '10.0.0.5', '::1'] });
    expect(loadConfig({ HSMCA_HTTPS_PORT: '0' }).httpsPort).toBe(0);
  });

  it('stops start-up naming HSMCA_HTTPS_PORT when the port is taken', async () => {
    const blocker = net.createServer();
    const port = await new Promise<number>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve((blocker.address() as net.AddressInfo).port)));
    try {
      const dir = tempDir();
      const config = loadConfig({ HSMCA_DATA_DIR: path.join(dir, 'data'), HSMCA_PORT: '0', HSMCA_HTTPS_PORT: String(port), HSMCA_LOG_LEVEL: 'silent' });
      await expect(startService(config, { log: silentLogger, announce: () => undefined })).rejects.toThrow(new RegExp(`^HSMCA_HTTPS_PORT: cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`));
    } finally {
      blocker.close();
    }
  });
});

describe('plain HTTP beside HTTPS (sqlite+soft)', () => {
  const backend = backends({ pkcs11: false })[0];

  it('on a host that is not loopback, serves only what takes no token; token routes answer on HTTPS only', async () => {
    const port = await freePort();
    const ca = await startHttpsCa(backend, { env: { HSMCA_HOST: '0.0.0.0', HSMCA_PORT: String(port), HSMCA_PUBLIC_URL: `http://127.0.0.1:${port}` } });
    try {
      const plain = `http://127.0.0.1:${port}`;
      for (const p of ['/healthz', '/crl', '/ca/root.crt', '/ca/issuer.crt', '/api/v1/ca', '/metrics']) {
        expect([p, (await fetch(plain + p)).status]).toEqual([p, 200]);
      }
      const root = await rootPem(ca);
      const serial = (await servedCertificate(ca.httpsPort)).serialNumber.toLowerCase();
      const refused = [
        ['GET', '/api/v1/certificates'],
        ['POST', '/api/v1/certificates'],
        ['GET', `/api/v1/certificates/${serial}`],
        ['POST', `/api/v1/certificates/${serial}/revoke`],
        ['GET', '/api/v1/tokens'],
        ['GET', '/api/v1/audit'],
      ];
      for (const [method, p] of refused) {
        const r = await fetch(plain + p, { method, headers: { authorization: `Bearer ${ca.adminToken}`, 'content-type': 'application/json' }, body: method === 'POST' ? '{}' : undefined });
        expect([p, r.status]).toEqual([p, 403]);
        expect(await r.json()).toEqual({ error: { code: 'httpsRequired', message: `this route takes a bearer token and is served on HTTPS only (https://127.0.0.1:${ca.httpsPort})` } });
      }
      expect((await fetch(`${plain}/no/such/route`)).status).toBe(404);
      // the certificate stayed good: the refused revocation did nothing
      const listed = await httpsRequest(`https://127.0.0.1:${ca.httpsPort}/api/v1/certificates/${serial}`, { ca: root, token: ca.adminToken });
      expect(listed).toMatchObject({ status: 200, body: { status: 'good' } });
      // OCSP on the plain port, as RFC 5019 clients use it
      const issuerFile = writeTemp('plain-issuer.pem', ((await (await fetch(`${plain}/api/v1/ca`)).json()) as { issuer: string }).issuer);
      const ocsp = await runAsync('openssl', ['ocsp', '-issuer', issuerFile, '-CAfile', writeTemp('plain-root.pem', root), '-cert', writeTemp('plain-leaf.pem', listed.body.certificate), '-url', `${plain}/ocsp`]);
      expect(ocsp.out).toMatch(/: good/);
    } finally {
      await ca.stop();
    }
  });

  it('on loopback, and with HTTPS off, the plain port serves every route', async () => {
    const loop = await startHttpsCa(backend);
    const port = await freePort();
    const off = await startTestCa(backend, { env: { HSMCA_HOST: '0.0.0.0', HSMCA_PORT: String(port), HSMCA_PUBLIC_URL: `http://127.0.0.1:${port}`, HSMCA_HTTPS_PORT: '0' } });
    try {
      expect((await loop.api('GET', '/api/v1/certificates')).status).toBe(200);
      expect(off.httpsUrl).toBeUndefined();
      expect(off.svc.httpsServer).toBeUndefined();
      const r = await fetch(`http://127.0.0.1:${port}/api/v1/certificates`, { headers: { authorization: `Bearer ${off.adminToken}` } });
      expect(r.status).toBe(200);
      expect(fs.existsSync(path.join(off.dataDir, 'tls'))).toBe(false);
    } finally {
      await loop.stop();
      await off.stop();
    }
  });
});

describe('hsmca serve with several workers', () => {
  it('prints the HTTPS URL, and every worker serves the one certificate the leader made', async () => {
    const BIN = path.join(__dirname, '..', 'bin', 'hsmca.js');
    const d = path.join(tempDir(), 'data');
    const [port, httpsPort] = [await freePort(), await freePort()];
    const child = spawn(process.execPath, [BIN, 'serve'], {
      env: { ...process.env, HSMCA_DATA_DIR: d, HSMCA_PORT: String(port), HSMCA_HTTPS_PORT: String(httpsPort), HSMCA_LOG_LEVEL: 'warn', HSMCA_WORKERS: '2' },
    });
    let out = '';
    child.stdout.on('data', (b) => (out += b));
    child.stderr.on('data', (b) => (out += b));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const deadline = Date.now() + 30_000;
      while (!out.includes('serving HTTPS on') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(out).toContain(`hsmca: serving HTTPS on https://127.0.0.1:${httpsPort}`);
      const root = fs.readFileSync(path.join(d, 'tls', 'server.crt'), 'utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)!;
      expect(root).toHaveLength(2);
      const ca = (await (await fetch(`http://127.0.0.1:${port}/api/v1/ca`)).json()) as { root: string };
      const token = fs.readFileSync(path.join(d, 'admin.token'), 'utf8').trim();
      const serials = new Set<string>();
      for (let i = 0; i < 8; i++) {
        const r = await httpsRequest(`https://127.0.0.1:${httpsPort}/api/v1/certificates`, { ca: ca.root, token, });
        expect(r.status).toBe(200);
        expect(r.body.items).toHaveLength(1);
        serials.add(r.serial);
      }
      expect(serials.size).toBe(1);
    } finally {
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    }
  });
});
