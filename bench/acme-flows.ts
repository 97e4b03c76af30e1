/**
 * ACME flows per second: `npm run bench:acme` (or `node dist/bench/acme-flows.js [--seconds=N] [--concurrency=8,32]`).
 *
 * hsmca runs in its own process; this process plays N ACME accounts at once,
 * each looping over one whole flow: newOrder → authorization → http-01
 * answered by a local responder and validated by hsmca → poll until ready →
 * finalize → certificate download, over HTTPS (the directory hsmca serves,
 * trusting only its root, connections kept alive as ACME clients do). Names
 * resolve through pebble-challtestsrv (every A query answers 127.0.0.1).
 * Authorization reuse is off, so every flow includes a validation. Prints
 * flows/s and flow latency p50/p99.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as path from 'node:path';
import { FlattenedSign, calculateJwkThumbprint, exportJWK, generateKeyPair, JWK, KeyLike } from 'jose';
import { startHsmca } from './hsmca';
import { freePort, sleep, tempDir } from './proc';
import { percentileSorted, round } from './stats';

const arg = (name: string, def: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? def;
const SECONDS = Number(arg('seconds', '10'));
const CONCURRENCY = arg('concurrency', '8,32').split(',').map(Number);

/** One HTTPS request through a keep-alive agent that trusts hsmca's root only. */
let agent: https.Agent;
function request(url: string, o: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method: o.method ?? 'GET', headers: o.headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(o.body);
  });
}
const headerOf = (h: http.IncomingHttpHeaders, name: string) => (h[name] as string | undefined) ?? null;

class Account {
  kid?: string;
  nonce?: string;
  constructor(
    private readonly dir: Record<string, string>,
    private readonly key: KeyLike,
    readonly jwk: JWK,
  ) {}

  async post(url: string, payload: unknown): Promise<{ status: number; body: any; location: string | null }> {
    if (!this.nonce) this.nonce = headerOf((await request(this.dir.newNonce, { method: 'HEAD' })).headers, 'replay-nonce')!;
    const header: Record<string, unknown> = { alg: 'ES256', nonce: this.nonce, url, ...(this.kid ? { kid: this.kid } : { jwk: this.jwk }) };
    const bytes = payload === '' ? new Uint8Array() : new TextEncoder().encode(JSON.stringify(payload));
    const body = JSON.stringify(await new FlattenedSign(bytes).setProtectedHeader(header as never).sign(this.key));
    const res = await request(url, { method: 'POST', headers: { 'content-type': 'application/jose+json' }, body });
    this.nonce = headerOf(res.headers, 'replay-nonce') ?? undefined;
    const text = res.text;
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* the PEM chain */
    }
    if (res.status >= 400) throw new Error(`${url}: ${res.status} ${text.slice(0, 200)}`);
    return { status: res.status, body: parsed, location: headerOf(res.headers, 'location') };
  }
}

function csrFor(name: string, dir: string): string {
  const keyFile = path.join(dir, `${name}.key`);
  spawnSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', keyFile]);
  const req = spawnSync('openssl', ['req', '-new', '-key', keyFile, '-subj', '/', '-addext', `subjectAltName=DNS:${name}`, '-outform', 'DER']);
  if (req.status !== 0 || req.stdout.length === 0) throw new Error(`openssl req failed: ${req.stderr.toString()}`);
  return req.stdout.toString('base64url');
}

