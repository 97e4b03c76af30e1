import { createHash, createPublicKey, KeyObject, verify as cryptoVerify } from 'node:crypto';
import type { Knex } from 'knex';
import { Clock } from '../clock';
import { CaError } from '../errors';
import type { Hsm, HsmHealth, KeyInfo, Signer } from '../hsm/hsm';
import { KeyAlgorithm, keyAlgorithmInfo } from '../hsm/key-algorithm';
import { Logger } from '../log';
import { Database, isUniqueViolation, storageError } from '../storage/database';
import { Appended, AuditEventFields, EventRow, PreparedEvent, ZERO_HASH, appendChainKnex, encInt, encStr, eventHash } from './chain';
import { canonicalJson, wellFormed } from './canonical-json';
import { AUDIT_EVENT_TYPES, AuditEvent, AuditEventInput, AuditEventType } from './events';

/**
 * The audit log: an append-only hash chain of security events, with
 * checkpoints of its head signed by an HSM key.
 *
 * Chain. Event n carries prev_hash = hash of event n-1 (64 zeros for event 1)
 * and hash = SHA-256 over the canonical encoding of
 * (seq, at, type, actor, subject, details, prev_hash) (see `eventHash`):
 * every field is length-prefixed, so no two different events encode alike.
 * `details` is stored as canonical JSON (sorted keys, no whitespace) and the
 * hash covers exactly the stored text. `seq` is assigned by the writer as
 * last seq + 1, so the sequence has no gaps unless an event was removed.
 * `at` is the time record() was called; seq, not `at`, is the order (two
 * processes' clocks and batches interleave).
 *
 * Appends. record() queues the event in memory; what is queued in one
 * event-loop tick, or while the previous batch was being written, is written
 * in one transaction (up to 500 events), and each caller's promise
 * resolves once its own event is committed. Reading the head and inserting
 * the batch happen in one transaction that holds the log's write lock, so
 * appends are serialised across every process sharing the database:
 *  - SQLite: the batch is one BEGIN IMMEDIATE transaction (the database
 *    write lock is taken before the head is read; a lock held by another
 *    process is waited for from a timer), on the
 *    database's writing connection (SqliteWriter), where issuance writes and
 *    appends take turns rather than compete for the lock; the commit is
 *    durable after the writer's shared fsync of the log.
 *  - PostgreSQL: a transaction-scoped advisory lock (PG_AUDIT_LOCK), taken
 *    before the head is read and released by COMMIT or ROLLBACK. Readers
 *    (list, verify) are not blocked, and neither is VACUUM.
 * The UNIQUE indexes on prev_hash and hash are the last word: the chain can
 * never fork even if a writer ignored the lock (a violation is retried).
 *
 * Checkpoints. checkpoint(signer) appends an 'auditCheckpoint' event and
 * signs (seq, hash) of that event with an HSM key (`checkpointPayload`). An
 * attacker with write access to the database can edit an event and recompute
 * every later hash, and the chain then verifies on its own; what it cannot do
 * is produce the HSM's signature over the new head. So verify compares every
 * checkpoint's signed head with the chain as it is now.
 *
 * What verifyAuditChain proves (given the key lookup, so that signatures are
 * checked against the HSM's public keys, never keys stored in the database):
 * every event up to the last surviving checkpoint is exactly as written, in
 * order, with nothing removed or inserted. Without recomputation, a change anywhere is
 * pinpointed to the exact event; with recomputation, the checkpoint catches
 * it and the report names the first event after the previous good checkpoint
 * (the change lies between the two checkpoints: the hashes that would locate
 * it more precisely were rewritten too).
 *
 * What it does not prove: events after the last checkpoint are only protected
 * by the unkeyed chain (anyone with write access can append, or cut the tail
 * and re-append); and someone who can delete checkpoint rows can roll the log
 * back to before the last checkpoint that still exists. Both are caught only
 * against a copy of a checkpoint kept elsewhere: each checkpoint is logged
 * (seq, head hash, signature) at info level, so a log shipped off the host is
 * that copy. Checkpoint `at` is informational and not signed.
 */

export type AuditVerifyProblem = 'changed' | 'removed' | 'reordered' | 'inserted' | 'badCheckpoint';

export type AuditVerifyResult =
  | { ok: true; events: number; checkpoints: number }
  | { ok: false; firstBadSeq: number; problem: AuditVerifyProblem; message: string };

