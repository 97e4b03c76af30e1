import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Knex } from 'knex';
import { AuditLog } from '../src/audit/audit-log';
import { newestAnchor, parseAnchor } from '../src/audit/anchor';
import { eventHash, ZERO_HASH } from '../src/audit/chain';
import { checkpointPayload, checkpointPayloadV2 } from '../src/audit/checkpoint';
import { AuditVerifyKey, verifyAuditChain } from '../src/audit/verify';
import { FakeClock } from '../src/clock';
import type { Signer } from '../src/hsm/hsm';
import { SoftHsm } from '../src/hsm/soft/soft-hsm';
import { silentLogger } from '../src/log';
import { Database, openDatabase } from '../src/storage/database';
import { backends, freshPostgres, tempDir } from './helpers/harness';

/**
 * What `audit verify` proves about checkpoints: every checkpoint event of the
 * chain has a valid signed row, the signed payload (v2) covers the
 * checkpoint's time, the newest signed checkpoint is reported, and an anchor
 * kept outside the database catches a truncated or rewritten tail.
 */

const BIN = path.join(__dirname, '..', 'bin', 'hsmca.js');

type Row = { seq: number; at: number; type: string; actor: string; subject: string | null; details: string; prev_hash: string; hash: string };

async function row(k: Knex, seq: number): Promise<Row> {
  const r = await k('audit_events').where({ seq }).first();
  if (!r) throw new Error(`no event ${seq}`);
  return { ...r, seq: Number(r.seq), at: Number(r.at) };
}

/** An attacker's rewrite: change event `seq`'s subject and recompute every hash from it on. */
async function rewriteFrom(k: Knex, seq: number): Promise<void> {
  await k('audit_events').where({ seq }).update({ subject: 'rewritten' });
  let prev = seq === 1 ? ZERO_HASH : (await row(k, seq - 1)).hash;
  const last = Number((await k('audit_events').max<{ m: number }[]>({ m: 'seq' }))[0].m);
  for (let s = seq; s <= last; s++) {
    const r = await row(k, s);
    const hash = eventHash({ seq: r.seq, at: r.at, type: r.type, actor: r.actor, subject: r.subject, details: r.details, prevHash: prev });
    await k('audit_events').where({ seq: s }).update({ prev_hash: prev, hash });
    prev = hash;
  }
}

async function seed(audit: AuditLog, n: number, tag: string): Promise<void> {
  for (let i = 0; i < n; i++) await audit.record({ type: 'certificateIssued', actor: 'admin:alice', subject: `${tag}-${i}`, details: { i } });
}

