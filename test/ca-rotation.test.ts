import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { backends, freshPostgres, run, runAsync, runStatus, startTestCa, TestCa, tempDir } from './helpers/harness';
import { makeCsr, writeTemp } from './helpers/csr';
import { expectRevokedReadFromIndex } from './helpers/query-plan';
import { BIN } from './helpers/server-process';
import { createSoftHsmTokens, SoftHsmTokens } from './helpers/softhsm';
import { issuerLinks } from '../src/ca/issuers';
import { ISSUER_CRL_INDEX } from '../migrations/013_issuers';
import { CertificateStore } from '../src/storage/certificate-store';
import { Database, openDatabase } from '../src/storage/database';

const derOf = (pemFile: string) => new X509Certificate(fs.readFileSync(pemFile)).raw;

/** Where an issuer's certificates point: the first issuer keeps the contract's URLs, later ones get stable URLs of their own. */
describe('issuer links', () => {
  it.each([
    [1, 'http://ca.test/ca/issuer.crt', 'http://ca.test/crl', 'http://ca.test/crl/delta'],
    [2, 'http://ca.test/ca/issuer/2.crt', 'http://ca.test/crl/issuer/2', 'http://ca.test/crl/issuer/2/delta'],
    [17, 'http://ca.test/ca/issuer/17.crt', 'http://ca.test/crl/issuer/17', 'http://ca.test/crl/issuer/17/delta'],
  ])('issuer %i', (id, caIssuers, crl, delta) => {
    const l = issuerLinks('http://ca.test', id);
    expect([l.caIssuersUrl, l.crlUrl, l.deltaCrlUrl, l.ocspUrl]).toEqual([caIssuers, crl, delta, 'http://ca.test/ocsp']);
    expect(l.crlNames).toEqual([crl]);
  });
});