/** Returns the DER SubjectPublicKeyInfo of the key under a label, or undefined. */
export type AuditVerifyKey = (keyLabel: string) => Promise<Buffer | undefined>;

// ------------------------------------------------------------ encoding

const CHECKPOINT_TAG = 'hsmca-audit-checkpoint/v1';

/** The bytes a checkpoint signature covers. */
export function checkpointPayload(seq: number, headHash: string): Buffer {
  return Buffer.concat([encStr(CHECKPOINT_TAG), encInt(seq), encStr(headHash)]);
}


// ------------------------------------------------------------ the log

type Prepared = PreparedEvent & { type: AuditEventType };

interface Pending extends Prepared {
  resolve(a: Appended): void;
  reject(e: unknown): void;
}

const MAX_BATCH = 500;
const MAX_FORK_RETRIES = 5;

function fieldsOf(r: EventRow): AuditEventFields {
  return { seq: Number(r.seq), at: Number(r.at), type: r.type, actor: r.actor, subject: r.subject ?? null, details: r.details, prevHash: r.prev_hash };
}

function toEvent(r: EventRow): AuditEvent {
  let details: unknown;
  try {
    details = JSON.parse(r.details);
  } catch {
    details = r.details;
  }
  return {
    seq: Number(r.seq),
    at: new Date(Number(r.at)),
    type: r.type,
    actor: r.actor,
    subject: r.subject ?? null,
    details,
    hash: r.hash,
    prevHash: r.prev_hash,
  };
}

