import { AuditLog } from '../../audit/audit-log';
import { AuditEvent } from '../../audit/events';
import { decodeCursor, encodeCursor, parseLimit } from '../cursor';
import { sendJson } from '../errors';
import { ADMIN, Route } from '../route';

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
export function auditRoutes(audit: AuditLog): Route[] {
  return [
    {
      method: 'GET',
      path: '/api/v1/audit',
      access: ADMIN,
      async handle({ res, query }) {
        const limit = parseLimit(query.limit, MAX_LIMIT);
        const page = await audit.list({ limit, afterSeq: decodeCursor('a1', query.cursor) });
        sendJson(res, 200, { items: page.items.map(auditEventJson), nextCursor: page.more && page.lastSeq !== undefined ? encodeCursor('a1', page.lastSeq) : null });
      },
    },
    { method: 'GET', path: '/api/v1/audit/verify', access: ADMIN, handle: async ({ res }) => sendJson(res, 200, await audit.verify()) },
  ];
}
