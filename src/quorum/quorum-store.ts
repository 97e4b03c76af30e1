import type { Knex } from 'knex';
import { Database, isUniqueViolation, storageError } from '../storage/database';
import type { ApproverAlgorithm } from './approver-keys';

export interface ApproverRecord {
  id: string;
  name: string;
  algorithm: ApproverAlgorithm;
  /** DER SubjectPublicKeyInfo */
  publicKey: Buffer;
  fingerprint: string;
  createdAt: Date;
  removedAt: Date | null;
  addedBy: string | null;
}

export type RequestState = 'pending' | 'executing' | 'executed' | 'failed';

export interface QuorumRequestRecord {
  id: string;
  kind: string;
  operation: Record<string, unknown>;
  description: string;
  requestedBy: string;
  threshold: number;
  createdAt: Date;
  expiresAt: Date;
  state: RequestState;
  executedAt: Date | null;
  result: unknown;
}

export interface ApprovalRecord {
  requestId: string;
  approverId: string;
  signature: Buffer;
  approvedAt: Date;
}

const num = (v: unknown) => (v === null || v === undefined ? null : Number(v));

function approverOf(r: Record<string, unknown>): ApproverRecord {
  return {
    id: String(r.id),
    name: String(r.name),
    algorithm: r.algorithm as ApproverAlgorithm,
    publicKey: Buffer.from(String(r.public_key), 'base64'),
    fingerprint: String(r.fingerprint),
    createdAt: new Date(Number(r.created_at)),
    removedAt: r.removed_at === null || r.removed_at === undefined ? null : new Date(Number(r.removed_at)),
    addedBy: (r.added_by as string | null) ?? null,
  };
}

function requestOf(r: Record<string, unknown>): QuorumRequestRecord {
  return {
    id: String(r.id),
    kind: String(r.kind),
    operation: JSON.parse(String(r.operation)),
    description: String(r.description),
    requestedBy: String(r.requested_by),
    threshold: Number(r.threshold),
    createdAt: new Date(Number(r.created_at)),
    expiresAt: new Date(Number(r.expires_at)),
    state: r.state as RequestState,
    executedAt: num(r.executed_at) === null ? null : new Date(Number(r.executed_at)),
    result: r.result === null || r.result === undefined ? null : JSON.parse(String(r.result)),
  };
}

/** The quorum tables (migration 012), read and written in one place. */
export class QuorumStore {
  private readonly knex: Knex;
  constructor(db: Database) {
    this.knex = db.knex;
  }

  private async run<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw storageError(e);
    }
  }

  /** Active approvers (removed ones stay in the table for the record, and are not counted). */
  listApprovers(includeRemoved = false): Promise<ApproverRecord[]> {
    return this.run(async () => {
      const q = this.knex('quorum_approvers').orderBy('created_at', 'asc');
      if (!includeRemoved) q.whereNull('removed_at');
      return (await q).map(approverOf);
    });
  }

  /** false when an active approver has the name or the key already. */
  addApprover(a: ApproverRecord): Promise<boolean> {
    return this.run(() =>
      this.knex.transaction(async (trx) => {
        const clash = await trx('quorum_approvers')
          .whereNull('removed_at')
          .andWhere((w) => w.where({ name: a.name }).orWhere({ fingerprint: a.fingerprint }))
          .first();
        if (clash) return false;
        await trx('quorum_approvers').insert({
          id: a.id,
          name: a.name,
          algorithm: a.algorithm,
          public_key: a.publicKey.toString('base64'),
          fingerprint: a.fingerprint,
          created_at: a.createdAt.getTime(),
          removed_at: null,
          added_by: a.addedBy,
        });
        return true;
      }),
    );
  }

  /** Marks the active approver named `name` (or with id `name`) removed; its record, or undefined. */
  removeApprover(name: string, at: Date): Promise<ApproverRecord | undefined> {
    return this.run(async () => {
      const row = await this.knex('quorum_approvers').whereNull('removed_at').andWhere((w) => w.where({ name }).orWhere({ id: name })).first();
      if (!row) return undefined;
      await this.knex('quorum_approvers').where({ id: row.id }).whereNull('removed_at').update({ removed_at: at.getTime() });
      return { ...approverOf(row), removedAt: at };
    });
  }

  getSetting(name: string): Promise<string | undefined> {
    return this.run(async () => (await this.knex('quorum_settings').where({ name }).first())?.value);
  }

  setSetting(name: string, value: string, at: Date): Promise<void> {
    return this.run(async () => {
      await this.knex('quorum_settings').insert({ name, value, updated_at: at.getTime() }).onConflict('name').merge();
    });
  }

  addRequest(r: QuorumRequestRecord): Promise<void> {
    return this.run(async () => {
      await this.knex('quorum_requests').insert({
        id: r.id,
        kind: r.kind,
        operation: JSON.stringify(r.operation),
        description: r.description,
        requested_by: r.requestedBy,
        threshold: r.threshold,
        created_at: r.createdAt.getTime(),
        expires_at: r.expiresAt.getTime(),
        state: r.state,
        executed_at: null,
        result: null,
      });
    });
  }

  getRequest(id: string): Promise<QuorumRequestRecord | undefined> {
    return this.run(async () => {
      const row = await this.knex('quorum_requests').where({ id }).first();
      return row && requestOf(row);
    });
  }

  listRequests(q: { state?: RequestState; limit: number }): Promise<QuorumRequestRecord[]> {
    return this.run(async () => {
      const query = this.knex('quorum_requests').orderBy('created_at', 'desc').limit(q.limit);
      if (q.state) query.where({ state: q.state });
      return (await query).map(requestOf);
    });
  }

  /** false when this approver has approved the request already (counted once). */
  addApproval(a: ApprovalRecord): Promise<boolean> {
    return this.run(async () => {
      try {
        await this.knex('quorum_approvals').insert({ request_id: a.requestId, approver_id: a.approverId, signature: a.signature.toString('base64'), approved_at: a.approvedAt.getTime() });
        return true;
      } catch (e) {
        if (isUniqueViolation(e)) return false;
        throw e;
      }
    });
  }

  /** The approvals of a request by approvers still registered. */
  approvals(requestId: string): Promise<(ApprovalRecord & { approverName: string })[]> {
    return this.run(async () => {
      const rows = await this.knex('quorum_approvals as a')
        .join('quorum_approvers as p', 'p.id', 'a.approver_id')
        .where('a.request_id', requestId)
        .whereNull('p.removed_at')
        .orderBy('a.approved_at', 'asc')
        .select('a.request_id', 'a.approver_id', 'a.signature', 'a.approved_at', 'p.name');
      return rows.map((r: Record<string, unknown>) => ({
        requestId: String(r.request_id),
        approverId: String(r.approver_id),
        signature: Buffer.from(String(r.signature), 'base64'),
        approvedAt: new Date(Number(r.approved_at)),
        approverName: String(r.name),
      }));
    });
  }

  /** Moves a pending request to executing; false when another process got there first (one execution only). */
  claim(id: string): Promise<boolean> {
    return this.run(async () => (await this.knex('quorum_requests').where({ id, state: 'pending' }).update({ state: 'executing' })) === 1);
  }

  finish(id: string, state: 'executed' | 'failed', at: Date, result: unknown): Promise<void> {
    return this.run(async () => {
      await this.knex('quorum_requests').where({ id }).update({ state, executed_at: at.getTime(), result: JSON.stringify(result ?? null) });
    });
  }
}