export class AuditLog {
  private readonly knex: Knex;
  private queue: Pending[] = [];
  private scheduled = false;
  private running = false;
  private drained: (() => void)[] = [];
  private checkpointing: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly deps: {
      db: Database;
      clock: Clock;
      log: Logger;
      /** public keys of checkpoint signers, for verify() (the HSM: label -> SPKI) */
      verifyKey?: AuditVerifyKey;
    },
  ) {
    this.knex = deps.db.knex;
  }

  /** Appends an event; resolves once it is committed. Rejects with CaError (unavailable) when the database fails. */
  record(e: AuditEventInput): Promise<void> {
    return this.append(e).then(() => undefined);
  }

  /**
   * Appends an 'auditCheckpoint' event and stores the signer's signature over
   * its (seq, hash). Does nothing when the newest event is already the head
   * of a checkpoint (an idle log gains no events from the timer).
   */
  checkpoint(signer: Signer): Promise<void> {
    const run = this.checkpointing.then(() => this.signCheckpoint(signer));
    this.checkpointing = run.catch(() => undefined);
    return run;
  }

  /**
   * record() for hooks that must not fail the operation they report: a
   * failure is logged (error level, with the event type and subject) instead.
   */
  async tryRecord(e: AuditEventInput): Promise<void> {
    try {
      await this.record(e);
    } catch (err) {
      this.deps.log.error('audit: event not recorded', { type: e.type, subject: e.subject, error: (err as Error)?.message ?? String(err) });
    }
  }

  /** Resolves when every event recorded so far has been written (or has failed). */
  flush(): Promise<void> {
    if (!this.running && !this.scheduled && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.drained.push(resolve));
  }

  /** Writes what is queued and takes no more; call before closing the database. */
  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
  }

  /** Oldest first, after `afterSeq`; `lastSeq` continues the listing. */
  async list(q: { limit: number; afterSeq?: number }): Promise<{ items: AuditEvent[]; lastSeq?: number; more: boolean }> {
    try {
      let query = this.knex<EventRow>('audit_events');
      if (q.afterSeq !== undefined) query = query.where('seq', '>', q.afterSeq);
      const rows: EventRow[] = await query.orderBy('seq', 'asc').limit(q.limit + 1);
      const more = rows.length > q.limit;
      const page = rows.slice(0, q.limit);
      return { items: page.map(toEvent), lastSeq: page.length ? Number(page[page.length - 1].seq) : undefined, more };
    } catch (e) {
      throw storageError(e);
    }
  }

  /** verifyAuditChain with the key lookup this log was given. */
  verify(): Promise<AuditVerifyResult> {
    return verifyAuditChain(this.deps.db, this.deps.verifyKey);
  }

  // ------------------------------------------------------------ appending

  private append(e: AuditEventInput): Promise<Appended> {
    if (this.closed) return Promise.reject(new CaError('unavailable', 'databaseUnavailable', 'the audit log is closed'));
    let p: Prepared;
    try {
      p = this.prepare(e);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<Appended>((resolve, reject) => {
      this.queue.push({ ...p, resolve, reject });
      this.schedule();
    });
  }

  /**
   * The event as it will be stored (validated, details canonical, secrets
   * redacted), for a store that appends it in the same transaction as the
   * write it reports (CertificateStore.complete).
   */
  prepare(e: AuditEventInput): Prepared {
    if (!(AUDIT_EVENT_TYPES as readonly string[]).includes(e.type)) throw new CaError('internal', 'internalError', `unknown audit event type "${String(e.type)}"`);
    const actor = Array.from(wellFormed(String(e.actor ?? '') || 'unknown')).slice(0, 255).join('');
    const subject = e.subject === undefined || e.subject === null ? null : wellFormed(String(e.subject));
    const details = canonicalJson(e.details ?? {});
    return { at: this.deps.clock.now().getTime(), type: e.type, actor, subject, details };
  }

  private schedule(): void {
    if (this.scheduled || this.running) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.drain();
    });
  }

  /** Writes the queue, one transaction per batch, until it is empty. */
  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, MAX_BATCH);
        try {
          const out = await this.appendBatch(batch);
          this.deps.log.debug('audit: appended', { events: batch.length, lastSeq: out[out.length - 1].seq });
          batch.forEach((p, i) => p.resolve(out[i]));
        } catch (e) {
          this.deps.log.error('audit: append failed', { events: batch.length, error: (e as Error)?.message ?? String(e) });
          const err = storageError(e);
          for (const p of batch) p.reject(err);
        }
      }
    } finally {
      this.running = false;
      if (this.queue.length > 0) this.schedule();
      else for (const d of this.drained.splice(0)) d();
    }
  }

  /** One transaction: take the write lock, read the head, insert the batch after it. */
  private async appendBatch(batch: Prepared[]): Promise<Appended[]> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.appendOnce(batch);
      } catch (e) {
        // A fork attempt (someone appended after the same head): read the new head and go again.
        if (isUniqueViolation(e) && attempt < MAX_FORK_RETRIES) continue;
        throw e;
      }
    }
  }

  private async appendOnce(batch: Prepared[]): Promise<Appended[]> {
    const fields = batch.map(({ at, type, actor, subject, details }) => ({ at, type, actor, subject, details }));
    // SQLite: on the writer thread, in turn with issuance writes; PostgreSQL: under the chain's advisory lock.
    const writer = this.deps.db.writer;
    if (writer) {
      const out = await writer.appendAudit(fields);
      await writer.synced();
      return out;
    }
    return this.knex.transaction((trx) => appendChainKnex(trx, fields, this.deps.db.kind === 'postgres'));
  }

  // ------------------------------------------------------------ checkpoints

  private async signCheckpoint(signer: Signer): Promise<void> {
    await this.flush();
    let head: { seq: number; hash: string } | undefined;
    let last: { seq: number; head_hash: string } | undefined;
    try {
      head = await this.knex('audit_events').orderBy('seq', 'desc').first('seq', 'hash');
      last = await this.knex('audit_checkpoints').orderBy('seq', 'desc').first('seq', 'head_hash');
    } catch (e) {
      throw storageError(e);
    }
    if (head && last && Number(last.seq) === Number(head.seq) && last.head_hash === head.hash) return;
    const { seq, hash } = await this.append({
      type: 'auditCheckpoint',
      actor: 'system',
      subject: signer.label,
      details: { previousCheckpoint: last ? { seq: Number(last.seq), headHash: last.head_hash } : null },
    });
    const payload = checkpointPayload(seq, hash);
    const signature = await signer.sign(payload);
    if (!signatureValid(signer.publicKey, payload, signature)) {
      throw new CaError('internal', 'internalError', `the audit checkpoint signature by key ${signer.label} does not verify`);
    }
    const at = this.deps.clock.now().getTime();
    try {
      await this.knex('audit_checkpoints').insert({ seq, head_hash: hash, signature, key_label: signer.label, at });
    } catch (e) {
      throw storageError(e);
    }
    // The copy kept elsewhere: with it, a rolled-back or truncated log is caught too.
    this.deps.log.info('audit checkpoint', { seq, headHash: hash, keyLabel: signer.label, signature: signature.toString('base64') });
  }
}

