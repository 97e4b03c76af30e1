import { Router, RequestHandler } from 'express';
import { TokenService } from '../../auth/tokens';
import { CaError } from '../../errors';
import { TokenRecord } from '../../storage/token-store';
import { principalOf } from '../auth';

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

/** Token lifecycle for admins: create (the token is shown once), list, revoke. */
export function tokenRoutes(tokens: TokenService, adminOnly: RequestHandler, json: RequestHandler): Router {
  const r = Router();
  r.post('/api/v1/tokens', adminOnly, json, async (req, res) => {
    const b = req.body;
    if (!b || typeof b !== 'object' || Array.isArray(b)) throw new CaError('badRequest', 'malformedJson', 'the body must be a JSON object');
    let expiresAt: Date | null = null;
    if (b.expiresInDays !== undefined) {
      if (typeof b.expiresInDays !== 'number' || !Number.isInteger(b.expiresInDays) || b.expiresInDays < 1) {
        throw new CaError('badRequest', 'invalidExpiry', 'expiresInDays must be a whole number of days');
      }
      expiresAt = new Date(Date.now() + b.expiresInDays * 86400_000);
    }
    const { token, record } = await tokens.create({
      role: b.role,
      name: typeof b.name === 'string' ? b.name : '',
      scope: b.scope,
      expiresAt,
      by: principalOf(req).name,
    });
    res.status(201).json({ ...tokenJson(record), token });
  });
  r.get('/api/v1/tokens', adminOnly, async (_req, res) => {
    res.json({ items: (await tokens.list()).map(tokenJson) });
  });
  r.post('/api/v1/tokens/:id/revoke', adminOnly, async (req, res) => {
    const id = String(req.params.id);
    if (id === principalOf(req).id) throw new CaError('conflict', 'cannotRevokeSelf', 'a token cannot revoke itself');
    res.json(tokenJson(await tokens.revoke(id, principalOf(req).name)));
  });
  return r;
}