describe.each(backends({ pkcs11: false }).map((b) => b.database))('audit checkpoints and anchors on %s', (kind) => {
  let hsmDir: string;
  let hsm: SoftHsm;
  let signer: Signer;
  let verifyKey: AuditVerifyKey;
  let dir: string;
  let pg: { url: string; drop(): Promise<void> } | undefined;
  let db: Database;
  let clock: FakeClock;
  let audit: AuditLog;

  beforeAll(async () => {
    hsmDir = tempDir('hsmca-audit-verify-hsm-');
    hsm = await SoftHsm.open({ storePath: path.join(hsmDir, 'soft-hsm.json'), pin: 'audit test pin' });
    await hsm.generateKey('audit-test', 'ecdsa-p256');
    await hsm.generateKey('other-key', 'ecdsa-p256');
    signer = await hsm.signer('audit-test');
    verifyKey = async (label) => (await hsm.getKey(label))?.publicKey;
  });
  afterAll(async () => {
    await hsm.close();
    fs.rmSync(hsmDir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    dir = tempDir('hsmca-audit-verify-');
    pg = kind === 'postgres' ? await freshPostgres() : undefined;
    db = await openDatabase({ url: pg?.url, dataDir: dir });
    clock = new FakeClock(new Date('2025-03-01T10:00:00Z'));
    audit = new AuditLog({ db, clock, log: silentLogger, verifyKey });
  });
  afterEach(async () => {
    await audit.close();
    await db.close();
    if (pg) await pg.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Events 1-10, checkpoint 11 (at 10:01), events 12-15, checkpoint 16 (at 10:02), events 17-20. */
  async function standardLog(): Promise<void> {
    await seed(audit, 10, 'a');
    clock.set(new Date('2025-03-01T10:01:00Z'));
    await audit.checkpoint(signer);
    await seed(audit, 4, 'b');
    clock.set(new Date('2025-03-01T10:02:00Z'));
    await audit.checkpoint(signer);
    await seed(audit, 4, 'c');
  }

  it('reports the newest signed checkpoint, whose time is signed (payload v2)', async () => {
    await standardLog();
    const r = await verifyAuditChain(db, verifyKey);
    expect(r).toEqual({
      ok: true,
      events: 20,
      checkpoints: 2,
      newestCheckpoint: { seq: 16, headHash: (await row(db.knex, 16)).hash, keyLabel: 'audit-test', signedAt: '2025-03-01T10:02:00.000Z' },
    });
    const cp = await db.knex('audit_checkpoints').where({ seq: 16 }).first();
    expect(Number(cp.version)).toBe(2);
    expect(await signer.publicKey).toBeDefined();
    const { verify } = await import('node:crypto');
    const key = { key: Buffer.from((await hsm.getKey('audit-test'))!.publicKey), format: 'der' as const, type: 'spki' as const, dsaEncoding: 'der' as const };
    expect(verify('sha256', checkpointPayloadV2(16, cp.head_hash, Date.parse('2025-03-01T10:02:00Z')), key, Buffer.from(cp.signature))).toBe(true);
  });

  it('fails when a checkpoint time is moved (the time is signed)', async () => {
    await standardLog();
    await db.knex('audit_checkpoints').where({ seq: 16 }).update({ at: Date.parse('2025-03-01T12:00:00Z') });
    expect(await verifyAuditChain(db, verifyKey)).toMatchObject({ ok: false, problem: 'badCheckpoint', firstBadSeq: 16 });
  });

  it.each([
    ['the newest checkpoint row deleted', [16], false, 16],
    ['every checkpoint row deleted', [11, 16], false, 11],
    ['the newest checkpoint row deleted and the events before it rewritten', [16], true, 16],
  ])('fails with missingCheckpoint: %s', async (_n, deleted, rewrite, firstBadSeq) => {
    await standardLog();
    if (rewrite) await rewriteFrom(db.knex, 13);
    await db.knex('audit_checkpoints').whereIn('seq', deleted).delete();
    expect(await verifyAuditChain(db, verifyKey)).toEqual({ ok: false, problem: 'missingCheckpoint', firstBadSeq, message: expect.stringContaining(`event ${firstBadSeq}`) });
    // also without the HSM's keys: the row is missing whatever its signature
    expect(await verifyAuditChain(db)).toMatchObject({ ok: false, problem: 'missingCheckpoint', firstBadSeq });
  });

  it('still verifies v1 checkpoints (data folders from before v2), reporting no signed time', async () => {
    await seed(audit, 3, 'old');
    const head = await row(db.knex, 3);
    await db.knex('audit_checkpoints').insert({ seq: 3, head_hash: head.hash, signature: await signer.sign(checkpointPayload(3, head.hash)), key_label: 'audit-test', at: 5, version: 1 });
    expect(await verifyAuditChain(db, verifyKey)).toEqual({
      ok: true,
      events: 3,
      checkpoints: 1,
      newestCheckpoint: { seq: 3, headHash: head.hash, keyLabel: 'audit-test', signedAt: null },
    });
    // a v1 row claiming to be v2 does not verify
    await db.knex('audit_checkpoints').update({ version: 2 });
    expect(await verifyAuditChain(db, verifyKey)).toMatchObject({ ok: false, problem: 'badCheckpoint', firstBadSeq: 3 });
  });

  it('completes a checkpoint whose signature was interrupted after its event was written', async () => {
    await seed(audit, 3, 'x');
    await audit.checkpoint(signer); // event 4
    await db.knex('audit_checkpoints').delete(); // as if the process died between the event and the signed row
    expect(await verifyAuditChain(db, verifyKey)).toMatchObject({ ok: false, problem: 'missingCheckpoint', firstBadSeq: 4 });
    await audit.checkpoint(signer);
    expect(await verifyAuditChain(db, verifyKey)).toMatchObject({ ok: true, events: 4, checkpoints: 1, newestCheckpoint: { seq: 4 } });
  });

  describe('against an anchor exported before', () => {
    it('a tail truncated back to an earlier signed checkpoint passes without the anchor and fails with it', async () => {
      await standardLog();
      const anchor = await newestAnchor(db);
      expect(anchor).toMatchObject({ format: 'hsmca-audit-anchor/v1', seq: 16, keyLabel: 'audit-test', time: '2025-03-01T10:02:00.000Z', version: 2 });
      expect(await verifyAuditChain(db, verifyKey, { anchor })).toMatchObject({ ok: true, anchor: { seq: 16 } });

      await db.knex('audit_events').where('seq', '>', 11).delete();
      await db.knex('audit_checkpoints').where('seq', '>', 11).delete();
      expect(await verifyAuditChain(db, verifyKey)).toMatchObject({ ok: true, events: 11, newestCheckpoint: { seq: 11 } });
      expect(await verifyAuditChain(db, verifyKey, { anchor })).toEqual({ ok: false, problem: 'rolledBack', firstBadSeq: 12, message: expect.stringContaining('16') });
    });

    it('a tail deleted and re-appended past the anchor fails at the anchor', async () => {
      await standardLog();
      const anchor = parseAnchor(JSON.stringify(await newestAnchor(db)));
      await db.knex('audit_events').where('seq', '>', 11).delete();
      await db.knex('audit_checkpoints').where('seq', '>', 11).delete();
      const again = new AuditLog({ db, clock, log: silentLogger, verifyKey });
      await seed(again, 12, 'forged');
      await again.checkpoint(signer); // even the HSM signing the rewritten head does not help
      await again.close();
      expect(await verifyAuditChain(db, verifyKey)).toMatchObject({ ok: true, events: 24 });
      expect(await verifyAuditChain(db, verifyKey, { anchor })).toMatchObject({ ok: false, problem: 'anchorMismatch', firstBadSeq: 12 });
    });

    it.each([
      ['an altered signature', (a: Record<string, unknown>) => ({ ...a, signature: Buffer.alloc(70, 1).toString('base64') })],
      ['another head hash', (a: Record<string, unknown>) => ({ ...a, headHash: 'ab'.repeat(32) })],
      ['a moved time', (a: Record<string, unknown>) => ({ ...a, time: '2025-03-01T10:05:00.000Z' })],
      ['another HSM key', (a: Record<string, unknown>) => ({ ...a, keyLabel: 'other-key' })],
      ['a key the HSM does not hold', (a: Record<string, unknown>) => ({ ...a, keyLabel: 'nobody' })],
    ])('refuses an anchor with %s (badAnchor)', async (_n, alter) => {
      await standardLog();
      const anchor = parseAnchor(JSON.stringify(alter((await newestAnchor(db)) as unknown as Record<string, unknown>)));
      expect(await verifyAuditChain(db, verifyKey, { anchor })).toMatchObject({ ok: false, problem: 'badAnchor', firstBadSeq: 16 });
    });

  });
});

describe('audit anchors as files', () => {
  it.each([
    ['not JSON', '{'],
    ['another format', JSON.stringify({ format: 'x', seq: 1, headHash: 'ab'.repeat(32), time: null, version: 1, keyLabel: 'k', signature: 'AA==' })],
    ['a bad seq', JSON.stringify({ format: 'hsmca-audit-anchor/v1', seq: -1, headHash: 'ab'.repeat(32), time: null, version: 1, keyLabel: 'k', signature: 'AA==' })],
    ['a bad head hash', JSON.stringify({ format: 'hsmca-audit-anchor/v1', seq: 1, headHash: 'xyz', time: null, version: 1, keyLabel: 'k', signature: 'AA==' })],
    ['a v2 anchor without time', JSON.stringify({ format: 'hsmca-audit-anchor/v1', seq: 1, headHash: 'ab'.repeat(32), time: null, version: 2, keyLabel: 'k', signature: 'AA==' })],
    ['no signature', JSON.stringify({ format: 'hsmca-audit-anchor/v1', seq: 1, headHash: 'ab'.repeat(32), time: null, version: 1, keyLabel: 'k' })],
  ])('parseAnchor refuses %s with a clear error', (_n, text) => {
    expect(() => parseAnchor(text)).toThrow(expect.objectContaining({ kind: 'badRequest', code: 'invalidAnchor' }));
  });
});

describe('hsmca audit checkpoint --export and audit verify --anchor', () => {
  let dataDir: string;
  let env: Record<string, string>;
  beforeAll(() => {
    dataDir = path.join(tempDir('hsmca-audit-cli-'), 'data');
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HSMCA_'))) as Record<string, string>;
    env = { ...clean, HSMCA_DATA_DIR: dataDir, HSMCA_LOG_LEVEL: 'error' };
  });
  afterAll(() => fs.rmSync(path.dirname(dataDir), { recursive: true, force: true }));
  const hsmca = (...args: string[]) => {
    const r = spawnSync(process.execPath, [BIN, ...args], { env, encoding: 'utf8', timeout: 120000 });
    return { status: r.status, out: r.stdout, err: r.stderr };
  };

  it('exports an anchor, verifies against it, and catches a truncated tail only with it', async () => {
    expect(hsmca('init').status).toBe(0);
    const first = Number((await withDb((k) => k('audit_checkpoints').max<{ m: number }[]>({ m: 'seq' })))[0].m);
    expect(hsmca('token', 'create', '--role', 'requester', '--name', 'cli-test').status).toBe(0);
    const anchorFile = path.join(path.dirname(dataDir), 'anchor.json');
    const exp = hsmca('audit', 'checkpoint', '--export', anchorFile);
    expect(exp.err).toBe('');
    expect(exp.status).toBe(0);
    const anchor = JSON.parse(fs.readFileSync(anchorFile, 'utf8'));
    expect(anchor).toMatchObject({ format: 'hsmca-audit-anchor/v1', seq: expect.any(Number), version: 2, keyLabel: 'hsmca-audit' });
    expect(anchor.seq).toBeGreaterThan(first);

    const ok = hsmca('audit', 'verify', '--anchor', anchorFile);
    expect(ok.out).toMatch(new RegExp(`audit chain OK: ${anchor.seq} events, 2 checkpoints; newest signed checkpoint: event ${anchor.seq} at ${anchor.time}`));
    expect(ok.out).toMatch(new RegExp(`matches the anchor at event ${anchor.seq}`));
    expect(ok.status).toBe(0);

    // someone with write access to the database cuts the log back to the first checkpoint
    await withDb(async (k) => {
      await k('audit_events').where('seq', '>', first).delete();
      await k('audit_checkpoints').where('seq', '>', first).delete();
    });
    const without = hsmca('audit', 'verify');
    expect(without.out).toMatch(new RegExp(`audit chain OK: ${first} events, 1 checkpoints; newest signed checkpoint: event ${first}`));
    expect(without.status).toBe(0);
    const withAnchor = hsmca('audit', 'verify', '--anchor', anchorFile);
    expect(withAnchor.out).toMatch(/audit chain BROKEN at event \d+ \(rolledBack\)/);
    expect(withAnchor.status).toBe(1);

    const missing = hsmca('audit', 'verify', '--anchor', path.join(dataDir, 'no-such-file.json'));
    expect(missing.err).toMatch(/^hsmca: cannot read the anchor/);
    expect(missing.status).toBe(1);
  });

  async function withDb<T>(f: (k: Knex) => Promise<T>): Promise<T> {
    const db = await openDatabase({ dataDir });
    try {
      return await f(db.knex);
    } finally {
      await db.close();
    }
  }
});