/** An Hsm that records 'keyGenerated' (label, algorithm, public key SHA-256; never key material) for every key it generates. */
export class KeyAuditingHsm implements Hsm {
  constructor(
    private readonly inner: Hsm,
    private readonly audit: AuditLog,
  ) {}

  get kind() {
    return this.inner.kind;
  }

  async generateKey(label: string, algorithm: KeyAlgorithm): Promise<KeyInfo> {
    const key = await this.inner.generateKey(label, algorithm);
    await this.audit.tryRecord({
      type: 'keyGenerated',
      actor: 'system',
      subject: label,
      details: { algorithm, hsm: this.inner.kind, publicKeySha256: createHash('sha256').update(key.publicKey).digest('hex') },
    });
    return key;
  }

  getKey(label: string): Promise<KeyInfo | undefined> {
    return this.inner.getKey(label);
  }

  listKeys(): Promise<KeyInfo[]> {
    return this.inner.listKeys();
  }

  signer(label: string): Promise<Signer> {
    return this.inner.signer(label);
  }

  health(): Promise<HsmHealth> {
    return this.inner.health();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

// ------------------------------------------------------------ verification

function hashOfKey(key: KeyObject): 'sha256' | 'sha384' | undefined {
  if (key.asymmetricKeyType === 'rsa') return keyAlgorithmInfo('rsa-2048').hash;
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') return keyAlgorithmInfo('ecdsa-p256').hash;
    if (curve === 'secp384r1') return keyAlgorithmInfo('ecdsa-p384').hash;
  }
  return undefined;
}

/** ECDSA (DER signature) or RSA PKCS#1 v1.5, with the hash of the key's algorithm. */
function signatureValid(spki: Buffer, data: Buffer, signature: Buffer): boolean {
  try {
    const key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
    const hash = hashOfKey(key);
    if (!hash) return false;
    return cryptoVerify(hash, data, { key, dsaEncoding: 'der' }, signature);
  } catch {
    return false;
  }
}

interface CheckpointRow {
  id: number;
  seq: number;
  head_hash: string;
  signature: Buffer;
  key_label: string;
}

const PAGE = 1000;

/**
 * Walks the chain in seq order and names the first bad record:
 *  - a gap in seq, or a prev_hash that names no stored event after renumbered
 *    rows                                                  -> 'removed'
 *  - a prev_hash naming another stored event               -> 'reordered'
 *  - a prev_hash naming the event before the previous one (the previous
 *    event was put in between)                             -> 'inserted'
 *  - a stored hash that is not the hash of the row         -> 'changed'
 *  - a prev_hash naming no stored event while the row itself hashes right
 *    (the previous event and its stored hash were rewritten)
 *                                                          -> 'changed' (the previous)
 * and checks each checkpoint: its signature with the key `verifyKey` gives
 * for its label ('badCheckpoint'; skipped when verifyKey is not given), that
 * its event exists ('removed': the log was cut after it) and that its signed
 * head is the event's hash now ('changed': the chain was recomputed after a
 * change; the first event after the previous good checkpoint is named).
 */
export async function verifyAuditChain(db: Database, verifyKey?: AuditVerifyKey): Promise<AuditVerifyResult> {
  const knex = db.knex;
  const bad = (firstBadSeq: number, problem: AuditVerifyProblem, message: string): AuditVerifyResult => ({ ok: false, firstBadSeq, problem, message });
  const keys = new Map<string, Buffer | undefined>();
  /** undefined when the signature is good (or cannot be checked: no verifyKey) */
  const signatureProblem = async (cp: CheckpointRow): Promise<string | undefined> => {
    if (!verifyKey) return undefined;
    if (!keys.has(cp.key_label)) {
      try {
        keys.set(cp.key_label, await verifyKey(cp.key_label));
      } catch (e) {
        throw new CaError('unavailable', 'hsmUnavailable', `cannot read the public key "${cp.key_label}" from the HSM: ${(e as Error)?.message ?? String(e)}`);
      }
    }
    const spki = keys.get(cp.key_label);
    if (!spki) return `checkpoint ${cp.id} (event ${cp.seq}) names key "${cp.key_label}", which the HSM does not hold`;
    if (!signatureValid(spki, checkpointPayload(Number(cp.seq), cp.head_hash), Buffer.from(cp.signature))) {
      return `checkpoint ${cp.id} (event ${cp.seq}): the signature by key "${cp.key_label}" does not verify: the checkpoint is forged or was altered`;
    }
    return undefined;
  };

  let checkpoints: CheckpointRow[];
  try {
    checkpoints = (await knex('audit_checkpoints').orderBy([{ column: 'seq' }, { column: 'id' }]).select('id', 'seq', 'head_hash', 'signature', 'key_label')).map(
      (c: CheckpointRow) => ({ ...c, id: Number(c.id), seq: Number(c.seq) }),
    );
  } catch (e) {
    throw storageError(e);
  }

  let ci = 0;
  let lastGoodCheckpoint = 0;
  let prev: EventRow | undefined;
  let events = 0;
  let after: number | undefined;
  for (;;) {
    let rows: EventRow[];
    try {
      let q = knex<EventRow>('audit_events');
      if (after !== undefined) q = q.where('seq', '>', after);
      rows = await q.orderBy('seq', 'asc').limit(PAGE);
    } catch (e) {
      throw storageError(e);
    }
    for (const raw of rows) {
      const r: EventRow = { ...raw, seq: Number(raw.seq), at: Number(raw.at), subject: raw.subject ?? null };
      events++;
      const expectedSeq = prev ? prev.seq + 1 : 1;
      if (r.seq < expectedSeq) return bad(r.seq, 'inserted', `event ${r.seq} is before the first event of the log (seq 1)`);
      if (r.seq > expectedSeq) {
        return bad(expectedSeq, 'removed', expectedSeq === r.seq - 1 ? `event ${expectedSeq} is missing` : `events ${expectedSeq} to ${r.seq - 1} are missing`);
      }
      const hashOk = eventHash(fieldsOf(r)) === r.hash;
      const expectedPrev = prev ? prev.hash : ZERO_HASH;
      if (r.prev_hash !== expectedPrev) {
        if (prev && r.prev_hash === prev.prev_hash) {
          return bad(prev.seq, 'inserted', `event ${prev.seq} was inserted: event ${r.seq} follows event ${prev.seq - 1} directly`);
        }
        let linked: { seq: number } | undefined;
        try {
          linked = await knex('audit_events').where({ hash: r.prev_hash }).first('seq');
        } catch (e) {
          throw storageError(e);
        }
        if (linked) {
          return bad(r.seq, 'reordered', `event ${r.seq} follows event ${Number(linked.seq)}, not event ${r.seq - 1}: events were reordered`);
        }
        if (hashOk && prev) {
          return bad(prev.seq, 'changed', `event ${prev.seq} was changed: event ${r.seq} was chained to a different event ${prev.seq}`);
        }
        return bad(r.seq, 'removed', `event ${r.seq} was chained to an event that is no longer in the log: events before it were removed`);
      }
      if (!hashOk) return bad(r.seq, 'changed', `event ${r.seq} was changed: its content no longer has its recorded hash`);

      while (ci < checkpoints.length && checkpoints[ci].seq <= r.seq) {
        const cp = checkpoints[ci++];
        const sigProblem = await signatureProblem(cp);
        if (sigProblem) return bad(cp.seq, 'badCheckpoint', sigProblem);
        if (cp.seq !== r.seq) return bad(cp.seq, 'badCheckpoint', `checkpoint ${cp.id} names event ${cp.seq}, which no log can have`);
        if (cp.head_hash !== r.hash) {
          const from = lastGoodCheckpoint + 1;
          return bad(
            from,
            'changed',
            `the chain no longer leads to the head signed at event ${cp.seq} (checkpoint ${cp.id}): an event in ${from}..${cp.seq} was changed and the hashes after it recomputed`,
          );
        }
        lastGoodCheckpoint = r.seq;
      }
      prev = r;
    }
    if (rows.length < PAGE) break;
    after = Number(rows[rows.length - 1].seq);
  }

  // Checkpoints past the end: a signed head that is no longer in the log.
  for (; ci < checkpoints.length; ci++) {
    const cp = checkpoints[ci];
    const sigProblem = await signatureProblem(cp);
    if (sigProblem) return bad(cp.seq, 'badCheckpoint', sigProblem);
    const first = (prev?.seq ?? 0) + 1;
    return bad(first, 'removed', `checkpoint ${cp.id} signed event ${cp.seq}, but the log ends at ${prev?.seq ?? 0}: events from ${first} on were removed`);
  }
  return { ok: true, events, checkpoints: checkpoints.length };
}
