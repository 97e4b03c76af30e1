import type { Knex } from 'knex';
import { Clock } from '../clock';
import { CaError } from '../errors';
import type { Signer } from '../hsm/hsm';
import { Logger } from '../log';
import { Database, isUniqueViolation, storageError } from '../storage/database';
import { Appended, EventRow, PreparedEvent, appendChainKnex } from './chain';
import { canonicalJson, wellFormed } from './canonical-json';
import { checkpointPayloadV2, signatureValid } from './checkpoint';
import { AUDIT_EVENT_TYPES, AuditEvent, AuditEventInput, AuditEventType } from './events';
import type { AuditAnchor } from './anchor';
import { AuditVerifyKey, AuditVerifyResult, verifyAuditChain } from './verify';

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
 * signs (seq, hash, time) of that event with an HSM key (payload v2,
 * `checkpointPayloadV2`; rows from before v2 signed (seq, hash) and still
 * verify as v1). An attacker with write access to the database can edit an
 * event and recompute every later hash, and the chain then verifies on its
 * own; what it cannot do is produce the HSM's signature over the new head.
 * So verify compares every checkpoint's signed head with the chain as it is
 * now, and requires a signed row for every 'auditCheckpoint' event (deleting
 * the rows to rewrite what they covered is caught: 'missingCheckpoint').
 *
 * What verifyAuditChain proves (given the key lookup, so that signatures are
 * checked against the HSM's public keys, never keys stored in the database):
 * every event up to the newest surviving signed checkpoint is exactly as
 * written, in order, with nothing removed or inserted. Without recomputation,
 * a change anywhere is pinpointed to the exact event; with recomputation, the
 * checkpoint catches it and the report names the first event after the
 * previous good checkpoint (the change lies between the two checkpoints: the
 * hashes that would locate it more precisely were rewritten too).
 *
 * What it does not prove on its own: events after the newest signed
 * checkpoint are only protected by the unkeyed chain, and someone who can
 * write the database can cut the log back to any signed checkpoint (deleting
 * the later events and rows together) and append a different tail. Both are
 * caught against an anchor, a signed checkpoint copied out of the database
 * (anchor.ts; `hsmca audit checkpoint --export`); each checkpoint is also
 * logged (seq, head hash, time, signature) at info level, so a log shipped
 * off the host holds anchors too. verify reports the newest signed
 * checkpoint (seq and signed time) so that its age can be watched.
 */

// ------------------------------------------------------------ the log

type Prepared = PreparedEvent & { type: AuditEventType };

interface Pending extends Prepared {
  resolve(a: Appended): void;
  reject(e: unknown): void;
}

const MAX_BATCH = 500;
const MAX_FORK_RETRIES = 5;

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
  /** set while checkpoint() prepares its own event */
  private signing = false;

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

  /**
   * Oldest first, after `afterSeq` (newest first, before `beforeSeq`, with
   * `newestFirst`); `lastSeq` continues the listing. Filters: exact type and
   * actor, `at` within [since, until) (epoch ms).
   */
  async list(q: { limit: number; afterSeq?: number; beforeSeq?: number; newestFirst?: boolean; type?: string; actor?: string; since?: number; until?: number }): Promise<{ items: AuditEvent[]; lastSeq?: number; more: boolean }> {
    try {
      let query = this.knex<EventRow>('audit_events');
      if (q.afterSeq !== undefined) query = query.where('seq', '>', q.afterSeq);
      if (q.beforeSeq !== undefined) query = query.where('seq', '<', q.beforeSeq);
      if (q.type !== undefined) query = query.where('type', q.type);
      if (q.actor !== undefined) query = query.where('actor', q.actor);
      if (q.since !== undefined) query = query.where('at', '>=', q.since);
      if (q.until !== undefined) query = query.where('at', '<', q.until);
      const rows: EventRow[] = await query.orderBy('seq', q.newestFirst ? 'desc' : 'asc').limit(q.limit + 1);
      const more = rows.length > q.limit;
      const page = rows.slice(0, q.limit);
      return { items: page.map(toEvent), lastSeq: page.length ? Number(page[page.length - 1].seq) : undefined, more };
    } catch (e) {
      throw storageError(e);
    }
  }

  /** verifyAuditChain with the key lookup this log was given (and an anchor kept outside the database, if any). */
  verify(opts: { anchor?: AuditAnchor } = {}): Promise<AuditVerifyResult> {
    return verifyAuditChain(this.deps.db, this.deps.verifyKey, opts);
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
    // Only checkpoint() writes these: verify requires a signed row for each.
    if (e.type === 'auditCheckpoint' && !this.signing) throw new CaError('internal', 'internalError', 'auditCheckpoint events are written by checkpoint() only');
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
    await this.completeInterrupted(signer);
    let head: { seq: number; hash: string } | undefined;
    let last: { seq: number; head_hash: string } | undefined;
    try {
      head = await this.knex('audit_events').orderBy('seq', 'desc').first('seq', 'hash');
      last = await this.knex('audit_checkpoints').orderBy('seq', 'desc').first('seq', 'head_hash');
    } catch (e) {
      throw storageError(e);
    }
    if (head && last && Number(last.seq) === Number(head.seq) && last.head_hash === head.hash) return;
    let appended: Promise<Appended>;
    this.signing = true;
    try {
      appended = this.append({
        type: 'auditCheckpoint',
        actor: 'system',
        subject: signer.label,
        details: { previousCheckpoint: last ? { seq: Number(last.seq), headHash: last.head_hash } : null },
      });
    } finally {
      this.signing = false;
    }
    const { seq, hash } = await appended;
    await this.storeCheckpoint(signer, seq, hash);
  }

  /**
   * An 'auditCheckpoint' event after the newest signed row has no row of its
   * own when the process stopped (or the HSM failed) between appending it and
   * storing its signature; verify would report it as missing. Its head is
   * signed now. This gives nobody more than they had: whoever can write the
   * database can already cut the log back to the newest signed row and
   * append anything, which the next checkpoint then signs (docs/security.md).
   */
  private async completeInterrupted(signer: Signer): Promise<void> {
    let pending: { seq: number; hash: string }[];
    try {
      const last = await this.knex('audit_checkpoints').max<{ m: number | string | null }[]>({ m: 'seq' });
      pending = await this.knex('audit_events')
        .where({ type: 'auditCheckpoint' })
        .andWhere('seq', '>', Number(last[0]?.m ?? 0))
        .orderBy('seq', 'asc')
        .select('seq', 'hash');
    } catch (e) {
      throw storageError(e);
    }
    for (const p of pending) {
      this.deps.log.warn('audit: signing a checkpoint that was interrupted', { seq: Number(p.seq) });
      await this.storeCheckpoint(signer, Number(p.seq), p.hash);
    }
  }

  /** Signs (seq, head hash, time) with the HSM key (payload v2), checks the signature, stores the row and logs it. */
  private async storeCheckpoint(signer: Signer, seq: number, hash: string): Promise<void> {
    const at = this.deps.clock.now().getTime();
    const payload = checkpointPayloadV2(seq, hash, at);
    const signature = await signer.sign(payload);
    if (!signatureValid(signer.publicKey, payload, signature)) {
      throw new CaError('internal', 'internalError', `the audit checkpoint signature by key ${signer.label} does not verify`);
    }
    try {
      await this.knex('audit_checkpoints').insert({ seq, head_hash: hash, signature, key_label: signer.label, at, version: 2 });
    } catch (e) {
      // Another process completed this checkpoint first (completeInterrupted): its row signs the same head.
      if (isUniqueViolation(e)) return;
      throw storageError(e);
    }
    // A copy kept elsewhere (an anchor): with it, a rolled-back or truncated log is caught too.
    this.deps.log.info('audit checkpoint', { seq, headHash: hash, time: new Date(at).toISOString(), keyLabel: signer.label, signature: signature.toString('base64') });
  }
}
