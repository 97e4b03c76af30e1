import { randomBytes } from 'node:crypto';
import type { AuditLog } from '../../audit/audit-log';
import type { Clock } from '../../clock';
import { CaError } from '../../errors';
import { AcmeAdminStore } from '../../storage/acme-admin-store';
import { AcmeStore } from '../../storage/acme-store';
import type { TokenStore } from '../../storage/token-store';
import { parseLimit } from '../cursor';
import { sendJson } from '../errors';
import { ADMIN, Route, principalOf } from '../route';

export interface AcmeAdminRoutesDeps {
  admin: AcmeAdminStore;
  acme: AcmeStore;
  tokens: TokenStore;
  audit: AuditLog;
  clock: Clock;
}

/** Account cursors: created_at and id of the last account of a page. */
function encodeAccountCursor(at: number, id: string): string {
  return Buffer.from(`ac1:${at}:${id}`).toString('base64url');
}
function decodeAccountCursor(c: unknown): { at: number; id: string } | undefined {
  if (c === undefined || c === '') return undefined;
  const m = typeof c === 'string' ? Buffer.from(c, 'base64url').toString('latin1').match(/^ac1:(\d{1,15}):([A-Za-z0-9_-]{1,64})$/) : null;
  if (!m) throw new CaError('badRequest', 'invalidCursor', 'cursor is not one this API returned');
  return { at: Number(m[1]), id: m[2] };
}

/**
 * ACME for admins, over the same API as everything else (the console and
 * scripts): list accounts; create, list and withdraw External Account Binding
 * keys (`hsmca acme eab create` does the same from the host).
 */
export function acmeAdminRoutes(d: AcmeAdminRoutesDeps): Route[] {
  return [
    {
      method: 'GET',
      path: '/api/v1/acme/accounts',
      access: ADMIN,
      async handle({ res, query }) {
        const page = await d.admin.listAccounts({ limit: parseLimit(query.limit, 500), before: decodeAccountCursor(query.cursor) });
        const last = page.items[page.items.length - 1];
        sendJson(res, 200, {
          items: page.items.map((a) => ({ ...a, createdAt: a.createdAt.toISOString() })),
          nextCursor: page.more && last ? encodeAccountCursor(last.createdAt.getTime(), last.id) : null,
        });
      },
    },
    {
      method: 'GET',
      path: '/api/v1/acme/eab-keys',
      access: ADMIN,
      async handle({ res, query }) {
        const items = await d.admin.listEabKeys(parseLimit(query.limit, 1000, 500));
        sendJson(res, 200, { items: items.map((k) => ({ ...k, createdAt: k.createdAt.toISOString() })) });
      },
    },
    {
      method: 'POST',
      path: '/api/v1/acme/eab-keys',
      access: ADMIN,
      body: 'json',
      async handle(ctx) {
        const b = ctx.body as Record<string, unknown> | undefined;
        if (!b || typeof b !== 'object' || Array.isArray(b)) throw new CaError('badRequest', 'malformedJson', 'the body must be a JSON object');
        if (typeof b.token !== 'string' || !b.token || b.token.length > 128) throw new CaError('badRequest', 'invalidTokenName', 'token must name a requester token (its id or its name)');
        const now = d.clock.now();
        const live = (await d.tokens.list()).filter((t) => !t.revokedAt && (!t.expiresAt || t.expiresAt > now));
        const byId = live.filter((t) => t.id === b.token);
        const matches = byId.length ? byId : live.filter((t) => t.name === b.token);
        if (matches.length === 0) throw new CaError('notFound', 'tokenNotFound', `no live token named or with id "${b.token}"`);
        if (matches.length > 1) throw new CaError('conflict', 'ambiguousToken', `several live tokens are named "${b.token}"; give its id`);
        const token = matches[0];
        if (token.role !== 'requester') throw new CaError('badRequest', 'notRequester', 'External Account Binding binds ACME accounts to a requester token, not an admin token');
        const kid = randomBytes(16).toString('base64url');
        const hmacKey = randomBytes(32).toString('base64url');
        await d.acme.addEabKey({ kid, hmacKey, tokenId: token.id, createdAt: now, accountId: null });
        await d.audit.tryRecord({ type: 'acmeEabKeyCreated', actor: `admin:${principalOf(ctx).name}`, subject: kid, details: { tokenId: token.id, tokenName: token.name } });
        sendJson(ctx.res, 201, { kid, hmacKey, tokenId: token.id, tokenName: token.name, createdAt: now.toISOString() });
      },
    },
    {
      method: 'POST',
      path: '/api/v1/acme/eab-keys/:kid/revoke',
      access: ADMIN,
      async handle(ctx) {
        const kid = ctx.params.kid;
        const outcome = await d.admin.deleteUnusedEabKey(kid);
        if (outcome === 'notFound') throw new CaError('notFound', 'eabKeyNotFound', `no External Account Binding key ${kid.slice(0, 64)}`);
        if (outcome === 'bound') throw new CaError('conflict', 'eabKeyUsed', 'this key already bound an ACME account; it can no longer be used, and the account acts as its token (revoke the token to stop it)');
        await d.audit.tryRecord({ type: 'acmeEabKeyRevoked', actor: `admin:${principalOf(ctx).name}`, subject: kid });
        sendJson(ctx.res, 200, { kid, revoked: true });
      },
    },
  ];
}
