import type { Knex } from 'knex';
import { Clock } from '../clock';
import { CaError } from '../errors';
import type { Signer } from '../hsm/hsm';
import { Logger } from '../log';
import { Database, isUniqueViolation, storageError } from '../storage/database';
import { Appended, EventRow, PreparedEvent, appendChainKnex } from './chain';
import { canonicalJson, wellFormed } from './canonical-json';
import { checkpointPayload, signatureValid } from './checkpoint';
import { AUDIT_EVENT_TYPES, AuditEvent, AuditEventInput, AuditEventType } from './events';
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
