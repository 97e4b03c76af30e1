import { CaError } from '../errors';
import { Database, storageError } from '../storage/database';
import { CheckpointVersion, checkpointPayloadOf, signatureValid } from './checkpoint';
import type { AuditVerifyKey } from './verify';

/**
 * An anchor: a signed checkpoint copied out of the database (a file kept by
 * the operator, a ticket, a log shipped off the host). Whoever can write the
 * database can cut the log back to an earlier signed checkpoint, or cut it
 * and append a different tail; without the HSM key they cannot make the
 * anchor's signature, so comparing against an anchor taken before catches
 * both (docs/security.md). The signature is checked with the HSM's public
 * key, never with a key the anchor or the database carries.
 */
export interface AuditAnchor {
  format: typeof ANCHOR_FORMAT;
  /** the event whose hash was signed */
  seq: number;
  headHash: string;
  /** the signed time (ISO 8601); null for a v1 checkpoint, whose time was not signed */
  time: string | null;
  /** the checkpoint's payload version (checkpoint.ts) */
  version: CheckpointVersion;
  /** the HSM key that signed it */
  keyLabel: string;
  /** base64 */
  signature: string;
}

export const ANCHOR_FORMAT = 'hsmca-audit-anchor/v1';

const invalid = (why: string) => new CaError('badRequest', 'invalidAnchor', `not an audit anchor: ${why}`);

/** An anchor from its JSON text; CaError('badRequest', 'invalidAnchor') naming what is wrong. */
export function parseAnchor(text: string): AuditAnchor {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(text);
  } catch {
    throw invalid('it is not JSON');
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw invalid('it is not a JSON object');
  if (v.format !== ANCHOR_FORMAT) throw invalid(`"format" must be "${ANCHOR_FORMAT}"`);
  if (!Number.isSafeInteger(v.seq) || (v.seq as number) < 1) throw invalid('"seq" must be a positive whole number');
  if (typeof v.headHash !== 'string' || !/^[0-9a-f]{64}$/.test(v.headHash)) throw invalid('"headHash" must be 64 lowercase hex digits');
  if (v.version !== 1 && v.version !== 2) throw invalid('"version" must be 1 or 2');
  if (v.version === 2 && (typeof v.time !== 'string' || Number.isNaN(Date.parse(v.time)))) throw invalid('"time" must be an ISO 8601 time');
  if (v.version === 1 && v.time !== null && typeof v.time !== 'string') throw invalid('"time" must be null or a time');
  if (typeof v.keyLabel !== 'string' || !v.keyLabel) throw invalid('"keyLabel" must name the HSM key');
  if (typeof v.signature !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(v.signature)) throw invalid('"signature" must be base64');
  return {
    format: ANCHOR_FORMAT,
    seq: v.seq as number,
    headHash: v.headHash,
    time: v.version === 2 ? new Date(Date.parse(v.time as string)).toISOString() : null,
    version: v.version,
    keyLabel: v.keyLabel,
    signature: v.signature,
  };
}

/** The newest signed checkpoint of the database as an anchor (undefined when there is none). Verify the log first. */
export async function newestAnchor(db: Database): Promise<AuditAnchor | undefined> {
  let cp: { seq: number | string; head_hash: string; at: number | string; version: number | string; key_label: string; signature: Buffer } | undefined;
  try {
    cp = await db.knex('audit_checkpoints').orderBy([{ column: 'seq', order: 'desc' }, { column: 'id', order: 'desc' }]).first('seq', 'head_hash', 'at', 'version', 'key_label', 'signature');
  } catch (e) {
    throw storageError(e);
  }
  if (!cp) return undefined;
  const version = Number(cp.version) as CheckpointVersion;
  return {
    format: ANCHOR_FORMAT,
    seq: Number(cp.seq),
    headHash: cp.head_hash,
    time: version === 2 ? new Date(Number(cp.at)).toISOString() : null,
    version,
    keyLabel: cp.key_label,
    signature: Buffer.from(cp.signature).toString('base64'),
  };
}

/** What the chain walk learnt, for the comparison with an anchor. */
export interface ChainFacts {
  /** the last event's seq (0 for an empty log) */
  lastSeq: number;
  /** the hash of the event at the anchor's seq, if the log reaches it */
  hashAtAnchor?: string;
  /** the seqs of the valid signed checkpoints, ascending */
  checkpointSeqs: number[];
}

export type AnchorProblem = { problem: 'badAnchor' | 'rolledBack' | 'anchorMismatch'; firstBadSeq: number; message: string };

/**
 * Compares the verified chain with an anchor: the anchor's signature must
 * verify with the HSM's key under its label; the log must reach the anchor's
 * event and still lead to its head hash there; and the database's newest
 * signed checkpoint must not be older than the anchor (a rollback).
 */
export async function anchorProblem(anchor: AuditAnchor, facts: ChainFacts, verifyKey: AuditVerifyKey | undefined): Promise<AnchorProblem | undefined> {
  const bad = (problem: AnchorProblem['problem'], firstBadSeq: number, message: string): AnchorProblem => ({ problem, firstBadSeq, message });
  if (!verifyKey) return bad('badAnchor', anchor.seq, "the anchor's signature cannot be checked without the HSM's public keys");
  let spki: Buffer | undefined;
  try {
    spki = await verifyKey(anchor.keyLabel);
  } catch (e) {
    throw new CaError('unavailable', 'hsmUnavailable', `cannot read the public key "${anchor.keyLabel}" from the HSM: ${(e as Error)?.message ?? String(e)}`);
  }
  if (!spki) return bad('badAnchor', anchor.seq, `the anchor names key "${anchor.keyLabel}", which the HSM does not hold`);
  const payload = checkpointPayloadOf({ version: anchor.version, seq: anchor.seq, headHash: anchor.headHash, at: anchor.time ? Date.parse(anchor.time) : 0 });
  if (!payload || !signatureValid(spki, payload, Buffer.from(anchor.signature, 'base64'))) {
    return bad('badAnchor', anchor.seq, `the anchor's signature by key "${anchor.keyLabel}" does not verify: the anchor is forged or was altered`);
  }
  const before = facts.checkpointSeqs.filter((s) => s < anchor.seq);
  const from = (before.length ? before[before.length - 1] : 0) + 1;
  if (facts.lastSeq < anchor.seq) {
    return bad('rolledBack', facts.lastSeq + 1, `the anchor signed event ${anchor.seq}, but the log ends at ${facts.lastSeq}: it was cut back (events from ${facts.lastSeq + 1} on were removed)`);
  }
  if (facts.hashAtAnchor !== anchor.headHash) {
    return bad('anchorMismatch', from, `the chain no longer leads to the head the anchor signed at event ${anchor.seq}: events in ${from}..${anchor.seq} were removed or changed and the log rewritten`);
  }
  const newest = facts.checkpointSeqs.length ? facts.checkpointSeqs[facts.checkpointSeqs.length - 1] : 0;
  if (newest < anchor.seq) {
    return bad('rolledBack', newest + 1, `the newest signed checkpoint is at event ${newest}, older than the anchor's event ${anchor.seq}: signed checkpoints were removed`);
  }
  return undefined;
}