async function main() {
  const dnsPort = await freePort();
  const mgmtPort = await freePort();
  const challtest = spawn('pebble-challtestsrv', ['-dns01', `127.0.0.1:${dnsPort}`, '-management', `127.0.0.1:${mgmtPort}`, '-http01', '', '-https01', '', '-tlsalpn01', '', '-defaultIPv6', ''], { stdio: 'ignore' });
  challtest.on('error', () => {
    process.stderr.write('bench: pebble-challtestsrv is needed (apt-get install pebble)\n');
    process.exit(1);
  });
  const keys = tempDir('hsmca-bench-acme-');
  const answers = new Map<string, string>();
  const responder = http.createServer((req, res) => {
    const a = answers.get((req.url ?? '').split('/').pop() ?? '');
    res.writeHead(a ? 200 : 404).end(a ?? '');
  });
  const httpPort = await freePort();
  await new Promise<void>((r) => responder.listen(httpPort, '127.0.0.1', () => r()));
  await sleep(300);
  const httpsPort = await freePort();
  const ca = await startHsmca({
    env: {
      HSMCA_HTTPS_PORT: String(httpsPort),
      HSMCA_ACME_AUTHZ_REUSE_HOURS: '0',
      HSMCA_ACME_REQUIRE_EAB: 'false',
      HSMCA_ACME_ALLOWED_DOMAINS: '*.bench.test',
      HSMCA_ACME_ALLOW_PRIVATE_ADDRESSES: 'true',
      HSMCA_ACME_HTTP01_PORT: String(httpPort),
      HSMCA_ACME_DNS_RESOLVER: `127.0.0.1:${dnsPort}`,
      HSMCA_ACME_NEW_ACCOUNTS_PER_ADDRESS_PER_HOUR: '0',
      HSMCA_ACME_ORDERS_PER_ACCOUNT_PER_HOUR: '0',
      HSMCA_ISSUE_RATE_PER_TOKEN: '0',
      HSMCA_ISSUE_RATE_PER_ADDRESS: '0',
    },
  });
  try {
    const root = ((await (await fetch(`${ca.url}/api/v1/ca`)).json()) as { root: string }).root;
    agent = new https.Agent({ keepAlive: true, ca: root });
    const directoryUrl = `https://127.0.0.1:${httpsPort}/acme/directory`;
    const dir = JSON.parse((await request(directoryUrl)).text) as Record<string, string>;
    process.stdout.write(`ACME flows over HTTPS (newOrder → http-01 → finalize → download), ${SECONDS} s each, ${directoryUrl}\n`);
    for (const n of CONCURRENCY) {
      // the CSRs first (openssl blocks this process), then fresh connections: none sits idle past the server's keep-alive
      const csrs = Array.from({ length: n }, (_, i) => csrFor(`c${n}-a${i}.bench.test`, keys));
      agent.destroy();
      agent = new https.Agent({ keepAlive: true, ca: root });
      const accounts = await Promise.all(
        Array.from({ length: n }, async (_, i) => {
          const { privateKey, publicKey } = await generateKeyPair('ES256');
          const a = new Account(dir, privateKey, await exportJWK(publicKey));
          a.kid = (await a.post(dir.newAccount, { termsOfServiceAgreed: true })).location!;
          return { a, name: `c${n}-a${i}.bench.test`, csr: csrs[i], thumb: await calculateJwkThumbprint(a.jwk) };
        }),
      );
      const latencies: number[] = [];
      let errors = 0;
      const until = Date.now() + SECONDS * 1000;
      await Promise.all(
        accounts.map(async ({ a, name, csr, thumb }) => {
          while (Date.now() < until) {
            const t0 = performance.now();
            try {
              const o = await a.post(dir.newOrder, { identifiers: [{ type: 'dns', value: name }] });
              const authz = (await a.post(o.body.authorizations[0], '')).body;
              const ch = authz.challenges.find((c: { type: string }) => c.type === 'http-01');
              answers.set(ch.token, `${ch.token}.${thumb}`);
              await a.post(ch.url, {});
              let order = o.body;
              while (order.status === 'pending') {
                await sleep(20);
                order = (await a.post(o.location!, '')).body;
              }
              answers.delete(ch.token);
              const fin = (await a.post(order.finalize, { csr })).body;
              await a.post(fin.certificate, '');
              latencies.push(performance.now() - t0);
            } catch (e) {
              errors++;
              if (errors < 3) process.stderr.write(`bench: ${(e as Error).message}\n`);
            }
          }
        }),
      );
      latencies.sort((x, y) => x - y);
      process.stdout.write(
        `  ${String(n).padStart(2)} accounts: ${round(latencies.length / SECONDS)} flows/s, p50 ${round(percentileSorted(latencies, 50))} ms, p99 ${round(percentileSorted(latencies, 99))} ms (${latencies.length} flows, ${errors} errors)\n`,
      );
    }
  } finally {
    await ca.server.stop();
    agent?.destroy();
    responder.close();
    challtest.kill('SIGTERM');
    fs.rmSync(keys, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`bench: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
