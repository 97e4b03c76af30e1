import { spawn } from 'node:child_process';
import { createHash, generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import * as fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import * as http from 'node:http';
import type { Knex } from 'knex';
import { AuditLog } from '../src/audit/audit-log';
import { eventHash, ZERO_HASH } from '../src/audit/chain';
import { checkpointPayload } from '../src/audit/checkpoint';
import { AUDIT_EVENT_TYPES, AuditEventType } from '../src/audit/events';
import { KeyAuditingHsm } from '../src/audit/key-auditing-hsm';
import { AuditVerifyKey, verifyAuditChain } from '../src/audit/verify';
import { FakeClock } from '../src/clock';
import { CaError } from '../src/errors';
import type { Signer } from '../src/hsm/hsm';
import { SoftHsm } from '../src/hsm/soft/soft-hsm';
import { createRouter } from '../src/http/router';
import { Metrics } from '../src/metrics';
import { auditRoutes } from '../src/http/routes/audit';
import { Logger, silentLogger } from '../src/log';
import { Database, openDatabase } from '../src/storage/database';
import { backends, freshPostgres, tempDir } from './helpers/harness';

/** One database; open() gives another connection (pool) to it, as a second process would have. */
interface TestDb {
  url?: string;
  dataDir: string;
  open(): Promise<Database>;
  cleanup(): Promise<void>;
}

async function testDb(kind: 'sqlite' | 'postgres'): Promise<TestDb> {
  const dir = tempDir('hsmca-audit-');
  const pg = kind === 'postgres' ? await freshPostgres() : undefined;
  const opened: Database[] = [];
  return {
    url: pg?.url,
    dataDir: dir,
    async open() {
      const db = await openDatabase({ url: pg?.url, dataDir: dir });
      opened.push(db);
      return db;
    },
    async cleanup() {
      for (const db of opened) await db.close().catch(() => undefined);
      if (pg) await pg.drop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A logger that keeps what it is given. */
function capturingLogger(): Logger & { lines: { level: string; msg: string; fields?: Record<string, unknown> }[] } {
  const lines: { level: string; msg: string; fields?: Record<string, unknown> }[] = [];
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>) => void lines.push({ level, msg, fields });
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/**
 * Another process appending to the same database: plain node, loading the
 * TypeScript sources through typescript's transpiler (no build needed).
 */
const WORKER = `
const ts = require('typescript');
const fs = require('fs');
require.extensions['.ts'] = (m, filename) => {
  const out = ts.transpileModule(fs.readFileSync(filename, 'utf8'), {
    fileName: filename,
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, experimentalDecorators: true, emitDecoratorMetadata: true },
  });
  m._compile(out.outputText, filename);
};
const root = process.cwd();
const { openDatabase } = require(root + '/src/storage/database.ts');
const { AuditLog } = require(root + '/src/audit/audit-log.ts');
const { systemClock } = require(root + '/src/clock.ts');
const { silentLogger } = require(root + '/src/log.ts');
(async () => {
  const o = JSON.parse(process.argv[1]);
  const db = await openDatabase({ url: o.url, dataDir: o.dataDir });
  const audit = new AuditLog({ db, clock: systemClock, log: silentLogger });
  // ready; then wait for the parent's go, so that every writer starts at once
  process.stdout.write('ready\\n');
  await new Promise((r) => process.stdin.once('data', r));
  for (let wave = 0; wave < o.waves; wave++) {
    await Promise.all(Array.from({ length: o.perWave }, (_, i) => audit.record({ type: 'certificateIssued', actor: 'worker:' + o.who, subject: o.who + '-' + wave + '-' + i })));
    await new Promise((r) => setTimeout(r, 3));
  }
  await db.close();
})().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
`;

interface Worker {
  ready: Promise<void>;
  go(): void;
  done: Promise<{ status: number; out: string }>;
}

function startWorker(o: { url?: string; dataDir: string; who: string; waves: number; perWave: number }): Worker {
  const child = spawn(process.execPath, ['-e', WORKER, JSON.stringify(o)], { cwd: path.join(__dirname, '..'), stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let markReady!: () => void;
  const ready = new Promise<void>((r) => (markReady = r));
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    if (out.includes('ready')) markReady();
  });
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const timer = setTimeout(() => child.kill(), 60_000);
  const done = new Promise<{ status: number; out: string }>((resolve) =>
    child.on('close', (code) => {
      clearTimeout(timer);
      markReady();
      resolve({ status: code ?? 1, out });
    }),
  );
  return { ready, go: () => child.stdin.end('go\n'), done };
}

const TYPES: AuditEventType[] = ['certificateIssued', 'certificateRevoked', 'tokenCreated', 'authenticationFailed', 'issuanceRefused', 'crlGenerated'];

/** n events, recorded concurrently (one batch), in a known order. */
async function seed(audit: AuditLog, n: number, tag = 'e'): Promise<void> {
  await Promise.all(
    Array.from({ length: n }, (_, i) =>
      audit.record({ type: TYPES[i % TYPES.length], actor: 'admin:alice', subject: `${tag}-${i}`, details: { i, profile: 'tls-server', sans: ['a.example'] } }),
    ),
  );
}

// ------------------------------------------------------------ tampering, as someone with write access to the database

type Row = { seq: number; at: number; type: string; actor: string; subject: string | null; details: string; prev_hash: string; hash: string };
const CONTENT = ['at', 'type', 'actor', 'subject', 'details', 'prev_hash', 'hash'] as const;

async function row(k: Knex, seq: number): Promise<Row> {
  const r = await k('audit_events').where({ seq }).first();
  if (!r) throw new Error(`no event ${seq}`);
  return { ...r, seq: Number(r.seq), at: Number(r.at) };
}

function isUniqueViolationForTest(e: unknown): boolean {
  const code = (e as { code?: string })?.code;
  return code === '23505' || code === 'SQLITE_CONSTRAINT_UNIQUE';
}

async function maxSeq(k: Knex): Promise<number> {
  const r = await k('audit_events').max<{ m: number | string }[]>({ m: 'seq' });
  return Number(r[0].m);
}

function rehash(r: Row, prevHash: string): string {
  return eventHash({ seq: r.seq, at: r.at, type: r.type, actor: r.actor, subject: r.subject, details: r.details, prevHash });
}

/** What a careful attacker does after a change: rewrite every hash from `fromSeq` on so the chain links again. */
async function recomputeFrom(k: Knex, fromSeq: number): Promise<void> {
  let prev = fromSeq === 1 ? ZERO_HASH : (await row(k, fromSeq - 1)).hash;
  const last = await maxSeq(k);
  for (let s = fromSeq; s <= last; s++) {
    const r = await row(k, s);
    const hash = rehash(r, prev);
    await k('audit_events').where({ seq: s }).update({ prev_hash: prev, hash });
    prev = hash;
  }
}

async function swapRows(k: Knex, a: number, b: number): Promise<void> {
  const ra = await row(k, a);
  const rb = await row(k, b);
  const pick = (r: Row) => Object.fromEntries(CONTENT.map((c) => [c, r[c]]));
  await k('audit_events').where({ seq: b }).update({ prev_hash: 'x'.repeat(64), hash: 'y'.repeat(64) });
  await k('audit_events').where({ seq: a }).update(pick(rb));
  await k('audit_events').where({ seq: b }).update(pick(ra));
}

async function shiftUp(k: Knex, fromSeq: number): Promise<void> {
  for (let s = await maxSeq(k); s >= fromSeq; s--) await k('audit_events').where({ seq: s }).update({ seq: s + 1 });
}

const attackerKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const attackerSign = (data: Buffer) => cryptoSign('sha256', data, { key: attackerKey.privateKey, dsaEncoding: 'der' });

interface Ctx {
  k: Knex;
  signer: Signer;
}

/**
 * The log every scenario starts from: events 1-10, checkpoint event 11
 * (signed), events 12-15, checkpoint event 16 (signed), events 17-20.
 */
interface Scenario {
  name: string;
  tamper(c: Ctx): Promise<void>;
  problem: 'changed' | 'removed' | 'reordered' | 'inserted' | 'badCheckpoint';
  firstBadSeq: number;
}

const SCENARIOS: Scenario[] = [
  {
    name: 'a changed detail field',
    tamper: async ({ k }) => void (await k('audit_events').where({ seq: 7 }).update({ details: '{"i":6,"profile":"code-signing","sans":["a.example"]}' })),
    problem: 'changed',
    firstBadSeq: 7,
  },
  {
    name: 'a changed type',
    tamper: async ({ k }) => void (await k('audit_events').where({ seq: 13 }).update({ type: 'tokenRevoked' })),
    problem: 'changed',
    firstBadSeq: 13,
  },
  {
    name: 'a changed actor after the last checkpoint (the chain alone catches it)',
    tamper: async ({ k }) => void (await k('audit_events').where({ seq: 18 }).update({ actor: 'admin:bob' })),
    problem: 'changed',
    firstBadSeq: 18,
  },
  {
    name: 'a changed subject with its own stored hash rewritten',
    tamper: async ({ k }) => {
      const r = await row(k, 6);
      r.subject = 'someone-else';
      await k('audit_events').where({ seq: 6 }).update({ subject: r.subject, hash: rehash(r, r.prev_hash) });
    },
    problem: 'changed',
    firstBadSeq: 6,
  },
  {
    name: 'a deleted row in the middle',
    tamper: async ({ k }) => void (await k('audit_events').where({ seq: 5 }).delete()),
    problem: 'removed',
    firstBadSeq: 5,
  },
  {
    name: 'a deleted row with the later rows renumbered to close the gap',
    tamper: async ({ k }) => {
      await k('audit_events').where({ seq: 5 }).delete();
      const last = await maxSeq(k);
      for (let s = 6; s <= last; s++) await k('audit_events').where({ seq: s }).update({ seq: s - 1 });
    },
    problem: 'removed',
    firstBadSeq: 5,
  },
  {
    name: 'the log truncated back to before a checkpoint (its signed head seq no longer exists)',
    tamper: async ({ k }) => void (await k('audit_events').where('seq', '>=', 16).delete()),
    problem: 'removed',
    firstBadSeq: 16,
  },
  {
    name: 'two rows swapped',
    tamper: async ({ k }) => swapRows(k, 3, 4),
    problem: 'reordered',
    firstBadSeq: 3,
  },
  {
    name: 'two distant rows swapped across a checkpoint',
    tamper: async ({ k }) => swapRows(k, 9, 14),
    problem: 'reordered',
    firstBadSeq: 9,
  },
  {
    name: 'an inserted forged row (unique index dropped, later rows renumbered)',
    tamper: async ({ k }) => {
      await k.schema.alterTable('audit_events', (t) => t.dropUnique(['prev_hash'], 'audit_events_prev_hash_unique'));
      await shiftUp(k, 8);
      const prev = await row(k, 7);
      const forged: Row = {
        seq: 8,
        at: prev.at + 1,
        type: 'certificateIssued',
        actor: 'admin:mallory',
        subject: 'forged',
        details: '{"profile":"tls-server"}',
        prev_hash: prev.hash,
        hash: '',
      };
      forged.hash = rehash(forged, prev.hash);
      await k('audit_events').insert(forged);
    },
    problem: 'inserted',
    firstBadSeq: 8,
  },
  {
    name: 'a change with every later hash recomputed (caught by the checkpoint signature)',
    tamper: async ({ k }) => {
      await k('audit_events').where({ seq: 13 }).update({ subject: 'rewritten' });
      await recomputeFrom(k, 13);
    },
    problem: 'changed',
    // the change lies after checkpoint 11, whose head still matches, and before checkpoint 16
    firstBadSeq: 12,
  },
  {
    name: 'a change before the first checkpoint with every later hash recomputed',
    tamper: async ({ k }) => {
      await k('audit_events').where({ seq: 4 }).update({ type: 'tokenCreated' });
      await recomputeFrom(k, 4);
    },
    problem: 'changed',
    firstBadSeq: 1,
  },
  {
    name: 'a recomputed chain with the checkpoint head moved to the new hash',
    tamper: async ({ k }) => {
      await k('audit_events').where({ seq: 13 }).update({ subject: 'rewritten' });
      await recomputeFrom(k, 13);
      await k('audit_checkpoints').where({ seq: 16 }).update({ head_hash: (await row(k, 16)).hash });
    },
    problem: 'badCheckpoint',
    firstBadSeq: 16,
  },
  {
    name: 'a forged checkpoint signed by another key under the audit key label',
    tamper: async ({ k }) => {
      const r = await row(k, 20);
      await k('audit_checkpoints').insert({ seq: 20, head_hash: r.hash, signature: attackerSign(checkpointPayload(20, r.hash)), key_label: 'audit-test', at: 0 });
    },
    problem: 'badCheckpoint',
    firstBadSeq: 20,
  },
  {
    name: 'a forged checkpoint naming a key the HSM does not hold',
    tamper: async ({ k }) => {
      const r = await row(k, 18);
      await k('audit_checkpoints').insert({ seq: 18, head_hash: r.hash, signature: attackerSign(checkpointPayload(18, r.hash)), key_label: 'attacker', at: 0 });
    },
    problem: 'badCheckpoint',
    firstBadSeq: 18,
  },
  {
    name: 'a checkpoint signature altered',
    tamper: async ({ k }) => {
      const cp = await k('audit_checkpoints').where({ seq: 11 }).first();
      const sig = Buffer.from(cp.signature);
      sig[sig.length - 3] ^= 0x01;
      await k('audit_checkpoints').where({ id: cp.id }).update({ signature: sig });
    },
    problem: 'badCheckpoint',
    firstBadSeq: 11,
  },
  {
    name: 'a checkpoint moved to another event',
    tamper: async ({ k }) => {
      const r = await row(k, 15);
      await k('audit_checkpoints').where({ seq: 16 }).update({ seq: 15, head_hash: r.hash });
    },
    problem: 'badCheckpoint',
    firstBadSeq: 15,
  },
];

/** Pinned: a change to the encoding would make every stored log fail verification. */
const VECTORS: [string, Parameters<typeof eventHash>[0], string][] = [
  [
    'the first event',
    { seq: 1, at: 1740823200000, type: 'certificateIssued', actor: 'admin:alice', subject: '0a1b', details: '{"profile":"tls-server"}', prevHash: ZERO_HASH },
    '47fee761f3515420e74369223d41d4b398cc84d49027bece125fe66976b7417b',
  ],
  [
    'an event without subject',
    { seq: 2, at: 1740823200001, type: 'auditCheckpoint', actor: 'system', subject: null, details: '{}', prevHash: 'ab'.repeat(32) },
    'edc435d452ac12f960ba79a46939345b0a9188adada03a8c9001a5de5aa1bceb',
  ],
];

describe('audit encoding', () => {
  it.each(VECTORS)('hashes %s as specified', (_n, fields, hash) => {
    expect(eventHash(fields)).toBe(hash);
  });

  it('tells no subject from an empty subject, and a field boundary from its neighbour', () => {
    const base = VECTORS[1][1];
    expect(eventHash({ ...base, subject: '' })).not.toBe(eventHash(base));
    expect(eventHash({ ...base, actor: 'sys', type: 'auditCheckpointtem' })).not.toBe(eventHash({ ...base, actor: 'system', type: 'auditCheckpoint' }));
  });

  it('signs checkpoints over a tagged, length-prefixed (seq, head hash)', () => {
    expect(checkpointPayload(2, 'ab'.repeat(32)).toString('hex')).toBe(
      Buffer.concat([Buffer.from('00000019', 'hex'), Buffer.from('hsmca-audit-checkpoint/v1'), Buffer.from('0000000000000002', 'hex'), Buffer.from('00000040', 'hex'), Buffer.from('ab'.repeat(32))]).toString('hex'),
    );
  });
});

const DATABASES = backends({ pkcs11: false }).map((b) => b.database);

describe.each(DATABASES)('audit log on %s', (kind) => {
  let hsmDir: string;
  let hsm: SoftHsm;
  let signer: Signer;
  let verifyKey: AuditVerifyKey;
  let t: TestDb;
  let db: Database;
  let clock: FakeClock;
  let audit: AuditLog;

  beforeAll(async () => {
    hsmDir = tempDir('hsmca-audit-hsm-');
    hsm = await SoftHsm.open({ storePath: path.join(hsmDir, 'soft-hsm.json'), pin: 'audit test pin' });
    await hsm.generateKey('audit-test', 'ecdsa-p256');
    signer = await hsm.signer('audit-test');
    verifyKey = async (label) => (await hsm.getKey(label))?.publicKey;
  });
  afterAll(async () => {
    await hsm.close();
    fs.rmSync(hsmDir, { recursive: true, force: true });
  });

  beforeEach(async () => {
    t = await testDb(kind);
    db = await t.open();
    clock = new FakeClock(new Date('2025-03-01T10:00:00Z'));
    audit = new AuditLog({ db, clock, log: silentLogger, verifyKey });
  });
  /** other AuditLog instances a test opens, closed after it */
  const extra: AuditLog[] = [];
  afterEach(async () => {
    for (const a of [audit, ...extra.splice(0)]) await a.close();
    await t.cleanup();
  });

  /** Events 1-10, checkpoint 11, events 12-15, checkpoint 16, events 17-20. */
  async function standardLog(): Promise<void> {
    await seed(audit, 10, 'a');
    await audit.checkpoint(signer);
    await seed(audit, 4, 'b');
    await audit.checkpoint(signer);
    await seed(audit, 4, 'c');
    expect(await verifyAuditChain(db, verifyKey)).toMatchObject({ ok: true, events: 20, checkpoints: 2 });
    const cps = await db.knex('audit_checkpoints').orderBy('seq').select('seq');
    expect(cps.map((c: { seq: number }) => Number(c.seq))).toEqual([11, 16]);
  }

  it('chains events: first prev_hash is zeros, each links to the one before, hashes recompute', async () => {
    await seed(audit, 5);
    const rows: Row[] = (await db.knex('audit_events').orderBy('seq')).map((r: Row) => ({ ...r, seq: Number(r.seq), at: Number(r.at) }));
    expect(rows.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(rows[0].prev_hash).toBe(ZERO_HASH);
    for (let i = 0; i < rows.length; i++) {
      if (i > 0) expect(rows[i].prev_hash).toBe(rows[i - 1].hash);
      expect(rows[i].hash).toBe(rehash(rows[i], rows[i].prev_hash));
    }
    expect(rows[0].at).toBe(clock.now().getTime());
    expect(JSON.parse(rows[0].details)).toEqual({ i: 0, profile: 'tls-server', sans: ['a.example'] });
    expect(await audit.verify()).toMatchObject({ ok: true, events: 5, checkpoints: 0 });
  });

  it('writes the specified hash (the writer and the verifier encode alike)', async () => {
    clock.set(new Date(1740823200000));
    await audit.record({ type: 'certificateIssued', actor: 'admin:alice', subject: '0a1b', details: { profile: 'tls-server' } });
    expect((await row(db.knex, 1)).hash).toBe(VECTORS[0][2]);
  });

  it('verifies an empty log', async () => {
    expect(await verifyAuditChain(db, verifyKey)).toMatchObject({ ok: true, events: 0, checkpoints: 0 });
  });

  it.each(SCENARIOS)('catches $name', async (s) => {
    await standardLog();
    await s.tamper({ k: db.knex, signer });
    const r = await verifyAuditChain(db, verifyKey);
    expect(r).toEqual({ ok: false, problem: s.problem, firstBadSeq: s.firstBadSeq, message: expect.any(String) });
  });

  it('catches a deleted last row when that row is the head a checkpoint signed', async () => {
    await seed(audit, 6);
    await audit.checkpoint(signer); // event 7
    expect(await verifyAuditChain(db, verifyKey)).toMatchObject({ ok: true, events: 7, checkpoints: 1 });
    await db.knex('audit_events').where({ seq: 7 }).delete();
    expect(await verifyAuditChain(db, verifyKey)).toMatchObject({ ok: false, problem: 'removed', firstBadSeq: 7 });
  });

  it('without the key lookup, still checks that checkpoint heads match the chain', async () => {
    await standardLog();
    await db.knex('audit_events').where({ seq: 13 }).update({ subject: 'rewritten' });
    await recomputeFrom(db.knex, 13);
    expect(await verifyAuditChain(db)).toMatchObject({ ok: false, problem: 'changed', firstBadSeq: 12 });
  });

  describe('limits (documented: caught only against a checkpoint kept outside the database)', () => {
    it('a tail cut after the last checkpoint verifies, and the logged checkpoint is the outside copy', async () => {
      const log = capturingLogger();
      audit = new AuditLog({ db, clock, log, verifyKey });
      await standardLog();
      await db.knex('audit_events').where('seq', '>', 16).delete();
      expect(await verifyAuditChain(db, verifyKey)).toMatchObject({ ok: true, events: 16, checkpoints: 2 });
      const logged = log.lines.filter((l) => l.msg === 'audit checkpoint').map((l) => l.fields);
      expect(logged).toEqual([
        { seq: 11, headHash: (await row(db.knex, 11)).hash, time: '2025-03-01T10:00:00.000Z', keyLabel: 'audit-test', signature: expect.any(String) },
        { seq: 16, headHash: (await row(db.knex, 16)).hash, time: '2025-03-01T10:00:00.000Z', keyLabel: 'audit-test', signature: expect.any(String) },
      ]);
    });
  });

  it('a recomputed chain with the covering checkpoints deleted is caught by the checkpoint event left without its row', async () => {
    await standardLog();
    await db.knex('audit_events').where({ seq: 13 }).update({ subject: 'rewritten' });
    await recomputeFrom(db.knex, 13);
    await db.knex('audit_checkpoints').where('seq', '>=', 13).delete();
    expect(await verifyAuditChain(db, verifyKey)).toMatchObject({ ok: false, problem: 'missingCheckpoint', firstBadSeq: 16 });
  });

  it('500 concurrent record() calls make one linear chain, written in a few batches', async () => {
    // every type but auditCheckpoint, which only checkpoint() writes
    const RECORDABLE = AUDIT_EVENT_TYPES.filter((type) => type !== 'auditCheckpoint');
    const log = capturingLogger();
    audit = new AuditLog({ db, clock, log, verifyKey });
    await Promise.all(
      Array.from({ length: 500 }, (_, i) => audit.record({ type: RECORDABLE[i % RECORDABLE.length], actor: `requester:r${i % 7}`, subject: `s${i}`, details: { i } })),
    );
    const seqs = (await db.knex('audit_events').orderBy('seq').select('seq', 'subject')).map((r: { seq: number; subject: string }) => [Number(r.seq), r.subject]);
    expect(seqs).toEqual(Array.from({ length: 500 }, (_, i) => [i + 1, `s${i}`]));
    const batches = log.lines.filter((l) => l.msg === 'audit: appended');
    expect(batches.reduce((n, l) => n + Number(l.fields?.events), 0)).toBe(500);
    expect(batches.length).toBeLessThanOrEqual(5);
    await audit.checkpoint(signer);
    expect(await verifyAuditChain(db, verifyKey)).toMatchObject({ ok: true, events: 501, checkpoints: 1 });
  });

  it('two AuditLog instances on two connections (two processes) appending concurrently make one linear chain', async () => {
    const db2 = await t.open();
    const other = new AuditLog({ db: db2, clock, log: silentLogger, verifyKey });
    extra.push(other);
    // both writers (and, on SQLite, their writer threads) up before the race starts
    await Promise.all([audit.record({ type: 'crlGenerated', actor: 'system' }), other.record({ type: 'crlGenerated', actor: 'system' })]);
    const burst = async (a: AuditLog, who: string) => {
      for (let wave = 0; wave < 10; wave++) {
        await Promise.all(Array.from({ length: 25 }, (_, i) => a.record({ type: 'certificateIssued', actor: `admin:${who}`, subject: `${who}-${wave}-${i}` })));
        if (wave % 4 === 3) await a.checkpoint(signer);
        await new Promise((r) => setTimeout(r, 3));
      }
    };
    await Promise.all([burst(audit, 'one'), burst(other, 'two'), seed(audit, 30, 'x'), seed(other, 30, 'y')]);
    const rows = await db2.knex('audit_events').orderBy('seq').select('seq', 'actor', 'prev_hash', 'hash');
    const ckpts = Number((await db.knex('audit_checkpoints').count<{ n: number | string }[]>({ n: '*' }))[0].n);
    expect(rows.length).toBe(2 + 500 + 60 + ckpts);
    expect(rows.map((r: { seq: number }) => Number(r.seq))).toEqual(Array.from({ length: rows.length }, (_, i) => i + 1));
    // the two writers took turns (SQLite's lock is not fair, so not necessarily wave by wave)
    const turns = rows.map((r: { actor: string }) => r.actor).filter((a: string) => a === 'admin:one' || a === 'admin:two');
    expect(turns.filter((a: string, i: number) => i > 0 && a !== turns[i - 1]).length).toBeGreaterThanOrEqual(2);
    expect(ckpts).toBeGreaterThanOrEqual(2);
    expect(await verifyAuditChain(db, verifyKey)).toMatchObject({ ok: true, events: rows.length, checkpoints: ckpts });
    expect(await verifyAuditChain(db2, verifyKey)).toMatchObject({ ok: true, events: rows.length, checkpoints: ckpts });
  });

  it('two real processes and this one appending at once make one linear chain', async () => {
    const children = ['p1', 'p2'].map((who) => startWorker({ url: kind === 'postgres' ? t.url : undefined, dataDir: t.dataDir, who, waves: 20, perWave: 10 }));
    await Promise.all(children.map((c) => c.ready));
    for (const c of children) c.go();
    for (let wave = 0; wave < 20; wave++) {
      await Promise.all(Array.from({ length: 10 }, (_, i) => audit.record({ type: 'tokenCreated', actor: 'admin:parent', subject: `parent-${wave}-${i}` })));
      if (wave % 5 === 4) await audit.checkpoint(signer);
      await new Promise((r) => setTimeout(r, 3));
    }
    const results = await Promise.all(children.map((c) => c.done));
    for (const r of results) expect(r).toMatchObject({ status: 0 });
    const rows = await db.knex('audit_events').orderBy('seq').select('seq', 'actor');
    const ckpts = Number((await db.knex('audit_checkpoints').count<{ n: number | string }[]>({ n: '*' }))[0].n);
    expect(rows.length).toBe(600 + ckpts);
    expect(rows.map((r: { seq: number }) => Number(r.seq))).toEqual(Array.from({ length: rows.length }, (_, i) => i + 1));
    const actors = rows.map((r: { actor: string }) => r.actor);
    for (const a of ['worker:p1', 'worker:p2', 'admin:parent']) expect(actors.filter((x: string) => x === a)).toHaveLength(200);
    // the three writers really took turns (each wave is one batch, so a switch of writer is a transaction boundary)
    const switches = actors.filter((a: string, i: number) => i > 0 && a !== actors[i - 1] && a !== 'system' && actors[i - 1] !== 'system').length;
    expect(switches).toBeGreaterThanOrEqual(5);
    expect(await verifyAuditChain(db, verifyKey)).toMatchObject({ ok: true, events: rows.length, checkpoints: ckpts });
  });

  it('refuses a second successor of the same event at the database (the chain cannot fork)', async () => {
    await seed(audit, 3);
    const r3 = await row(db.knex, 3);
    const fork = { ...r3, seq: 4, subject: 'fork', hash: '' };
    fork.hash = rehash(fork, r3.prev_hash);
    let inserted = false;
    try {
      await db.knex('audit_events').insert({ ...fork, prev_hash: r3.prev_hash });
      inserted = true;
    } catch (e) {
      expect(isUniqueViolationForTest(e)).toBe(true);
    }
    if (inserted) {
      const rows = await db.knex('audit_events').orderBy('seq').select('seq', 'prev_hash', 'hash', 'subject');
      const idx = kind === 'sqlite' ? await db.knex.raw("SELECT name, sql FROM sqlite_master WHERE tbl_name = 'audit_events'") : [];
      throw new Error(`a fork was stored: ${JSON.stringify({ r3, rows, idx })}`);
    }
  });

  it('does not sign a new checkpoint when nothing was recorded since the last one', async () => {
    await seed(audit, 3);
    await audit.checkpoint(signer);
    await audit.checkpoint(signer);
    expect(await verifyAuditChain(db, verifyKey)).toMatchObject({ ok: true, events: 4, checkpoints: 1 });
    await seed(audit, 1);
    await audit.checkpoint(signer);
    expect(await verifyAuditChain(db, verifyKey)).toMatchObject({ ok: true, events: 6, checkpoints: 2 });
    const cp = await row(db.knex, 6);
    expect(cp.type).toBe('auditCheckpoint');
    expect(JSON.parse(cp.details)).toEqual({ previousCheckpoint: { seq: 4, headHash: (await row(db.knex, 4)).hash } });
  });

  it('never stores secrets: secret-named fields are redacted, binary is reduced to its length', async () => {
    await audit.record({
      type: 'tokenCreated',
      actor: 'admin:alice',
      subject: 'tok-1',
      details: { role: 'requester', token: 'a'.repeat(64), nested: { pin: '1234', password: 'pw' }, keyBytes: Buffer.from('secretkey'), when: new Date(0) },
    });
    const r = await row(db.knex, 1);
    expect(r.details).not.toMatch(/aaaa|1234|"pw"|secretkey|736563726574/);
    expect(JSON.parse(r.details)).toEqual({
      keyBytes: '[redacted]',
      nested: { password: '[redacted]', pin: '[redacted]' },
      role: 'requester',
      token: '[redacted]',
      when: '1970-01-01T00:00:00.000Z',
    });
    await audit.record({ type: 'keyGenerated', actor: 'system', details: { publicKey: Buffer.alloc(91) } });
    expect(JSON.parse((await row(db.knex, 2)).details)).toEqual({ publicKey: '[binary, 91 bytes]' });
  });

  it('stores details canonically (sorted keys) and odd strings as the database keeps them', async () => {
    await audit.record({ type: 'issuanceRefused', actor: 'requester:x\u0000y', subject: 'bad\uD800', details: { z: 1, a: { y: 2, b: [3, undefined] } } });
    await audit.record({ type: 'certificateIssued', actor: 'requester:zoë', subject: 'CN=Ünïcødé 😀,O=例え', details: { note: 'e\u0301 😀 "q" \\' } });
    await audit.record({ type: 'certificateIssued', actor: 'requester:zoë', subject: '' });
    const r = await row(db.knex, 1);
    expect(r.details).toBe('{"a":{"b":[3,null],"y":2},"z":1}');
    expect(r.actor).toBe('requester:x\uFFFDy');
    expect(r.subject).toBe('bad\uFFFD');
    expect((await row(db.knex, 2)).subject).toBe('CN=Ünïcødé 😀,O=例え');
    expect((await row(db.knex, 3)).subject).toBe('');
    for (const seq of [1, 2, 3]) {
      const x = await row(db.knex, seq);
      expect(x.hash).toBe(rehash(x, x.prev_hash));
    }
    expect(await verifyAuditChain(db, verifyKey)).toMatchObject({ ok: true, events: 3 });
  });

  it('tryRecord logs instead of failing when the database is gone; record rejects with 503', async () => {
    const db2 = await t.open();
    const log = capturingLogger();
    const a2 = new AuditLog({ db: db2, clock, log });
    await db2.close();
    await expect(a2.tryRecord({ type: 'certificateRevoked', actor: 'admin:alice', subject: '01ab' })).resolves.toBeUndefined();
    expect(log.lines).toContainEqual({ level: 'error', msg: 'audit: event not recorded', fields: expect.objectContaining({ type: 'certificateRevoked', subject: '01ab' }) });
    await expect(a2.record({ type: 'certificateRevoked', actor: 'admin:alice' })).rejects.toMatchObject({ kind: 'unavailable', code: 'databaseUnavailable' });
  });

  it('KeyAuditingHsm records every key generated, with its public key hash and never key material', async () => {
    const audited = new KeyAuditingHsm(hsm, audit);
    expect(audited.kind).toBe('soft');
    const key = await audited.generateKey(`audited-${kind}`, 'ecdsa-p384');
    const [e] = (await audit.list({ limit: 10 })).items;
    expect(e).toMatchObject({
      seq: 1,
      type: 'keyGenerated',
      actor: 'system',
      subject: `audited-${kind}`,
      details: { algorithm: 'ecdsa-p384', hsm: 'soft', publicKeySha256: createHash('sha256').update(key.publicKey).digest('hex') },
    });
    expect((await audited.getKey(`audited-${kind}`))?.publicKey).toEqual(key.publicKey);
  });

  it('close() writes what is queued, then refuses more', async () => {
    const pending = audit.record({ type: 'crlGenerated', actor: 'system' });
    await audit.close();
    await expect(pending).resolves.toBeUndefined();
    await expect(audit.record({ type: 'crlGenerated', actor: 'system' })).rejects.toMatchObject({ kind: 'unavailable' });
    expect(await verifyAuditChain(db, verifyKey)).toMatchObject({ ok: true, events: 1, checkpoints: 0 });
  });

  it('rejects an unknown event type', async () => {
    await expect(audit.record({ type: 'nonsense' as AuditEventType, actor: 'system' })).rejects.toBeInstanceOf(CaError);
  });

  it('refuses auditCheckpoint events from record(): only checkpoint() writes them, each with its signed row', async () => {
    await expect(audit.record({ type: 'auditCheckpoint', actor: 'system' })).rejects.toBeInstanceOf(CaError);
    expect(await verifyAuditChain(db, verifyKey)).toMatchObject({ ok: true, events: 0 });
  });

  it('lists oldest first with a cursor', async () => {
    await seed(audit, 7);
    const p1 = await audit.list({ limit: 3 });
    expect(p1.items.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(p1.more).toBe(true);
    const p2 = await audit.list({ limit: 3, afterSeq: p1.lastSeq });
    expect(p2.items.map((e) => e.seq)).toEqual([4, 5, 6]);
    const p3 = await audit.list({ limit: 3, afterSeq: p2.lastSeq });
    expect(p3.items.map((e) => e.seq)).toEqual([7]);
    expect(p3.more).toBe(false);
    expect(p1.items[0]).toEqual({
      seq: 1,
      at: clock.now(),
      type: 'certificateIssued',
      actor: 'admin:alice',
      subject: 'e-0',
      details: { i: 0, profile: 'tls-server', sans: ['a.example'] },
      hash: expect.stringMatching(/^[0-9a-f]{64}$/),
      prevHash: ZERO_HASH,
    });
  });

  describe('HTTP routes', () => {
    let server: import('node:http').Server;
    let base: string;
    beforeEach(async () => {
      // the audit routes behind the service's router, with a stand-in for token authentication
      const listener = createRouter(auditRoutes(audit), {
        authenticate: async (authorization) => {
          if (authorization !== 'Bearer admin') throw new CaError('unauthorized', 'unauthorized', 'not an admin');
          return { id: 'admin-id', name: 'admin', role: 'admin', scope: null };
        },
        metrics: new Metrics(),
        log: silentLogger,
        maxBodyBytes: 64 * 1024,
      });
      server = http.createServer(listener);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    afterEach(async () => {
      await new Promise((r) => server.close(r));
    });
    const get = async (p: string, token: string | null = 'admin') => {
      const res = await fetch(base + p, { headers: token ? { authorization: `Bearer ${token}` } : {} });
      return { status: res.status, body: (await res.json()) as any };
    };

    it('GET /api/v1/audit pages oldest first', async () => {
      await seed(audit, 5);
      const p1 = await get('/api/v1/audit?limit=2');
      expect(p1.status).toBe(200);
      expect(p1.body.items.map((e: { seq: number }) => e.seq)).toEqual([1, 2]);
      expect(p1.body.items[0]).toEqual({
        seq: 1,
        at: '2025-03-01T10:00:00.000Z',
        type: 'certificateIssued',
        actor: 'admin:alice',
        subject: 'e-0',
        details: { i: 0, profile: 'tls-server', sans: ['a.example'] },
        hash: expect.stringMatching(/^[0-9a-f]{64}$/),
        prevHash: ZERO_HASH,
      });
      expect(p1.body.items[1].prevHash).toBe(p1.body.items[0].hash);
      const p2 = await get(`/api/v1/audit?limit=2&cursor=${p1.body.nextCursor}`);
      expect(p2.body.items.map((e: { seq: number }) => e.seq)).toEqual([3, 4]);
      const p3 = await get(`/api/v1/audit?limit=2&cursor=${p2.body.nextCursor}`);
      expect(p3.body).toMatchObject({ items: [{ seq: 5 }], nextCursor: null });
    });

    it.each([
      ['a bad limit', '/api/v1/audit?limit=0', 400, 'invalidLimit'],
      ['a foreign cursor', '/api/v1/audit?cursor=YzE6Mg', 400, 'invalidCursor'],
    ])('refuses %s', async (_n, p, status, code) => {
      const r = await get(p);
      expect(r.status).toBe(status);
      expect(r.body.error.code).toBe(code);
    });

    it.each([['/api/v1/audit'], ['/api/v1/audit/verify']])('%s needs an admin', async (p) => {
      expect((await get(p, null)).status).toBe(401);
    });

    it('GET /api/v1/audit/verify reports the chain', async () => {
      await seed(audit, 4);
      await audit.checkpoint(signer);
      expect((await get('/api/v1/audit/verify')).body).toEqual({
        ok: true,
        events: 5,
        checkpoints: 1,
        newestCheckpoint: { seq: 5, headHash: expect.stringMatching(/^[0-9a-f]{64}$/), keyLabel: 'audit-test', signedAt: '2025-03-01T10:00:00.000Z' },
      });
      await db.knex('audit_events').where({ seq: 2 }).update({ actor: 'admin:bob' });
      expect((await get('/api/v1/audit/verify')).body).toEqual({ ok: false, firstBadSeq: 2, problem: 'changed', message: expect.stringContaining('event 2') });
    });
  });
});
