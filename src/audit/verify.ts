import { CaError } from '../errors';
import { Database, storageError } from '../storage/database';
import { AuditEventFields, EventRow, ZERO_HASH, eventHash } from './chain';
import { AuditAnchor, anchorProblem } from './anchor';
import { checkpointPayloadOf, signatureValid } from './checkpoint';

/**
 * Verification of the audit chain and its checkpoints (audit-log.ts describes
 * what it proves and what it does not).
 */

export type AuditVerifyProblem =
  | 'changed'
  | 'removed'
  | 'reordered'
  | 'inserted'
  | 'badCheckpoint'
  /** an auditCheckpoint event of the chain has no signed checkpoint row */
  | 'missingCheckpoint'
  /** the anchor given is forged or altered (or cannot be checked) */
  | 'badAnchor'
  /** the log, or its newest signed checkpoint, ends before the anchor's event */
  | 'rolledBack'
  /** the chain at the anchor's event no longer has the anchor's head hash */
  | 'anchorMismatch';

/** The newest signed checkpoint: how far the log is protected by an HSM signature. */
export interface NewestCheckpoint {
  seq: number;
  headHash: string;
  keyLabel: string;
  /** the signed time (ISO 8601); null for a v1 checkpoint, whose time was not signed */
  signedAt: string | null;
}

export type AuditVerifyResult =
  | { ok: true; events: number; checkpoints: number; newestCheckpoint: NewestCheckpoint | null; anchor?: { seq: number; headHash: string } }
  | { ok: false; firstBadSeq: number; problem: AuditVerifyProblem; message: string };

/** Returns the DER SubjectPublicKeyInfo of the key under a label, or undefined. */
export type AuditVerifyKey = (keyLabel: string) => Promise<Buffer | undefined>;

function fieldsOf(r: EventRow): AuditEventFields {
  return { seq: Number(r.seq), at: Number(r.at), type: r.type, actor: r.actor, subject: r.subject ?? null, details: r.details, prevHash: r.prev_hash };
}

interface CheckpointRow {
  id: number;
  seq: number;
  head_hash: string;
  signature: Buffer;
  key_label: string;
  at: number;
  version: number;
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
 * change; the first event after the previous good checkpoint is named); and
 * that every 'auditCheckpoint' event has a signed row ('missingCheckpoint':
 * rows were deleted, perhaps to rewrite the events they covered). v1 rows
 * verify over (seq, head), v2 rows over (seq, head, time).
 *
 * With an anchor (anchor.ts), the verified chain is then compared with it.
 */
export async function verifyAuditChain(db: Database, verifyKey?: AuditVerifyKey, opts: { anchor?: AuditAnchor } = {}): Promise<AuditVerifyResult> {
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
    const payload = checkpointPayloadOf({ version: cp.version, seq: cp.seq, headHash: cp.head_hash, at: cp.at });
    if (!payload) return `checkpoint ${cp.id} (event ${cp.seq}) has payload version ${cp.version}, which this version of hsmca does not know`;
    if (!signatureValid(spki, payload, Buffer.from(cp.signature))) {
      return `checkpoint ${cp.id} (event ${cp.seq}): the signature by key "${cp.key_label}" does not verify: the checkpoint is forged or was altered`;
    }
    return undefined;
  };

  let checkpoints: CheckpointRow[];
  try {
    checkpoints = (await knex('audit_checkpoints').orderBy([{ column: 'seq' }, { column: 'id' }]).select('id', 'seq', 'head_hash', 'signature', 'key_label', 'at', 'version')).map(
      (c: CheckpointRow) => ({ ...c, id: Number(c.id), seq: Number(c.seq), at: Number(c.at), version: Number(c.version) }),
    );
  } catch (e) {
    throw storageError(e);
  }

  let ci = 0;
  let lastGoodCheckpoint = 0;
  let prev: EventRow | undefined;
  let events = 0;
  let after: number | undefined;
  let hashAtAnchor: string | undefined;
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

      let signed = false;
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
        signed = true;
      }
      if (r.type === 'auditCheckpoint' && !signed) {
        return bad(
          r.seq,
          'missingCheckpoint',
          `event ${r.seq} is a checkpoint, but no signed checkpoint of it exists: its row was deleted (the events after checkpoint ${lastGoodCheckpoint || 'none'} may have been rewritten), or its signing was interrupted and no checkpoint has run since`,
        );
      }
      if (r.seq === opts.anchor?.seq) hashAtAnchor = r.hash;
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
  const newest = checkpoints[checkpoints.length - 1];
  const newestCheckpoint: NewestCheckpoint | null = newest
    ? { seq: newest.seq, headHash: newest.head_hash, keyLabel: newest.key_label, signedAt: newest.version >= 2 ? new Date(newest.at).toISOString() : null }
    : null;
  const anchor = opts.anchor;
  if (anchor) {
    const p = await anchorProblem(anchor, { lastSeq: prev?.seq ?? 0, hashAtAnchor, checkpointSeqs: checkpoints.map((c) => c.seq) }, verifyKey);
    if (p) return { ok: false, ...p };
    return { ok: true, events, checkpoints: checkpoints.length, newestCheckpoint, anchor: { seq: anchor.seq, headHash: anchor.headHash } };
  }
  return { ok: true, events, checkpoints: checkpoints.length, newestCheckpoint };
}
