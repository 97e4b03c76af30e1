import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createPrivateKey, sign as cryptoSign, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { freePort, freshPostgres, postgresUrl, run, tempDir } from './helpers/harness';
import { BIN, startServer, stopServer } from './helpers/server-process';

/**
 * M-of-N quorum over real processes: `hsmca serve` and the `hsmca` command on
 * one database. M-1 approvals do not run an operation; a forged, replayed,
 * duplicate or late approval is refused; the M-th runs it, in whichever
 * process receives it.
 */
const databases: ('sqlite' | 'postgres')[] = postgresUrl() ? ['sqlite', 'postgres'] : ['sqlite'];

// several hsmca processes per test (CLI runs start in a second or more each), on a shared machine
jest.setTimeout(240_000);

describe.each(databases)('quorum on %s', (database) => {
  const dir = tempDir();
  const adminToken = randomBytes(32).toString('hex');
  let env: Record<string, string>;
  let url: string;
  let server: ChildProcess | undefined;
  let drop: (() => Promise<void>) | undefined;
  const keys: Record<string, { priv: string; pub: string }> = {};

  const hsmca = (args: string[], extra: Record<string, string> = {}) => {
    const r = spawnSync(process.execPath, [BIN, ...args], { env: { ...env, ...extra }, encoding: 'utf8', timeout: 120000 });
    return { status: r.status, out: r.stdout, err: r.stderr };
  };
  const hsmcaAsync = (args: string[]) =>
    new Promise<{ status: number | null; out: string; err: string }>((resolve) => {
      const c = spawn(process.execPath, [BIN, ...args], { env });
      let out = '';
      let err = '';
      c.stdout.on('data', (d) => (out += d));
      c.stderr.on('data', (d) => (err += d));
      c.on('exit', (status) => resolve({ status, out, err }));
    });
  // A connection per request (agent: false): the hsmca commands below run synchronously and block this
  // event loop for seconds, so a kept-alive connection could be closed by the server unseen and fail the next request.
  const api = (method: string, p: string, body?: unknown, token: string | null = adminToken) =>
    new Promise<{ status: number; body: any }>((resolve, reject) => {
      const data = body ? JSON.stringify(body) : undefined;
      const req = http.request(
        url + p,
        { method, agent: false, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(data ? { 'content-type': 'application/json' } : {}) } },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d) => (text += d));
          res.on('end', () => resolve({ status: res.statusCode!, body: text ? JSON.parse(text) : undefined }));
        },
      );
      req.on('error', reject);
      req.end(data);
    });
  const requestIdOf = (text: string) => text.match(/quorum request ([0-9a-f]{24})/)![1];
  /** An approver's signature over a request's signingInput, as an approver signing offline would make it. */
  const signFor = (who: string, signingInput: string) => {
    const key = createPrivateKey(keys[who].priv);
    return cryptoSign(key.asymmetricKeyType === 'ed25519' ? null : 'sha256', Buffer.from(signingInput, 'base64'), key).toString('base64');
  };

  beforeAll(async () => {
    for (const [name, alg] of [
      ['alice', 'ec'],
      ['bob', 'ed25519'],
      ['carol', 'ec'],
      ['mallory', 'ec'],
    ]) {
      const priv = path.join(dir, `${name}.key`);
      const pub = path.join(dir, `${name}.pub`);
      if (alg === 'ec') run('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', priv]);
      else run('openssl', ['genpkey', '-algorithm', 'ED25519', '-out', priv]);
      run('openssl', ['pkey', '-in', priv, '-pubout', '-out', pub]);
      keys[name] = { priv: fs.readFileSync(priv, 'utf8'), pub };
    }
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HSMCA_'))) as Record<string, string>;
    env = {
      ...clean,
      HSMCA_DATA_DIR: path.join(dir, 'data'),
      HSMCA_PORT: String(port),
      HSMCA_HTTPS_PORT: '0',
      HSMCA_LOG_LEVEL: 'warn',
      HSMCA_ADMIN_TOKEN: adminToken,
      HSMCA_QUORUM: '2',
    };
    if (database === 'postgres') {
      const pg = await freshPostgres();
      env.HSMCA_DATABASE_URL = pg.url;
      drop = pg.drop;
    }
    const init = hsmca(['init']);
    expect(init.err).toBe('');
    expect(init.status).toBe(0);
  });
  afterAll(async () => {
    if (server) await stopServer(server, 'SIGTERM');
    await drop?.();
  });

  it('registers the first M approvers at once, and the next one only under quorum', () => {
    for (const name of ['alice', 'bob']) {
      const r = hsmca(['quorum', 'approver', 'add', '--name', name, '--key', keys[name].pub]);
      expect(r.err).toBe('');
      expect(r.out).toMatch(new RegExp(`adding approver ${name}: done`));
    }
    const bad = hsmca(['quorum', 'approver', 'add', '--name', 'eve', '--key', path.join(dir, 'alice.key')]);
    expect(bad.status).toBe(1);
    expect(bad.err).toMatch(/private key/);
    expect(bad.err.trim().split('\n')).toHaveLength(1);
    expect(hsmca(['quorum', 'approver', 'add', '--name', 'alice2', '--key', keys.alice.pub]).err).toMatch(/registered already \(approver alice\)/);

    const add = hsmca(['quorum', 'approver', 'add', '--name', 'carol', '--key', keys.carol.pub]);
    expect(add.status).toBe(0);
    expect(add.out).toMatch(/waits for quorum request/);
    const id = requestIdOf(add.out);

    // M-1 approvals: nothing runs
    const one = hsmca(['quorum', 'approve', id, '--key', path.join(dir, 'alice.key')]);
    expect(one.err).toBe('');
    expect(one.out).toMatch(/approved quorum request .* \(1 of 2\)/);
    expect(hsmca(['quorum', 'approver', 'list']).out).not.toMatch(/carol/);

    // the same approver again counts once, and is refused
    const twice = hsmca(['quorum', 'approve', id, '--key', path.join(dir, 'alice.key')]);
    expect(twice.status).toBe(1);
    expect(twice.err).toMatch(/already approved .* counts once/);

    // a key that is not registered
    const forged = hsmca(['quorum', 'approve', id, '--key', path.join(dir, 'mallory.key')]);
    expect(forged.status).toBe(1);
    expect(forged.err).toMatch(/not a registered approver's/);
    expect(hsmca(['quorum', 'show', id]).out).toMatch(/pending, 1 of 2 approvals/);
    expect(hsmca(['quorum', 'approver', 'list']).out).not.toMatch(/carol/);

    // the M-th approval runs it, here in the approving process
    const two = hsmca(['quorum', 'approve', id, '--key', path.join(dir, 'bob.key')]);
    expect(two.err).toBe('');
    expect(two.out).toMatch(/\(2 of 2\)/);
    expect(two.out).toMatch(/approver\.add ran/);
    expect(hsmca(['quorum', 'approver', 'list']).out).toMatch(/ecdsa-p256 .* carol/);
    expect(hsmca(['quorum', 'show', id]).out).toMatch(/executed, 2 of 2 approvals/);
    // closed: a late approval is refused
    expect(hsmca(['quorum', 'approve', id, '--key', path.join(dir, 'carol.key')]).err).toMatch(/is executed, not pending/);
  });

  it('creates an admin token over the API only after M approvals; forged and replayed signatures are refused', async () => {
    server = await startServer(env, url);
    const created = await api('POST', '/api/v1/tokens', { role: 'admin', name: 'second-admin' });
    expect(created.status).toBe(202);
    const newToken: string = created.body.token;
    const req = created.body.quorumRequest;
    expect(req).toMatchObject({ kind: 'token.create', state: 'pending', threshold: 2, approvals: [] });
    expect(JSON.stringify(req)).not.toContain(newToken);
    expect((await api('GET', '/api/v1/tokens', undefined, newToken)).status).toBe(401);

    // a second request, to replay signatures against
    const other = await api('POST', '/api/v1/tokens', { role: 'admin', name: 'third-admin' });
    expect(other.status).toBe(202);
    const otherReq = other.body.quorumRequest;

    const list = await api('GET', '/api/v1/quorum/requests?state=pending');
    expect(list.status).toBe(200);
    expect(list.body.items.map((r: { id: string }) => r.id)).toEqual(expect.arrayContaining([req.id, otherReq.id]));
    const shown = await api('GET', `/api/v1/quorum/requests/${req.id}`);
    expect(shown.body.signingInput).toBe(req.signingInput);

    // forged: random bytes, and a real signature by a key that is not registered
    const approve = (id: string, signature: string, approver?: string) => api('POST', `/api/v1/quorum/requests/${id}/approve`, { signature, approver });
    const random = await approve(req.id, randomBytes(72).toString('base64'));
    expect(random.status).toBe(403);
    expect(random.body.error.code).toBe('approvalRefused');
    expect((await approve(req.id, signFor('mallory', req.signingInput))).status).toBe(403);
    // replayed: alice's approval of the other request
    const aliceOnOther = signFor('alice', otherReq.signingInput);
    expect((await approve(otherReq.id, aliceOnOther)).status).toBe(200);
    const replay = await approve(req.id, aliceOnOther, 'alice');
    expect(replay.status).toBe(403);
    expect(replay.body.error.code).toBe('approvalRefused');
    expect((await api('GET', `/api/v1/quorum/requests/${req.id}`)).body.approvals).toEqual([]);

    // M-1 approvals: still pending, the token does not work
    const first = await approve(req.id, signFor('carol', req.signingInput));
    expect(first.status).toBe(200);
    expect(first.body.request).toMatchObject({ state: 'pending', approvals: [{ approver: 'carol' }] });
    expect(first.body.executed).toBeNull();
    expect((await api('GET', '/api/v1/tokens', undefined, newToken)).status).toBe(401);

    // the M-th approval (Ed25519), through the command while the server runs: the token works
    const second = await hsmcaAsync(['quorum', 'approve', req.id, '--key', path.join(dir, 'bob.key')]);
    expect(second.err).toBe('');
    expect(second.out).toMatch(/token\.create ran/);
    const works = await api('GET', '/api/v1/tokens', undefined, newToken);
    expect(works.status).toBe(200);
    expect(works.body.items.find((t: { name: string }) => t.name === 'second-admin')).toMatchObject({ role: 'admin', revokedAt: null });

    // requester tokens are not gated
    const requester = await api('POST', '/api/v1/tokens', { role: 'requester', name: 'web' });
    expect(requester.status).toBe(201);

    // every step is in the audit log
    for (const type of ['quorumRequested', 'quorumApproved', 'quorumRefused', 'quorumExecuted', 'quorumApproverAdded']) {
      const a = await api('GET', `/api/v1/audit?type=${type}&limit=50`);
      expect(a.status).toBe(200);
      expect(a.body.items.length).toBeGreaterThan(0);
    }
    const executed = await api('GET', '/api/v1/audit?type=quorumExecuted&limit=50');
    expect(executed.body.items.map((e: { subject: string }) => e.subject)).toContain(req.id);
    const verify = await api('GET', '/api/v1/audit/verify');
    expect(verify.body.ok).toBe(true);
  });

  it('rotates the issuing CA and renews the root only after M approvals', async () => {
    const approve = (id: string, who: string, signingInput: string) => api('POST', `/api/v1/quorum/requests/${id}/approve`, { signature: signFor(who, signingInput) });
    const before = await api('GET', '/api/v1/ca/issuers');
    expect(before.body.items).toHaveLength(1);

    const rotate = await api('POST', '/api/v1/ca/rotate');
    expect(rotate.status).toBe(202);
    const req = rotate.body.quorumRequest;
    expect(req).toMatchObject({ kind: 'ca.rotate', state: 'pending', threshold: 2 });
    expect((await approve(req.id, 'alice', req.signingInput)).body.executed).toBeNull();
    expect((await api('GET', '/api/v1/ca/issuers')).body.items).toHaveLength(1);

    const second = await approve(req.id, 'carol', req.signingInput);
    expect(second.status).toBe(200);
    expect(second.body.request.state).toBe('executed');
    const after = await api('GET', '/api/v1/ca/issuers');
    expect(after.body.items.map((i: { id: number; status: string }) => [i.id, i.status]).sort()).toEqual([
      [1, 'previous'],
      [2, 'active'],
    ]);

    // the root key's use, from the command: a pending request, nothing made yet
    // (async: a blocked event loop would let the server close this test's idle keep-alive connection unseen)
    const renew = await hsmcaAsync(['ca', 'renew-root']);
    expect(renew.status).toBe(0);
    const renewReq = JSON.parse(renew.out).quorumRequest;
    expect(renewReq).toMatchObject({ kind: 'ca.renew-root', state: 'pending' });
    expect(JSON.parse((await hsmcaAsync(['ca', 'list'])).out).roots).toHaveLength(1);
    const executed = await api('GET', '/api/v1/audit?type=quorumExecuted&limit=50');
    expect(executed.body.items.map((e: { subject: string }) => e.subject)).toContain(req.id);
  });

  it('refuses an approval after the request expired', async () => {
    const short = { HSMCA_QUORUM_REQUEST_TTL_SECONDS: '1' };
    const list = hsmca(['token', 'list']);
    const adminId = list.out.split('\n').find((l) => / admin .*second-admin/.test(l))!.split(/\s+/)[0];
    const revoke = hsmca(['token', 'revoke', adminId], short);
    expect(revoke.err).toBe('');
    expect(revoke.out).toMatch(/waits for quorum request/);
    const id = requestIdOf(revoke.out);
    await new Promise((r) => setTimeout(r, 1500));
    const late = hsmca(['quorum', 'approve', id, '--key', path.join(dir, 'alice.key')]);
    expect(late.status).toBe(1);
    expect(late.err).toMatch(/expired at/);
    const shown = await api('GET', `/api/v1/quorum/requests/${id}`);
    expect(shown.body).toMatchObject({ state: 'expired', approvals: [] });
    const viaApi = await api('POST', `/api/v1/quorum/requests/${id}/approve`, { signature: signFor('bob', shown.body.signingInput) });
    expect(viaApi.status).toBe(409);
    expect(viaApi.body.error.code).toBe('quorumRequestExpired');
    // the admin token is still valid
    expect(hsmca(['token', 'list']).out).toMatch(new RegExp(`${adminId}\\s+admin\\s+active`));
  });

  it('changes M only under quorum, and never above the approvers registered', () => {
    const tooHigh = hsmca(['quorum', 'set-threshold', '4']);
    expect(tooHigh.status).toBe(1);
    expect(tooHigh.err).toMatch(/needs at least 4 registered approvers/);
    const set = hsmca(['quorum', 'set-threshold', '3']);
    const id = requestIdOf(set.out);
    expect(hsmca(['quorum', 'approve', id, '--key', path.join(dir, 'carol.key')]).out).toMatch(/1 of 2/);
    expect(hsmca(['quorum', 'approver', 'list']).out).toMatch(/quorum: 2 approvals/);
    expect(hsmca(['quorum', 'approve', id, '--key', path.join(dir, 'alice.key')]).out).toMatch(/quorum\.threshold ran/);
    expect(hsmca(['quorum', 'approver', 'list']).out).toMatch(/quorum: 3 approvals/);
    // with M = 3 and three approvers, none can be removed
    expect(hsmca(['quorum', 'approver', 'remove', 'bob']).err).toMatch(/would leave 2 approvers for a quorum of 3/);
  });

  it('takes a backup only when M approvals are in, and prints the shares in the process that ran it', () => {
    const out = path.join(dir, `quorum-${database}.backup`);
    const asked = hsmca(['backup', 'create', '--out', out, '--shares', '3', '--threshold', '2']);
    expect(asked.err).toBe('');
    const id = requestIdOf(asked.out);
    for (const who of ['alice', 'bob']) {
      const r = hsmca(['quorum', 'approve', id, '--key', path.join(dir, `${who}.key`)]);
      expect(r.out).not.toMatch(/share \d:/);
      expect(fs.existsSync(out)).toBe(false);
    }
    const last = hsmca(['quorum', 'approve', id, '--key', path.join(dir, 'carol.key')]);
    expect(last.err).toBe('');
    expect(last.out).toMatch(/backup\.create ran/);
    expect([...last.out.matchAll(/^share \d: hsmca-share-[0-9a-f]{16}-[0-9a-f]+$/gm)]).toHaveLength(3);
    expect(fs.readFileSync(out).subarray(0, 15).toString()).toBe('hsmca-backup v1');
    // the shares are not in the stored result
    expect(hsmca(['quorum', 'show', id]).out).not.toMatch(/hsmca-share-/);
  });
});