/** One issuer's CRL entries (migration 013): only its own certificates, read from the issuer index, never from the table. */
describe.each([...new Set(backends({ pkcs11: false }).map((b) => b.database))])('an issuer\'s CRL entries on %s', (kind) => {
  const NOW = Date.UTC(2026, 0, 15);
  let dir: string;
  let pg: Awaited<ReturnType<typeof freshPostgres>> | undefined;
  let db: Database;

  beforeAll(async () => {
    dir = tempDir('hsmca-issuer-crl-');
    pg = kind === 'postgres' ? await freshPostgres() : undefined;
    db = await openDatabase({ url: pg?.url, dataDir: dir });
    const row = (i: number, issuer: number | undefined, revoked: boolean) => ({
      serial: i.toString(16).padStart(8, '0'),
      state: 'issued',
      profile: 'tls-server',
      subject: `CN=c${i}`,
      sans: '{}',
      not_before: NOW - 86_400_000,
      not_after: NOW + 80 * 86_400_000,
      der: Buffer.from([0x30, 0x00]),
      requester_id: null,
      created_at: NOW,
      revoked_at: revoked ? NOW - 1000 : null,
      revocation_reason: revoked ? 1 : null,
      invalidity_date: null,
      // a row written without an issuer: from before migration 013, the first issuer's
      ...(issuer === undefined ? {} : { issuer_id: issuer }),
    });
    await db.knex('certificates').insert(row(1, undefined, true));
    await db.knex('certificates').insert([row(2, 1, true), row(3, 2, true), row(4, 2, false), row(5, 3, true), row(6, 1, false)]);
  });
  afterAll(async () => {
    await db?.close();
    await pg?.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it.each([
    [1, ['00000001', '00000002']],
    [2, ['00000003']],
    [3, ['00000005']],
    [4, []],
  ])('issuer %i lists only its own revoked certificates', async (issuer, serials) => {
    const store = new CertificateStore(db);
    const pages: string[] = [];
    for await (const p of store.revokedPages({ expiredAfter: NOW, issuer })) pages.push(...p.map((r) => r.serial));
    expect(pages).toEqual(serials);
    expect(await store.countRevoked({ expiredAfter: NOW, issuer })).toBe(serials.length);
    expect(await store.anyRevokedSince(NOW - 5000, undefined, issuer)).toBe(serials.length > 0);
    // every issuer's together: what a CRL listed before migration 013
    expect(await store.countRevoked({ expiredAfter: NOW })).toBe(4);
  });

  it('reads an issuer\'s CRL from the issuer index, never from the table', async () => {
    await expectRevokedReadFromIndex(db, { expiredAfter: NOW, issuer: 2 }, ISSUER_CRL_INDEX);
  });
});

/**
 * Issuing CA rotation and root renewal (issue 17) as any client sees them:
 * openssl verifies certificates of every issuer with the right chains, asks
 * OCSP about both, reads each issuer's CRL; the state survives a restart; a
 * rotation run by the hsmca CLI in another process is adopted by the server.
 */
describe.each(backends())('CA rotation ($name)', (backend) => {
  let ca: TestCa;
  let env: Record<string, string>;
  let dataDir: string;
  let pg: { drop(): Promise<void> } | undefined;
  let tokens: SoftHsmTokens | undefined;
  let slot = 300;
  const files: Record<string, string> = {};
  const leaves: Record<string, { serial: string; file: string; chain: string[] }> = {};

  const issue = async (name: string) => {
    const { csr } = makeCsr({ slot: slot++, sans: `DNS:${name}` });
    const r = await ca.api('POST', '/api/v1/certificates', { body: { csr } });
    expect(r.status).toBe(201);
    leaves[name] = { serial: r.body.serialNumber, file: writeTemp(`${name}.pem`, r.body.certificate), chain: r.body.chain };
    return leaves[name];
  };
  const issuersBody = async () => (await ca.api('GET', '/api/v1/ca/issuers', { token: null })).body.items as { id: number; status: string; certificate: string; chain: string[]; rootId: number }[];
  const verify = (...args: string[]) => runStatus('openssl', ['verify', ...args]);
  const ocsp = (issuerFile: string, rootFile: string, ...args: string[]) => runAsync('openssl', ['ocsp', '-issuer', issuerFile, '-CAfile', rootFile, '-url', `${ca.url}/ocsp`, ...args]);
  const fetchDer = async (p: string) => {
    const r = await fetch(ca.url + p);
    expect(r.status).toBe(200);
    return Buffer.from(await r.arrayBuffer());
  };
  const crlText = async (p: string) => run('openssl', ['crl', '-inform', 'DER', '-noout', '-text'], { input: await fetchDer(p) });
  const upper = (serial: string) => serial.toUpperCase().replace(/^0+/, '');
  /** The CRL at `p` once it lists `serial` (CRLs follow revocations within seconds). */
  const crlListing = async (p: string, serial: string) => {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const text = await crlText(p);
      if (text.includes(upper(serial)) || Date.now() > deadline) return text;
      await new Promise((r) => setTimeout(r, 500));
    }
  };
  const cli = (...args: string[]) =>
    new Promise<{ status: number; out: string; err: string }>((resolve) =>
      execFile(process.execPath, [BIN, ...args], { env: { ...process.env, ...env, HSMCA_LOG_LEVEL: 'silent' }, timeout: 120_000 }, (e, out, err) =>
        resolve({ status: e ? ((e as { code?: number }).code ?? 1) : 0, out, err }),
      ),
    );

  beforeAll(async () => {
    dataDir = path.join(tempDir(), 'data');
    env = {};
    if (backend.database === 'postgres') {
      const db = await freshPostgres();
      pg = db;
      env.HSMCA_DATABASE_URL = db.url;
    }
    if (backend.hsm === 'pkcs11') {
      tokens = await createSoftHsmTokens(['hsmca-ca']);
      Object.assign(env, { HSMCA_HSM: 'pkcs11', HSMCA_PKCS11_MODULE: tokens.module, HSMCA_PKCS11_TOKEN_LABEL: 'hsmca-ca', HSMCA_PKCS11_PIN: tokens.pin, SOFTHSM2_CONF: tokens.confPath });
    }
    ca = await startTestCa(backend, { env, dataDir, keepData: true });
    env = ca.env;
    const r = await ca.api('GET', '/api/v1/ca', { token: null });
    files.root1 = writeTemp('root1.pem', r.body.root);
    files.issuer1 = writeTemp('issuer1.pem', r.body.issuer);
    expect(r.body.issuerId).toBe(1);
    expect(r.body.previousIssuers).toEqual([]);
  });
  afterAll(async () => {
    await ca?.svc.stop().catch(() => undefined);
    await pg?.drop();
    await tokens?.cleanup();
    fs.rmSync(path.dirname(dataDir), { recursive: true, force: true });
  });

  it('refuses the ceremonies to a requester and to nobody', async () => {
    const { token } = await ca.svc.core.tokens.create({ role: 'requester', name: 'rotation-requester', expiresAt: null });
    for (const p of ['/api/v1/ca/rotate', '/api/v1/ca/renew-root']) {
      expect((await ca.api('POST', p, { token })).status).toBe(403);
      const anon = await ca.api('POST', p, { token: null });
      expect(anon.status).toBe(401);
      expect(anon.body.error.code).toBeDefined();
    }
    const unknown = await ca.api('GET', '/ca/issuer/99.crt', { token: null });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('unknownIssuer');
    expect((await ca.api('GET', '/crl/issuer/abc', { token: null })).status).toBe(404);
    expect((await ca.api('GET', '/ca/root/x.crt', { token: null })).status).toBe(404);
  });

  it('rotates: new certificates come from the new issuer, both validate with their own chains', async () => {
    const a = await issue('before-rotation.example');
    await issue('before-rotation-revoked.example');
    const rot = await ca.api('POST', '/api/v1/ca/rotate');
    expect(rot.status).toBe(201);
    expect(rot.body.issuer.id).toBe(2);
    expect(rot.body.previousIssuerId).toBe(1);
    files.issuer2 = writeTemp('issuer2.pem', rot.body.certificate);

    const b = await issue('after-rotation.example');
    await issue('after-rotation-revoked.example');
    expect(b.chain[0]).toBe(rot.body.certificate);
    expect(b.chain[0]).not.toBe(a.chain[0]);
    expect(verify('-CAfile', files.root1, '-untrusted', files.issuer1, a.file).out).toMatch(/: OK/);
    expect(verify('-CAfile', files.root1, '-untrusted', files.issuer2, b.file).out).toMatch(/: OK/);
    // the wrong issuer does not vouch for it
    expect(verify('-CAfile', files.root1, '-untrusted', files.issuer1, b.file).status).not.toBe(0);

    // its links: the new issuer's own stable URLs, which serve its certificate
    const text = run('openssl', ['x509', '-in', b.file, '-noout', '-text']);
    expect(text).toContain(`CA Issuers - URI:${ca.url}/ca/issuer/2.crt`);
    expect(text).toContain(`URI:${ca.url}/crl/issuer/2`);
    expect((await fetchDer('/ca/issuer/2.crt')).equals(derOf(files.issuer2))).toBe(true);
    expect((await fetchDer('/ca/issuer.crt')).equals(derOf(files.issuer2))).toBe(true);
    expect((await fetchDer('/ca/issuer/1.crt')).equals(derOf(files.issuer1))).toBe(true);

    // GET /api/v1/ca: the contract's fields are the active chain; the previous issuer is listed
    const caBody = (await ca.api('GET', '/api/v1/ca', { token: null })).body;
    expect(caBody.issuer).toBe(rot.body.certificate);
    expect(caBody.chain).toEqual([caBody.issuer, caBody.root]);
    expect(caBody.issuerId).toBe(2);
    expect(caBody.previousIssuers.map((i: { id: number; status: string }) => [i.id, i.status])).toEqual([[1, 'previous']]);
    expect((await issuersBody()).map((i) => [i.id, i.status])).toEqual([
      [1, 'previous'],
      [2, 'active'],
    ]);
  });

  it('answers OCSP good and revoked for the certificates of both issuers, each signed by its own responder', async () => {
    const [a, ar, b, br] = ['before-rotation.example', 'before-rotation-revoked.example', 'after-rotation.example', 'after-rotation-revoked.example'].map((n) => leaves[n]);
    expect((await ca.api('POST', `/api/v1/certificates/${ar.serial}/revoke`, { body: { reason: 'superseded' } })).status).toBe(200);
    expect((await ca.api('POST', `/api/v1/certificates/${br.serial}/revoke`, { body: { reason: 'cessationOfOperation' } })).status).toBe(200);

    const one = await ocsp(files.issuer1, files.root1, '-cert', a.file, '-cert', ar.file);
    expect(one.out).toMatch(/Response verify OK/);
    expect(one.out).toMatch(new RegExp(`${a.file}: good`));
    expect(one.out).toMatch(new RegExp(`${ar.file}: revoked[\\s\\S]*Reason: superseded`));
    const two = await ocsp(files.issuer2, files.root1, '-cert', b.file, '-cert', br.file);
    expect(two.out).toMatch(/Response verify OK/);
    expect(two.out).toMatch(new RegExp(`${b.file}: good`));
    expect(two.out).toMatch(new RegExp(`${br.file}: revoked[\\s\\S]*Reason: cessationOfOperation`));
    // without a nonce (the pre-signed path) too
    const cached = await ocsp(files.issuer1, files.root1, '-no_nonce', '-cert', a.file);
    expect(cached.out).toMatch(new RegExp(`${a.file}: good`));
    // the console's status of a certificate asks OCSP with the certificate's own issuer
    for (const [leaf, status] of [[a, 'good'], [ar, 'revoked'], [b, 'good'], [br, 'revoked']] as const) {
      const d = await ca.api('GET', `/api/v1/certificates/${leaf.serial}/details`);
      expect([d.status, d.body.ocsp.status]).toEqual([200, status]);
    }
    // a serial of issuer 1 asked of issuer 2 is not issuer 2's
    const cross = await ocsp(files.issuer2, files.root1, '-serial', `0x${a.serial}`);
    expect(cross.out).toMatch(/Response verify OK/);
    expect(cross.out).toMatch(/: unknown/);
  });

  it('keeps a CRL per issuer, each listing only its own revocations', async () => {
    const [a, ar, b, br] = ['before-rotation.example', 'before-rotation-revoked.example', 'after-rotation.example', 'after-rotation-revoked.example'].map((n) => leaves[n]);
    const crl1 = await crlListing('/crl/issuer/1', ar.serial);
    const crl2 = await crlListing('/crl/issuer/2', br.serial);
    expect(crl1).toContain(upper(ar.serial));
    expect(crl1).not.toContain(upper(br.serial));
    expect(crl1).toMatch(/Issuer: .*Issuing CA\n/);
    expect(crl2).toContain(upper(br.serial));
    expect(crl2).not.toContain(upper(ar.serial));
    expect(crl2).toMatch(/Issuer: .*Issuing CA 2\n/);
    // /crl is the active issuer's
    expect((await fetchDer('/crl')).equals(await fetchDer('/crl/issuer/2'))).toBe(true);

    // openssl checks each certificate against its issuer's CRL (its distribution point matches the CRL's scope)
    const crlFile1 = writeTemp('issuer1.crl', run('openssl', ['crl', '-inform', 'DER', '-outform', 'PEM'], { input: await fetchDer('/crl/issuer/1') }));
    const crlFile2 = writeTemp('issuer2.crl', run('openssl', ['crl', '-inform', 'DER', '-outform', 'PEM'], { input: await fetchDer('/crl/issuer/2') }));
    const both = ['-CAfile', files.root1, '-crl_check', '-CRLfile', crlFile1, '-CRLfile', crlFile2];
    expect(verify(...both, '-untrusted', files.issuer1, a.file).out).toMatch(/: OK/);
    expect(verify(...both, '-untrusted', files.issuer1, ar.file).out).toMatch(/certificate revoked/);
    expect(verify(...both, '-untrusted', files.issuer2, b.file).out).toMatch(/: OK/);
    expect(verify(...both, '-untrusted', files.issuer2, br.file).out).toMatch(/certificate revoked/);
  });

  it('renews the root with cross-certificates both ways; the next issuer is signed by the new root', async () => {
    const rr = await ca.api('POST', '/api/v1/ca/renew-root');
    expect(rr.status).toBe(201);
    expect(rr.body.rootId).toBe(2);
    files.root2 = writeTemp('root2.pem', rr.body.root);
    const [forward, backward] = rr.body.crossCertificates;
    expect([forward.subjectRootId, forward.issuerRootId, backward.subjectRootId, backward.issuerRootId]).toEqual([2, 1, 1, 2]);
    files.crossNewByOld = writeTemp('cross-2-by-1.pem', forward.certificate);
    files.crossOldByNew = writeTemp('cross-1-by-2.pem', backward.certificate);
    expect((await fetchDer('/ca/root/2.crt')).equals(derOf(files.root2))).toBe(true);
    expect((await fetchDer(`/ca/cross/${forward.id}.crt`)).equals(derOf(files.crossNewByOld))).toBe(true);
    // the new root is self-signed; each cross-certificate verifies under the other root
    expect(verify('-CAfile', files.root2, files.root2).out).toMatch(/: OK/);
    expect(verify('-CAfile', files.root1, files.crossNewByOld).out).toMatch(/: OK/);
    expect(verify('-CAfile', files.root2, files.crossOldByNew).out).toMatch(/: OK/);
    // the active issuer is unchanged until the next rotation
    expect((await ca.api('GET', '/api/v1/ca', { token: null })).body.issuerId).toBe(2);

    const rot = await ca.api('POST', '/api/v1/ca/rotate');
    expect(rot.status).toBe(201);
    expect(rot.body.issuer).toMatchObject({ id: 3, rootId: 2 });
    files.issuer3 = writeTemp('issuer3.pem', rot.body.certificate);
    const c = await issue('after-root-renewal.example');
    expect(c.chain[1]).toBe(rr.body.root);
    // a client that trusts the new root
    expect(verify('-CAfile', files.root2, '-untrusted', files.issuer3, c.file).out).toMatch(/: OK/);
    // a client that still trusts only the old root: through the cross-certificate
    const oldPath = writeTemp('untrusted-old.pem', fs.readFileSync(files.issuer3, 'utf8') + fs.readFileSync(files.crossNewByOld, 'utf8'));
    expect(verify('-CAfile', files.root1, '-untrusted', oldPath, c.file).out).toMatch(/: OK/);
    expect(verify('-CAfile', files.root1, '-untrusted', files.issuer3, c.file).status).not.toBe(0);
    // a client that trusts only the new root, for a certificate of the first issuer
    const a = leaves['before-rotation.example'];
    const newPath = writeTemp('untrusted-new.pem', fs.readFileSync(files.issuer1, 'utf8') + fs.readFileSync(files.crossOldByNew, 'utf8'));
    expect(verify('-CAfile', files.root2, '-untrusted', newPath, a.file).out).toMatch(/: OK/);
    const o = await ocsp(files.issuer3, files.root2, '-cert', c.file);
    expect(o.out).toMatch(/Response verify OK/);
    expect(o.out).toMatch(new RegExp(`${c.file}: good`));
    // /ca/root.crt is the active issuer's root
    expect((await fetchDer('/ca/root.crt')).equals(derOf(files.root2))).toBe(true);
  });

  it('records the ceremonies in the audit log', async () => {
    type Ev = { type: string; actor: string; details: { issuerId?: number; rootId?: number } };
    const rotated = await ca.api('GET', '/api/v1/audit?type=issuerRotated&limit=500');
    const renewed = await ca.api('GET', '/api/v1/audit?type=rootRenewed&limit=500');
    expect([rotated.status, renewed.status]).toEqual([200, 200]);
    const types = [...(rotated.body.items as Ev[]), ...(renewed.body.items as Ev[])];
    expect(types.map((e) => [e.type, e.details.issuerId ?? e.details.rootId]).sort()).toEqual([
      ['issuerRotated', 2],
      ['issuerRotated', 3],
      ['rootRenewed', 2],
    ]);
    expect(types.every((e) => e.actor.startsWith('admin:'))).toBe(true);
  });

  it('keeps every issuer, root and status across a restart', async () => {
    await ca.svc.stop();
    ca = await startTestCa(backend, { env, dataDir, keepData: true });
    expect((await issuersBody()).map((i) => [i.id, i.status, i.rootId])).toEqual([
      [1, 'previous', 1],
      [2, 'previous', 1],
      [3, 'active', 2],
    ]);
    const d = await issue('after-restart.example');
    expect(verify('-CAfile', files.root2, '-untrusted', files.issuer3, d.file).out).toMatch(/: OK/);
    const [a, ar] = [leaves['before-rotation.example'], leaves['before-rotation-revoked.example']];
    const o = await ocsp(files.issuer1, files.root1, '-cert', a.file, '-cert', ar.file);
    expect(o.out).toMatch(/Response verify OK/);
    expect(o.out).toMatch(new RegExp(`${a.file}: good`));
    expect(o.out).toMatch(new RegExp(`${ar.file}: revoked`));
    expect(await crlText('/crl/issuer/1')).toContain(upper(ar.serial));
    expect(await crlText('/crl/issuer/2')).toContain(upper(leaves['after-rotation-revoked.example'].serial));
  });

  it('adopts a rotation made by the hsmca CLI in another process', async () => {
    const list = await cli('ca', 'list');
    expect(list.status).toBe(0);
    expect(JSON.parse(list.out).issuers.map((i: { id: number; status: string }) => i.status)).toEqual(['previous', 'previous', 'active']);
    const r = await cli('ca', 'rotate');
    expect(r.err).toMatch(/issuing CA 4 is active/);
    expect(r.status).toBe(0);
    const deadline = Date.now() + 15_000;
    while ((await ca.api('GET', '/api/v1/ca', { token: null })).body.issuerId !== 4 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 250));
    files.issuer4 = writeTemp('issuer4.pem', JSON.parse(r.out).certificate);
    const e = await issue('after-cli-rotation.example');
    expect(e.chain[0]).toBe(JSON.parse(r.out).certificate);
    expect(verify('-CAfile', files.root2, '-untrusted', files.issuer4, e.file).out).toMatch(/: OK/);
    const o = await ocsp(files.issuer4, files.root2, '-cert', e.file);
    expect(o.out).toMatch(/Response verify OK/);
    expect(o.out).toMatch(new RegExp(`${e.file}: good`));
    const bad = await cli('ca', 'spin');
    expect(bad.status).not.toBe(0);
    expect(bad.err).toMatch(/^hsmca: usage: hsmca ca list \| rotate \| renew-root\n$/);
  });
});
