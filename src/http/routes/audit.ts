import { Router } from 'express';
import type { RequestHandler } from 'express';
import { AuditLog } from '../../audit/audit-log';
import { AuditEvent } from '../../audit/events';
import { decodeCursor, encodeCursor, parseLimit } from '../cursor';

const MAX_LIMIT = 500;

/** The API form of an audit event. */
export function auditEventJson(e: AuditEvent) {
  return {
    seq: e.seq,
    at: e.at.toISOString(),
    type: e.type,
    actor: e.actor,
    subject: e.subject,
    details: e.details,
    hash: e.hash,
    prevHash: e.prevHash,
  };
}

/**
 * GET /api/v1/audit: the audit log, oldest first (the order of the chain,
 * so a page can be checked link by link and a reader can continue where it
 * stopped). GET /api/v1/audit/verify: the chain and its signed checkpoints
 * checked end to end. Both for admins only.
 */
export function auditRoutes(audit: AuditLog, adminOnly: RequestHandler): Router {
  const r = Router();

  r.get('/api/v1/audit', adminOnly, async (req, res) => {
    const limit = parseLimit(req.query.limit, MAX_LIMIT);
    const page = await audit.list({ limit, afterSeq: decodeCursor('a1', req.query.cursor) });
    res.json({ items: page.items.map(auditEventJson), nextCursor: page.more && page.lastSeq !== undefined ? encodeCursor('a1', page.lastSeq) : null });
  });

  r.get('/api/v1/audit/verify', adminOnly, async (_req, res) => {
    res.json(await audit.verify());
  });

  return r;
}
