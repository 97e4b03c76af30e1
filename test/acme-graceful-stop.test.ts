import { ChildProcess } from 'node:child_process';
import * as http from 'node:http';
import * as path from 'node:path';
import { AcmeTestClient, acmeKey } from './helpers/acme-client';
import { ChallTestSrv, startChallTestSrv } from './helpers/challtestsrv';
import { backends, freePort, freshPostgres, tempDir } from './helpers/harness';
import { startServer, stopServer } from './helpers/server-process';

jest.setTimeout(180_000);

/**
 * ACME validations across a stop, with real `hsmca serve` processes: SIGTERM
 * lets one in flight finish within HSMCA_SHUTDOWN_GRACE_SECONDS; one left
 * "processing" (a stop past its grace, or a process killed) is validated
 * again by the next process to start, or by another instance.
 */

/** The http-01 responder a client runs: answers after `delayMs`, never ("hang"), or at once. */
class Responder {
  readonly answers = new Map<string, string>();
  mode: 'right' | 'hang' = 'right';
  delayMs = 0;
  requests = 0;
  answered = 0;
  server = http.createServer((req, res) => {
    this.requests++;
    if (this.mode === 'hang') return;
    const token = (req.url ?? '').split('/').pop() ?? '';
    setTimeout(() => {
      const a = this.answers.get(token);
      if (!a) return res.writeHead(404).end();
      this.answered++;
      res.writeHead(200, { 'content-type': 'text/plain' }).end(a);
    }, this.delayMs);
  });
  listen(port: number) {
    return new Promise<void>((r) => this.server.listen(port, '127.0.0.1', () => r()));
  }
  close() {
    this.server.closeAllConnections();
    return new Promise<void>((r) => this.server.close(() => r()));
  }
}

