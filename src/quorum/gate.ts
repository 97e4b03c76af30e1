import { randomBytes } from 'node:crypto';
import type { AuditLog } from '../audit/audit-log';
import type { Clock } from '../clock';
import { CaError } from '../errors';
import { approvalMessage, parseApproverPublicKey, verifyApproval } from './approver-keys';
import { ApproverRecord, QuorumRequestRecord, QuorumStore } from './quorum-store';

/** What an executed operation gives back: `record` is stored and audited; `reveal` is shown once to the caller that ran it (a backup's shares). */
export interface ExecutionResult {
  record?: Record<string, unknown>;
  reveal?: Record<string, unknown>;
}

export type Executor = (operation: Record<string, unknown>, ctx: { requestedBy: string; approvedBy: string[] }) => Promise<ExecutionResult>;

export interface QuorumRequestView {
  id: string;
  kind: string;
  operation: Record<string, unknown>;
  /** the canonical description approvers sign (with the id: see approvalMessage) */
  description: string;
  /** the exact bytes an approver signs, base64 (for signing offline with openssl) */
  signingInput: string;
  requestedBy: string;
  threshold: number;
  approvals: { approver: string; approvedAt: string }[];
  state: 'pending' | 'executing' | 'executed' | 'failed' | 'expired';
  createdAt: string;
  expiresAt: string;
  executedAt: string | null;
  result: unknown;
}

export type GateOutcome = { status: 'executed'; result: ExecutionResult } | { status: 'pending'; request: QuorumRequestView };

export interface ApproveOutcome {
  request: QuorumRequestView;
  /** set when this approval was the M-th and the operation ran in this process */
  executed?: ExecutionResult;
}

/** Sorted keys, no whitespace: the same operation always reads the same, byte for byte. */
export function stableJson(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (Array.isArray(v)) return '[' + v.map(stableJson).join(',') + ']';
  if (typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return '{' + Object.keys(o).sort().filter((k) => o[k] !== undefined).map((k) => JSON.stringify(k) + ':' + stableJson(o[k])).join(',') + '}';
  }
  return JSON.stringify(v);
}

const THRESHOLD_SETTING = 'threshold';

/**
 * M-of-N quorum, as CloudHSM's quorum authentication: a gated operation with
 * M > 1 becomes a pending request with a canonical description; registered
 * approvers sign it with their own keys, and the M-th valid approval runs it
 * in whichever process receives it (executors are registered by kind in every
 * process). With M <= 1 the operation runs at once, as before quorum existed.
 */
export class QuorumGate {
  private readonly executors = new Map<string, Executor>();

  constructor(
    private readonly deps: {
      store: QuorumStore;
      audit: AuditLog;
      clock: Clock;
      /** HSMCA_QUORUM: the least M; the stored setting may raise it */
      configuredThreshold: number;
      requestTtlSeconds: number;
    },
  ) {
    this.register('approver.add', (op, ctx) => this.doAddApprover(op, ctx.requestedBy));
    this.register('approver.remove', (op, ctx) => this.doRemoveApprover(String(op.name), ctx.requestedBy));
    this.register('quorum.threshold', (op, ctx) => this.doSetThreshold(Number(op.threshold), ctx.requestedBy));
  }

  get store(): QuorumStore {
    return this.deps.store;
  }

  register(kind: string, executor: Executor): void {
    this.executors.set(kind, executor);
  }

  /** M: HSMCA_QUORUM, or the stored setting when that is higher. */
  async threshold(): Promise<number> {
    const stored = Number((await this.deps.store.getSetting(THRESHOLD_SETTING)) ?? '1');
    return Math.max(this.deps.configuredThreshold, Number.isInteger(stored) && stored > 0 ? stored : 1);
  }

