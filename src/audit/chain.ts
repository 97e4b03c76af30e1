import { createHash } from 'node:crypto';
import type { Knex } from 'knex';

/**
 * The audit chain's encoding and its append, on their own so that the
 * storage layer can append an event in the same transaction as the write it
 * reports (a certificate and its 'certificateIssued' event commit together).
 * audit-log.ts describes the chain and what verification proves.
 */

export const EVENT_TAG = 'hsmca-audit-event/v1';
export const ZERO_HASH = '0'.repeat(64);

/** pg_advisory_xact_lock key of the audit chain: the first 8 bytes of SHA-256("hsmca.audit_events"), signed. */
export const PG_AUDIT_LOCK = '-7686973169200318172';

/** The columns of one stored event, as the hash sees them. */
export interface AuditEventFields {
  seq: number;
  at: number;
  type: string;
  actor: string;
  subject: string | null;
  /** the stored canonical JSON text */
  details: string;
  prevHash: string;
}

/** An event ready to be appended: validated, details already canonical JSON. */
export type PreparedEvent = Omit<AuditEventFields, 'seq' | 'prevHash'>;

export interface Appended {
  seq: number;
  hash: string;
}

/** A row of audit_events. */
export type EventRow = Omit<AuditEventFields, 'prevHash'> & { prev_hash: string; hash: string };

export function encInt(n: number): Buffer {
  if (!Number.isSafeInteger(n)) throw new Error(`audit: ${n} is not a safe integer`);
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(BigInt(n));
  return b;
}

export function encStr(s: string): Buffer {
  const bytes = Buffer.from(s, 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(bytes.length);
  return Buffer.concat([len, bytes]);
}

/** SHA-256 (hex) over tag, seq, at, type, actor, subject (presence byte), details, prev_hash; each length-prefixed. */
export function eventHash(e: AuditEventFields): string {
  const h = createHash('sha256');
  h.update(encStr(EVENT_TAG));
  h.update(encInt(e.seq));
  h.update(encInt(e.at));
  h.update(encStr(e.type));
  h.update(encStr(e.actor));
  if (e.subject === null) h.update(Buffer.from([0]));
  else {
    h.update(Buffer.from([1]));
    h.update(encStr(e.subject));
  }
  h.update(encStr(e.details));
  h.update(encStr(e.prevHash));
  return h.digest('hex');
}

/** Gives the rows their seq and hashes, continuing the chain from `head`. */
export function chainRows(head: { seq: number; hash: string } | undefined, batch: PreparedEvent[]): { rows: EventRow[]; out: Appended[] } {
  let seq = head ? Number(head.seq) : 0;
  let prev = head ? head.hash : ZERO_HASH;
  const rows: EventRow[] = [];
  const out: Appended[] = [];
  for (const p of batch) {
    seq += 1;
    const hash = eventHash({ seq, at: p.at, type: p.type, actor: p.actor, subject: p.subject, details: p.details, prevHash: prev });
    rows.push({ seq, at: p.at, type: p.type, actor: p.actor, subject: p.subject, details: p.details, prev_hash: prev, hash });
    out.push({ seq, hash });
    prev = hash;
  }
  return { rows, out };
}

/**
 * Appends `batch` inside the caller's transaction. On PostgreSQL the
 * transaction first takes the chain's advisory lock (released by its COMMIT
 * or ROLLBACK), so the head read here is still the head when it commits.
 * (SQLite appends go through SqliteWriter, with chainRows.)
 */
export async function appendChainKnex(trx: Knex.Transaction, batch: PreparedEvent[], postgres: boolean): Promise<Appended[]> {
  if (batch.length === 0) return [];
  if (postgres) await trx.raw(`SELECT pg_advisory_xact_lock((${PG_AUDIT_LOCK})::bigint)`);
  const head = await trx('audit_events').orderBy('seq', 'desc').first<{ seq: number; hash: string } | undefined>('seq', 'hash');
  const { rows, out } = chainRows(head, batch);
  for (let i = 0; i < rows.length; i += 500) await trx('audit_events').insert(rows.slice(i, i + 500));
  return out;
}