const until = async (what: string, f: () => boolean | Promise<boolean>, ms = 30_000) => {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

describe.each(backends({ pkcs11: false }))('ACME validations across a stop ($name)', (backend) => {
  let dns: ChallTestSrv;
  let responder: Responder;
  let env: Record<string, string>;
  let url: string;
  let drop: (() => Promise<void>) | undefined;
  const children: ChildProcess[] = [];
  const start = async (extra: Record<string, string> = {}, at = url) => {
    const child = await startServer({ ...process.env, ...env, ...extra, HSMCA_PORT: new URL(at).port } as Record<string, string>, at);
    children.push(child);
    return child;
  };

  beforeEach(async () => {
    dns = await startChallTestSrv();
    responder = new Responder();
    const httpPort = await freePort();
    await responder.listen(httpPort);
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    env = {
      HSMCA_DATA_DIR: path.join(tempDir('hsmca-acme-stop-'), 'data'),
      HSMCA_HTTPS_PORT: '0',
      HSMCA_PUBLIC_URL: url,
      HSMCA_LOG_LEVEL: 'warn',
      HSMCA_ACME_REQUIRE_EAB: 'false',
      HSMCA_ACME_ALLOWED_DOMAINS: '*.acme.test',
      HSMCA_ACME_ALLOW_PRIVATE_ADDRESSES: 'true',
      HSMCA_ACME_HTTP01_PORT: String(httpPort),
      HSMCA_ACME_DNS_RESOLVER: `127.0.0.1:${dns.dnsPort}`,
      HSMCA_ACME_VALIDATION_TIMEOUT_SECONDS: '2',
      HSMCA_ACME_VALIDATION_ATTEMPTS: '3',
    };
    if (backend.database === 'postgres') {
      const pg = await freshPostgres();
      env.HSMCA_DATABASE_URL = pg.url;
      drop = pg.drop;
    }
  });
  afterEach(async () => {
    for (const c of children.splice(0)) await stopServer(c, 'SIGKILL');
    await responder.close();
    await dns.stop();
    await drop?.();
    drop = undefined;
  });

  /** an account, an order for `name`, and its http-01 challenge asked for: [client, challenge URL, order URL] */
  async function askValidation(name: string, base = url): Promise<[AcmeTestClient, string, string]> {
    const c = new AcmeTestClient(base, await acmeKey());
    c.directory = (await (await fetch(`${base}/acme/directory`)).json()) as Record<string, string>;
    expect((await c.newAccount()).status).toBe(201);
    const o = await c.post(c.directory.newOrder, { identifiers: [{ type: 'dns', value: name }] });
    expect(o.status).toBe(201);
    const authz = (await c.post(o.body.authorizations[0], '')).body;
    const ch = authz.challenges.find((x: { type: string }) => x.type === 'http-01');
    responder.answers.set(ch.token, await c.keyAuthorization(ch.token));
    expect((await c.post(ch.url, {})).body.status).toBe('processing');
    return [c, ch.url, o.headers.get('location')!];
  }

  it('SIGTERM: a validation in flight finishes within the grace before the process exits', async () => {
    const child = await start({ HSMCA_SHUTDOWN_GRACE_SECONDS: '30' });
    // within one attempt's timeout (2 s)
    responder.delayMs = 1_500;
    const [c, challenge, order] = await askValidation('grace.acme.test');
    await until('the validation request', () => responder.requests > 0);
    const t0 = Date.now();
    await stopServer(child, 'SIGTERM');
    // the process waited for the answer, and wrote the result before it exited
    expect(responder.answered).toBe(1);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1_000);
    expect(child.exitCode).toBe(0);
    await start();
    expect((await c.post(challenge, '')).body.status).toBe('valid');
    expect((await c.post(order, '')).body.status).toBe('ready');
  });

  it('SIGTERM past the grace leaves the validation processing; the next start validates it again', async () => {
    const child = await start({ HSMCA_SHUTDOWN_GRACE_SECONDS: '1' });
    responder.mode = 'hang';
    const [c, challenge, order] = await askValidation('late.acme.test');
    await until('the validation request', () => responder.requests > 0);
    const t0 = Date.now();
    await stopServer(child, 'SIGTERM');
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(child.exitCode).toBe(0);
    // the stopped process wrote no result: a hanging responder can only have made it invalid, and an invalid
    // challenge never turns valid; only the next process, with the responder now answering, can validate it
    expect(responder.answered).toBe(0);
    responder.mode = 'right';
    await start();
    const done = await c.poll(challenge, (b) => b.status !== 'processing', 40_000);
    expect(done.status).toBe('valid');
    expect((await c.post(order, '')).body.status).toBe('ready');
  });

  it('a process killed mid-validation: the validation is taken over (by the next start, or at once by another instance)', async () => {
    const child = await start();
    responder.mode = 'hang';
    let other: string | undefined;
    // on PostgreSQL a second instance on the same database takes the orphan over without any restart
    if (backend.database === 'postgres') {
      other = `http://127.0.0.1:${await freePort()}`;
      await start({}, other);
    }
    const [c, challenge, order] = await askValidation('killed.acme.test');
    await until('the validation request', () => responder.requests > 0);
    await stopServer(child, 'SIGKILL');
    responder.mode = 'right';
    if (!other) await start();
    if (!other) {
      const done = await c.poll(challenge, (b) => b.status !== 'processing', 40_000);
      expect(done.status).toBe('valid');
      expect((await c.post(order, '')).body.status).toBe('ready');
      return;
    }
    // the client now reaches the other instance (same public URL, as behind a balancer): its JWS still name the public URLs
    const at = (u: string) => u.replace(url, other!);
    const nonce = async () => (await fetch(`${other}/acme/new-nonce`, { method: 'HEAD' })).headers.get('replay-nonce')!;
    await until('the other instance to validate', async () => (await c.post(at(challenge), '', { url: challenge, nonce: await nonce() })).body.status !== 'processing', 40_000);
    expect((await c.post(at(challenge), '', { url: challenge, nonce: await nonce() })).body.status).toBe('valid');
    expect((await c.post(at(order), '', { url: order, nonce: await nonce() })).body.status).toBe('ready');
  });
});
