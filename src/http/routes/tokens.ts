import { TokenService } from '../../auth/tokens';
import type { QuorumGate } from '../../quorum/gate';
import { createTokenUnderQuorum, revokeTokenUnderQuorum } from '../../quorum/token-operations';
import { CaError } from '../../errors';
import { TokenRecord } from '../../storage/token-store';
import { sendJson } from '../errors';
import { ADMIN, Route, principalOf } from '../route';

export function tokenJson(t: TokenRecord) {
  return {
    id: t.id,
    name: t.name,
    role: t.role,
    scope: t.scope ?? null,
    createdAt: t.createdAt.toISOString(),
    expiresAt: t.expiresAt ? t.expiresAt.toISOString() : null,
    revokedAt: t.revokedAt ? t.revokedAt.toISOString() : null,
  };
}

/**
 * Token lifecycle for admins: create (the token is shown once), list, revoke.
 * Admin tokens are created and revoked under quorum when M > 1: 202 with the
 * pending request (a new token is shown at once and works once approved).
 */
export function tokenRoutes(tokens: TokenService, quorum: QuorumGate): Route[] {
  return [
    {
      method: 'POST',
      path: '/api/v1/tokens',
      access: ADMIN,
      body: 'json',
      async handle(ctx) {
        const b = ctx.body as Record<string, unknown> | undefined;
        if (!b || typeof b !== 'object' || Array.isArray(b)) throw new CaError('badRequest', 'malformedJson', 'the body must be a JSON object');
        let expiresAt: Date | null = null;
        if (b.expiresInDays !== undefined) {
          if (typeof b.expiresInDays !== 'number' || !Number.isInteger(b.expiresInDays) || b.expiresInDays < 1) {
            throw new CaError('badRequest', 'invalidExpiry', 'expiresInDays must be a whole number of days');
          }
          expiresAt = new Date(Date.now() + b.expiresInDays * 86400_000);
        }
        const { token, record, request } = await createTokenUnderQuorum(quorum, tokens, {
          role: b.role,
          name: typeof b.name === 'string' ? b.name : '',
          scope: b.scope,
          expiresAt,
          by: principalOf(ctx).name,
        });
        if (request) sendJson(ctx.res, 202, { ...tokenJson(record), token, quorumRequest: request });
        else sendJson(ctx.res, 201, { ...tokenJson(record), token });
      },
    },
    { method: 'GET', path: '/api/v1/tokens', access: ADMIN, handle: async ({ res }) => sendJson(res, 200, { items: (await tokens.list()).map(tokenJson) }) },
    {
      method: 'POST',
      path: '/api/v1/tokens/:id/revoke',
      access: ADMIN,
      async handle(ctx) {
        const id = ctx.params.id;
        if (id === principalOf(ctx).id) throw new CaError('conflict', 'cannotRevokeSelf', 'a token cannot revoke itself');
        const { record, request } = await revokeTokenUnderQuorum(quorum, tokens, id, principalOf(ctx).name);
        if (request) sendJson(ctx.res, 202, { ...tokenJson(record), quorumRequest: request });
        else sendJson(ctx.res, 200, tokenJson(record));
      },
    },
  ];
}