  /**
   * Runs `execute` (or the executor registered for `kind`) at once when M <= 1;
   * otherwise stores a pending request for approvers to sign.
   */
  async requireQuorum(kind: string, operation: Record<string, unknown>, requestedBy: string, execute?: () => Promise<ExecutionResult>): Promise<GateOutcome> {
    const executor = this.executors.get(kind);
    if (!executor) throw new CaError('internal', 'quorumKindUnknown', `no executor for quorum operations of kind ${kind}`);
    const m = await this.threshold();
    if (m <= 1) return { status: 'executed', result: await (execute ? execute() : executor(operation, { requestedBy, approvedBy: [] })) };
    const now = this.deps.clock.now();
    const id = randomBytes(12).toString('hex');
    const createdAt = new Date(Math.floor(now.getTime() / 1000) * 1000);
    const expiresAt = new Date(createdAt.getTime() + this.deps.requestTtlSeconds * 1000);
    const description = stableJson({ id, kind, operation, requestedBy, threshold: m, createdAt: createdAt.toISOString(), expiresAt: expiresAt.toISOString() });
    const rec: QuorumRequestRecord = { id, kind, operation, description, requestedBy, threshold: m, createdAt, expiresAt, state: 'pending', executedAt: null, result: null };
    await this.deps.store.addRequest(rec);
    await this.deps.audit.record({ type: 'quorumRequested', actor: requestedBy, subject: id, details: { kind, operation, threshold: m, expiresAt } });
    return { status: 'pending', request: await this.view(rec) };
  }

  async get(id: string): Promise<QuorumRequestView> {
    return this.view(await this.load(id));
  }

  async list(q: { state?: string; limit?: number } = {}): Promise<QuorumRequestView[]> {
    const states = ['pending', 'executing', 'executed', 'failed', 'expired'];
    if (q.state !== undefined && !states.includes(q.state)) throw new CaError('badRequest', 'invalidState', `state must be one of ${states.join(', ')}`);
    const now = this.deps.clock.now();
    const rows = await this.deps.store.listRequests({ state: q.state === 'expired' ? 'pending' : (q.state as 'pending' | undefined), limit: Math.min(q.limit ?? 100, 500) });
    const views = await Promise.all(rows.map((r) => this.view(r)));
    if (q.state === 'expired') return views.filter((v) => v.state === 'expired');
    if (q.state === 'pending') return views.filter((v) => new Date(v.expiresAt) > now);
    return views;
  }

  private async load(id: string): Promise<QuorumRequestRecord> {
    if (!/^[0-9a-f]{24}$/.test(id)) throw new CaError('notFound', 'quorumRequestNotFound', `no quorum request with id ${id.slice(0, 40)}`);
    const rec = await this.deps.store.getRequest(id);
    if (!rec) throw new CaError('notFound', 'quorumRequestNotFound', `no quorum request with id ${id}`);
    return rec;
  }

  private async view(r: QuorumRequestRecord): Promise<QuorumRequestView> {
    const approvals = await this.deps.store.approvals(r.id);
    const expired = r.state === 'pending' && r.expiresAt <= this.deps.clock.now();
    return {
      id: r.id,
      kind: r.kind,
      operation: r.operation,
      description: r.description,
      signingInput: approvalMessage(r.id, r.description).toString('base64'),
      requestedBy: r.requestedBy,
      threshold: r.threshold,
      approvals: approvals.map((a) => ({ approver: a.approverName, approvedAt: a.approvedAt.toISOString() })),
      state: expired ? 'expired' : r.state,
      createdAt: r.createdAt.toISOString(),
      expiresAt: r.expiresAt.toISOString(),
      executedAt: r.executedAt ? r.executedAt.toISOString() : null,
      result: r.result,
    };
  }

  private async refuse(id: string, by: string, reason: string, err: CaError): Promise<never> {
    await this.deps.audit.tryRecord({ type: 'quorumRefused', actor: by, subject: id, details: { reason, code: err.code } });
    throw err;
  }

