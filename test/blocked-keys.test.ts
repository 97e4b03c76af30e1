import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { backends, run, startTestCa, TestCa } from './helpers/harness';
import { makeCsr, testKey, writeTemp } from './helpers/csr';

const BIN = path.join(__dirname, '..', 'bin', 'hsmca.js');

/** The SHA-256 of a key's SubjectPublicKeyInfo, computed by openssl (the outside judge). */
function opensslSpkiSha256(keyOrCertFile: string, isCert = false): string {
  const pubDer = writeTemp('pub.der', '');
  if (isCert) {
    const pem = writeTemp('pub.pem', run('openssl', ['x509', '-in', keyOrCertFile, '-pubkey', '-noout']));
    run('openssl', ['pkey', '-pubin', '-in', pem, '-outform', 'DER', '-out', pubDer]);
  } else {
    run('openssl', ['pkey', '-in', keyOrCertFile, '-pubout', '-outform', 'DER', '-out', pubDer]);
  }
  return run('openssl', ['dgst', '-sha256', '-r', pubDer]).split(' ')[0];
}
const publicKeyPem = (slot: number) => run('openssl', ['pkey', '-in', testKey('ec-p256', slot), '-pubout']);

describe.each(backends())('blocked keys ($name)', (backend) => {
  let ca: TestCa;
  let requester: string;
  beforeAll(async () => {
    ca = await startTestCa(backend);
    requester = (await ca.svc.core.tokens.create({ role: 'requester', name: 'svc' })).token;
  });
  afterAll(async () => {
    await ca?.stop();
  });

  const issue = (slot: number, name: string) => ca.api('POST', '/api/v1/certificates', { token: requester, body: { csr: makeCsr({ slot, sans: `DNS:${name}` }).csr } });
  const audit = async () => (await ca.api('GET', '/api/v1/audit?limit=500')).body.items as { type: string; actor: string; subject: string | null; details: any }[];
  const allBlocked = async () => {
    const items: any[] = [];
    let cursor = '';
    do {
      const r = await ca.api('GET', `/api/v1/blocked-keys?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(r.status).toBe(200);
      items.push(...r.body.items);
      cursor = r.body.nextCursor ?? '';
    } while (cursor);
    return items;
  };

  it('a revocation for keyCompromise blocks the key: a new CSR for it gets 422 blockedKey, another key still works', async () => {
    const first = await issue(301, 'compromised.example');
    expect(first.status).toBe(201);
    const certFile = writeTemp('compromised.pem', first.body.certificate);
    const digest = opensslSpkiSha256(certFile, true);
    expect(digest).toBe(opensslSpkiSha256(testKey('ec-p256', 301)));

    const rev = await ca.api('POST', `/api/v1/certificates/${first.body.serialNumber}/revoke`, { body: { reason: 'keyCompromise' } });
    expect(rev.status).toBe(200);
    const entry = (await allBlocked()).find((b) => b.spkiSha256 === digest);
    expect(entry).toMatchObject({ source: 'keyCompromise', serialNumber: first.body.serialNumber, addedBy: expect.stringMatching(/^admin:/), comment: null });

    const again = await issue(301, 'compromised-again.example');
    expect(again.status).toBe(422);
    expect(again.body.error.code).toBe('blockedKey');
    expect(again.body.error.message).toMatch(/revoked for keyCompromise/);
    const events = await audit();
    expect(events.filter((e) => e.type === 'keyBlocked' && e.subject === digest)).toEqual([
      expect.objectContaining({ actor: expect.stringMatching(/^admin:/), details: { source: 'keyCompromise', serial: first.body.serialNumber, comment: null } }),
    ]);
    expect(events.filter((e) => e.type !== 'auditCheckpoint').pop()).toMatchObject({ type: 'blockedKeyRefused', actor: 'requester:svc', subject: digest, details: { code: 'blockedKey', check: 'blocked', spkiSha256: digest } });

    expect((await issue(302, 'other-key.example')).status).toBe(201);
    // revoking again is a conflict and adds nothing
    expect((await ca.api('POST', `/api/v1/certificates/${first.body.serialNumber}/revoke`, { body: { reason: 'keyCompromise' } })).status).toBe(409);
    expect((await allBlocked()).filter((b) => b.spkiSha256 === digest)).toHaveLength(1);
  });

  it('two certificates of one key revoked for keyCompromise give one entry; other reasons block nothing', async () => {
    const a = await issue(303, 'twice-a.example');
    const b = await issue(303, 'twice-b.example');
    const c = await issue(304, 'superseded.example');
    for (const r of [a, b, c]) expect(r.status).toBe(201);
    for (const r of [a, b]) expect((await ca.api('POST', `/api/v1/certificates/${r.body.serialNumber}/revoke`, { body: { reason: 'keyCompromise' } })).status).toBe(200);
    expect((await ca.api('POST', `/api/v1/certificates/${c.body.serialNumber}/revoke`, { body: { reason: 'superseded' } })).status).toBe(200);
    const digest = opensslSpkiSha256(testKey('ec-p256', 303));
    expect((await allBlocked()).filter((x) => x.spkiSha256 === digest)).toEqual([expect.objectContaining({ serialNumber: a.body.serialNumber })]);
    expect((await audit()).filter((e) => e.type === 'keyBlocked' && e.subject === digest)).toHaveLength(1);
    expect((await issue(304, 'superseded-renewed.example')).status).toBe(201);
  });

  it('admins block keys by public key, certificate or digest; a repeat answers 200 with the first entry', async () => {
    const byKey = await ca.api('POST', '/api/v1/blocked-keys', { body: { publicKey: publicKeyPem(305), comment: 'lost laptop' } });
    expect(byKey.status).toBe(201);
    expect(byKey.body).toEqual({
      spkiSha256: opensslSpkiSha256(testKey('ec-p256', 305)),
      addedAt: expect.any(String),
      source: 'admin',
      serialNumber: null,
      addedBy: expect.stringMatching(/^admin:/),
      comment: 'lost laptop',
    });
    const repeat = await ca.api('POST', '/api/v1/blocked-keys', { body: { publicKey: publicKeyPem(305), comment: 'again' } });
    expect(repeat.status).toBe(200);
    expect(repeat.body).toEqual(byKey.body);
    expect((await issue(305, 'blocked-by-key.example')).body.error.code).toBe('blockedKey');

    const issued = await issue(306, 'blocked-by-cert.example');
    expect(issued.status).toBe(201);
    const byCert = await ca.api('POST', '/api/v1/blocked-keys', { body: { certificate: issued.body.certificate } });
    expect(byCert.status).toBe(201);
    expect(byCert.body.spkiSha256).toBe(opensslSpkiSha256(testKey('ec-p256', 306)));
    expect((await issue(306, 'blocked-by-cert-2.example')).body.error.code).toBe('blockedKey');

    const digest = opensslSpkiSha256(testKey('ec-p256', 307));
    const byDigest = await ca.api('POST', '/api/v1/blocked-keys', { body: { spkiSha256: digest.toUpperCase() } });
    expect(byDigest.status).toBe(201);
    expect(byDigest.body.spkiSha256).toBe(digest);
    expect((await issue(307, 'blocked-by-digest.example')).status).toBe(422);
    // an RSA key, whose CSR openssl makes: blocked by its public key
    const rsaPem = run('openssl', ['pkey', '-in', testKey('rsa-2048', 308), '-pubout']);
    expect((await ca.api('POST', '/api/v1/blocked-keys', { body: { publicKey: rsaPem } })).status).toBe(201);
    const rsaCsr = makeCsr({ key: 'rsa-2048', slot: 308, sans: 'DNS:rsa-blocked.example' }).csr;
    expect((await ca.api('POST', '/api/v1/certificates', { token: requester, body: { csr: rsaCsr } })).body.error.code).toBe('blockedKey');

    const events = (await audit()).filter((e) => e.type === 'keyBlocked' && e.details.source === 'admin');
    expect(events.map((e) => e.subject)).toEqual(expect.arrayContaining([byKey.body.spkiSha256, byCert.body.spkiSha256, digest]));
    expect(events.find((e) => e.subject === byKey.body.spkiSha256)!.details.comment).toBe('lost laptop');
  });

  it.each<[string, unknown, number, string]>([
    ['no key at all', { comment: 'x' }, 400, 'invalidBlockedKey'],
    ['two ways at once', { spkiSha256: 'a'.repeat(64), publicKey: 'x' }, 400, 'invalidBlockedKey'],
    ['a short digest', { spkiSha256: 'abc' }, 400, 'invalidSpkiSha256'],
    ['a digest that is not hex', { spkiSha256: 'g'.repeat(64) }, 400, 'invalidSpkiSha256'],
    ['a digest that is a number', { spkiSha256: 12 }, 400, 'invalidSpkiSha256'],
    ['a public key that is not PEM', { publicKey: 'hello' }, 400, 'invalidPublicKey'],
    ['a public key PEM of garbage', { publicKey: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n' }, 400, 'invalidPublicKey'],
    ['a certificate given as the public key', { publicKey: '-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n' }, 400, 'invalidPublicKey'],
    ['a certificate PEM of garbage', { certificate: '-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n' }, 400, 'invalidCertificate'],
    ['a comment that is not a string', { spkiSha256: 'b'.repeat(64), comment: 5 }, 400, 'invalidComment'],
    ['a comment too long', { spkiSha256: 'b'.repeat(64), comment: 'x'.repeat(1025) }, 400, 'invalidComment'],
    ['a JSON array', [], 400, 'malformedJson'],
    ['a JSON string', 'key', 400, 'malformedJson'],
  ])('refuses %s with a contract error and stores nothing', async (_name, body, status, code) => {
    const before = (await allBlocked()).length;
    const r = await ca.api('POST', '/api/v1/blocked-keys', { body });
    expect({ status: r.status, code: r.body?.error?.code }).toEqual({ status, code });
    expect(Object.keys(r.body)).toEqual(['error']);
    expect((await allBlocked()).length).toBe(before);
  });

  it('is for admins only; lists newest first with cursors of its own', async () => {
    expect((await ca.api('GET', '/api/v1/blocked-keys', { token: requester })).status).toBe(403);
    const post = await ca.api('POST', '/api/v1/blocked-keys', { token: requester, body: { spkiSha256: 'c'.repeat(64) } });
    expect([post.status, post.body.error.code]).toEqual([403, 'forbidden']);
    expect((await ca.api('GET', '/api/v1/blocked-keys', { token: null })).status).toBe(401);
    expect((await ca.api('POST', '/api/v1/blocked-keys', { token: null, body: { spkiSha256: 'c'.repeat(64) } })).status).toBe(401);

    for (const d of ['d', 'e', 'f']) expect((await ca.api('POST', '/api/v1/blocked-keys', { body: { spkiSha256: d.repeat(64) } })).status).toBe(201);
    const all = await allBlocked();
    expect(all.slice(0, 3).map((b) => b.spkiSha256[0])).toEqual(['f', 'e', 'd']);
    expect(new Set(all.map((b) => b.spkiSha256)).size).toBe(all.length);
    const certCursor = (await ca.api('GET', '/api/v1/certificates?limit=1')).body.nextCursor;
    expect((await ca.api('GET', `/api/v1/blocked-keys?cursor=${certCursor}`)).body.error.code).toBe('invalidCursor');
    expect((await ca.api('GET', '/api/v1/blocked-keys?limit=0')).body.error.code).toBe('invalidLimit');
  });

  it('hsmca blocked-keys add and list work on the same database, and the service refuses the key at once', async () => {
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HSMCA_'))) as Record<string, string>;
    // run without blocking this process: the service under test lives here, and a blocked event loop
    // would also leave the HTTP client holding keep-alive sockets the service has closed meanwhile
    const hsmca = (args: string[]) =>
      new Promise<{ status: number | null; out: string; err: string }>((resolve, reject) => {
        const c = spawn(process.execPath, [BIN, ...args], { env: { ...clean, ...ca.env, HSMCA_LOG_LEVEL: 'warn' }, timeout: 60000 });
        let out = '';
        let err = '';
        c.stdout.on('data', (d) => (out += d));
        c.stderr.on('data', (d) => (err += d));
        c.on('error', reject);
        c.on('close', (status) => resolve({ status, out, err }));
      });
    const keyFile = writeTemp('cli.pub', publicKeyPem(309));
    const digest = opensslSpkiSha256(testKey('ec-p256', 309));
    const add = await hsmca(['blocked-keys', 'add', '--public-key', keyFile, '--comment', 'stolen HSM backup']);
    expect(add.err).toBe('');
    expect(add.status).toBe(0);
    expect(add.out.trim()).toBe(`hsmca: blocked key ${digest}`);
    expect((await hsmca(['blocked-keys', 'add', '--public-key', keyFile])).out.trim()).toBe(`hsmca: already blocked key ${digest}`);
    const other = opensslSpkiSha256(testKey('ec-p256', 310));
    expect((await hsmca(['blocked-keys', 'add', '--spki-sha256', other])).status).toBe(0);

    const list = await hsmca(['blocked-keys', 'list']);
    expect(list.status).toBe(0);
    const lines = list.out.trim().split('\n');
    expect(lines[0]).toMatch(new RegExp(`^${other}  \\S+Z  admin  cli$`));
    expect(lines[1]).toMatch(new RegExp(`^${digest}  \\S+Z  admin  cli  "stolen HSM backup"$`));
    expect(lines.some((l) => / keyCompromise [0-9a-f]{32} /.test(l))).toBe(true);

    expect((await issue(309, 'cli-blocked.example')).body.error.code).toBe('blockedKey');
    expect((await issue(310, 'cli-blocked-2.example')).body.error.code).toBe('blockedKey');
    expect((await audit()).find((e) => e.type === 'keyBlocked' && e.subject === digest)).toMatchObject({ actor: 'cli', details: { comment: 'stolen HSM backup' } });

    for (const [args, message] of [
      [['blocked-keys', 'add'], /exactly one of/],
      [['blocked-keys', 'add', '--spki-sha256', 'xyz'], /64 hex digits/],
      [['blocked-keys', 'add', '--public-key', '/no/such/file'], /cannot read \/no\/such\/file/],
      [['blocked-keys', 'frob'], /usage/],
    ] as const) {
      const r = await hsmca([...args]);
      expect(r.status).toBe(1);
      expect(r.err.trim().split('\n')[0]).toMatch(/^hsmca: /);
      expect(r.err).toMatch(message);
      expect(r.err).not.toMatch(/\n\s+at /);
    }
  });
});
