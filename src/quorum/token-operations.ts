import type { TokenService } from '../auth/tokens';
import type { Clock } from '../clock';
import { CaError } from '../errors';
import type { Role, TokenRecord } from '../storage/token-store';
import type { QuorumGate, QuorumRequestView } from './gate';

/**
 * Admin tokens are created and revoked under quorum (requester tokens are
 * not: they cannot administer anything). A token made under quorum is shown
 * to its requester at once and works from the moment the M-th approval
 * stores its record; the request holds the token's SHA-256 only.
 */
export function registerTokenExecutors(gate: QuorumGate, tokens: TokenService, clock: Clock): void {
  gate.register('token.create', async (op, ctx) => {
    const record: TokenRecord = {
      id: String(op.tokenId),
      name: String(op.name),
      role: op.role as Role,
      hash: String(op.tokenHash),
      scope: op.scope ?? null,
      createdAt: clock.now(),
      expiresAt: op.expiresAt ? new Date(String(op.expiresAt)) : null,
      revokedAt: null,
    };
    await tokens.add(record, ctx.requestedBy);
    return { record: { tokenId: record.id, name: record.name, role: record.role } };
  });
  gate.register('token.revoke', async (op, ctx) => {
    const rec = await tokens.revoke(String(op.tokenId), ctx.requestedBy);
    return { record: { tokenId: rec.id, name: rec.name, role: rec.role } };
  });
}

export interface TokenCreated {
  token: string;
  record: TokenRecord;
  /** set when the token waits for approvals (not usable until then) */
  request?: QuorumRequestView;
}

export async function createTokenUnderQuorum(
  gate: QuorumGate,
  tokens: TokenService,
  opts: { role: unknown; name: string; expiresAt?: Date | null; scope?: unknown; by: string },
): Promise<TokenCreated> {
  if (opts.role !== 'admin') return tokens.create(opts);
  const { token, record } = tokens.prepare(opts);
  const operation = {
    tokenId: record.id,
    name: record.name,
    role: record.role,
    scope: record.scope ?? null,
    expiresAt: record.expiresAt ? record.expiresAt.toISOString() : null,
    tokenHash: record.hash,
  };
  const outcome = await gate.requireQuorum('token.create', operation, opts.by, async () => {
    await tokens.add(record, opts.by);
    return { record: { tokenId: record.id } };
  });
  return outcome.status === 'pending' ? { token, record, request: outcome.request } : { token, record };
}

export async function revokeTokenUnderQuorum(gate: QuorumGate, tokens: TokenService, id: string, by: string): Promise<{ record: TokenRecord; request?: QuorumRequestView }> {
  const rec = await tokens.get(id);
  if (!rec) throw new CaError('notFound', 'tokenNotFound', `no token with id ${id.slice(0, 40)}`);
  if (rec.role !== 'admin') return { record: await tokens.revoke(id, by) };
  if (rec.revokedAt) throw new CaError('conflict', 'alreadyRevoked', `token ${id} is already revoked`);
  let revoked: TokenRecord | undefined;
  const outcome = await gate.requireQuorum('token.revoke', { tokenId: rec.id, name: rec.name, role: rec.role }, by, async () => {
    revoked = await tokens.revoke(id, by);
    return { record: { tokenId: id } };
  });
  return outcome.status === 'pending' ? { record: rec, request: outcome.request } : { record: revoked! };
}