  /**
   * One approval: `signature` over approvalMessage(id, description) by a
   * registered approver (the one named, or whichever key verifies). The M-th
   * distinct approver's approval runs the operation here.
   */
  async approve(id: string, signature: Buffer, opts: { approver?: string; by: string }): Promise<ApproveOutcome> {
    const rec = await this.load(id);
    const now = this.deps.clock.now();
    if (rec.state !== 'pending') {
      return this.refuse(id, opts.by, 'notPending', new CaError('conflict', 'quorumRequestClosed', `quorum request ${id} is ${rec.state}, not pending`));
    }
    if (rec.expiresAt <= now) {
      return this.refuse(id, opts.by, 'expired', new CaError('conflict', 'quorumRequestExpired', `quorum request ${id} expired at ${rec.expiresAt.toISOString()}`));
    }
    const candidates = (await this.deps.store.listApprovers()).filter((a) => !opts.approver || a.name === opts.approver);
    const message = approvalMessage(rec.id, rec.description);
    const signer = candidates.find((a) => verifyApproval({ algorithm: a.algorithm, spki: a.publicKey }, message, signature));
    if (!signer) {
      return this.refuse(
        id,
        opts.by,
        'badSignature',
        new CaError('forbidden', 'approvalRefused', `the signature is not a registered approver's${opts.approver ? ` (${opts.approver.slice(0, 60)})` : ''} over quorum request ${id}`),
      );
    }
    const added = await this.deps.store.addApproval({ requestId: id, approverId: signer.id, signature, approvedAt: now });
    const approvals = await this.deps.store.approvals(id);
    const needed = Math.max(rec.threshold, await this.threshold());
    if (added) {
      await this.deps.audit.record({ type: 'quorumApproved', actor: opts.by, subject: id, details: { approver: signer.name, fingerprint: signer.fingerprint, approvals: approvals.length, threshold: needed } });
    } else if (approvals.length < needed) {
      return this.refuse(id, opts.by, 'duplicate', new CaError('conflict', 'alreadyApproved', `approver ${signer.name} has already approved quorum request ${id}; it counts once`));
    }
    if (approvals.length < needed) return { request: await this.view(rec) };
    const executed = await this.execute(rec, approvals.map((a) => a.approverName));
    return { request: await this.view((await this.deps.store.getRequest(id))!), executed };
  }

  private async execute(rec: QuorumRequestRecord, approvedBy: string[]): Promise<ExecutionResult | undefined> {
    const executor = this.executors.get(rec.kind);
    if (!executor) throw new CaError('unavailable', 'quorumExecutorUnavailable', `this process cannot run ${rec.kind}; approve again from hsmca serve or the hsmca command`);
    if (!(await this.deps.store.claim(rec.id))) return undefined;
    let result: ExecutionResult;
    try {
      result = await executor(rec.operation, { requestedBy: rec.requestedBy, approvedBy });
    } catch (e) {
      const message = e instanceof CaError ? e.message : 'the operation failed';
      await this.deps.store.finish(rec.id, 'failed', this.deps.clock.now(), { error: message });
      await this.deps.audit.tryRecord({ type: 'quorumExecuted', actor: 'quorum', subject: rec.id, details: { kind: rec.kind, approvedBy, outcome: 'failed', error: message } });
      throw e;
    }
    await this.deps.store.finish(rec.id, 'executed', this.deps.clock.now(), result.record ?? null);
    await this.deps.audit.record({ type: 'quorumExecuted', actor: 'quorum', subject: rec.id, details: { kind: rec.kind, approvedBy, outcome: 'executed', result: result.record ?? null } });
    return result;
  }

  // --- the quorum's own settings: approvers and M ---

  listApprovers(): Promise<ApproverRecord[]> {
    return this.deps.store.listApprovers();
  }

  /**
   * Registers an approver's public key. While fewer approvers than M are
   * registered (the first ceremony), it runs at once; from then on it is
   * itself a quorum operation.
   */
  async addApprover(name: string, publicKeyText: Buffer | string, by: string): Promise<GateOutcome> {
    const n = (name ?? '').trim();
    if (!n || n.length > 128 || /[\x00-\x1f]/.test(n)) throw new CaError('badRequest', 'invalidName', 'an approver name is 1 to 128 printable characters');
    const key = parseApproverPublicKey(publicKeyText);
    const operation = { name: n, algorithm: key.algorithm, publicKey: key.spki.toString('base64'), fingerprint: key.fingerprint };
    await this.checkNewApprover(operation);
    const active = (await this.deps.store.listApprovers()).length;
    if (active < (await this.threshold())) return { status: 'executed', result: await this.doAddApprover(operation, by) };
    return this.requireQuorum('approver.add', operation, by);
  }

  private async checkNewApprover(op: { name: string; fingerprint: string }): Promise<void> {
    for (const a of await this.deps.store.listApprovers()) {
      if (a.name === op.name) throw new CaError('conflict', 'approverExists', `an approver named ${op.name} is registered already`);
      if (a.fingerprint === op.fingerprint) throw new CaError('conflict', 'approverExists', `this key is registered already (approver ${a.name})`);
    }
  }

  private async doAddApprover(op: Record<string, unknown>, by: string): Promise<ExecutionResult> {
    const name = String(op.name);
    const key = parseApproverPublicKey(Buffer.from(String(op.publicKey), 'base64'));
    await this.checkNewApprover({ name, fingerprint: key.fingerprint });
    const rec: ApproverRecord = { id: randomBytes(8).toString('hex'), name, algorithm: key.algorithm, publicKey: key.spki, fingerprint: key.fingerprint, createdAt: this.deps.clock.now(), removedAt: null, addedBy: by };
    if (!(await this.deps.store.addApprover(rec))) throw new CaError('conflict', 'approverExists', `an approver named ${name} or with this key is registered already`);
    await this.deps.audit.record({ type: 'quorumApproverAdded', actor: by, subject: rec.id, details: { name, algorithm: rec.algorithm, fingerprint: rec.fingerprint } });
    return { record: { approverId: rec.id, name, algorithm: rec.algorithm, fingerprint: rec.fingerprint } };
  }

  /** Removes an approver, under quorum; never below M approvers (that would lock every gated operation). */
  async removeApprover(name: string, by: string): Promise<GateOutcome> {
    await this.checkRemovable(name);
    return this.requireQuorum('approver.remove', { name }, by);
  }

  private async checkRemovable(name: string): Promise<void> {
    const active = await this.deps.store.listApprovers();
    if (!active.some((a) => a.name === name || a.id === name)) throw new CaError('notFound', 'approverNotFound', `no registered approver named ${name.slice(0, 60)}`);
    const m = await this.threshold();
    if (m > 1 && active.length - 1 < m) throw new CaError('conflict', 'quorumWouldLock', `removing ${name} would leave ${active.length - 1} approvers for a quorum of ${m}`);
  }

  private async doRemoveApprover(name: string, by: string): Promise<ExecutionResult> {
    await this.checkRemovable(name);
    const rec = await this.deps.store.removeApprover(name, this.deps.clock.now());
    if (!rec) throw new CaError('notFound', 'approverNotFound', `no registered approver named ${name}`);
    await this.deps.audit.record({ type: 'quorumApproverRemoved', actor: by, subject: rec.id, details: { name: rec.name, fingerprint: rec.fingerprint } });
    return { record: { approverId: rec.id, name: rec.name } };
  }

  /** Changes the stored M, under the current quorum. */
  async setThreshold(m: number, by: string): Promise<GateOutcome> {
    await this.checkThreshold(m);
    return this.requireQuorum('quorum.threshold', { threshold: m }, by);
  }

  private async checkThreshold(m: number): Promise<void> {
    if (!Number.isInteger(m) || m < 1 || m > 100) throw new CaError('badRequest', 'invalidThreshold', 'the quorum is a whole number from 1 to 100');
    const active = (await this.deps.store.listApprovers()).length;
    if (m > 1 && m > active) throw new CaError('conflict', 'quorumWouldLock', `a quorum of ${m} needs at least ${m} registered approvers (${active} are)`);
  }

  private async doSetThreshold(m: number, by: string): Promise<ExecutionResult> {
    await this.checkThreshold(m);
    await this.deps.store.setSetting(THRESHOLD_SETTING, String(m), this.deps.clock.now());
    const effective = await this.threshold();
    return { record: { threshold: m, effective, by } };
  }
}
