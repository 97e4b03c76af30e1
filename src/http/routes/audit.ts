import { AuditLog } from '../../audit/audit-log';
import type { ParsedUrlQuery } from 'node:querystring';
import { AUDIT_EVENT_TYPES, AuditEvent } from '../../audit/events';
import { CaError } from '../../errors';
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

function parseOrder(q: unknown): boolean {
  if (q === undefined || q === '' || q === 'asc') return false;
  if (q === 'desc') return true;
  throw new CaError('badRequest', 'invalidOrder', 'order must be "asc" (oldest first, the default) or "desc"');
}

/** A time filter: ISO 8601 with a time zone, or epoch milliseconds. */
function parseTime(name: string, q: unknown): number | undefined {
  if (q === undefined || q === '') return undefined;
  const t = typeof q === 'string' && q.length <= 40 ? (/^\d{1,15}$/.test(q) ? Number(q) : /^\d{4}-\d{2}-\d{2}T[\d:.]+(Z|[+-]\d{2}:\d{2})$/.test(q) ? Date.parse(q) : NaN) : NaN;
  if (!Number.isFinite(t)) throw new CaError('badRequest', 'invalidTime', `${name} must be an ISO 8601 time with a zone (2026-12-04T18:00:00Z) or epoch milliseconds`);
  return t;
}

/** The listing's filters: exact event type and actor, and a time range [since, until). */
function auditFilters(query: ParsedUrlQuery): { type?: string; actor?: string; since?: number; until?: number } {
  const one = (name: string): string | undefined => {
    const v = query[name];
    if (v === undefined || v === '') return undefined;
    if (typeof v !== 'string' || v.length > 255) throw new CaError('badRequest', 'invalidFilter', `${name} must be given once, at most 255 characters`);
    return v;
  };
  const type = one('type');
  if (type !== undefined && !(AUDIT_EVENT_TYPES as readonly string[]).includes(type)) {
    throw new CaError('badRequest', 'invalidFilter', `type must be one of: ${AUDIT_EVENT_TYPES.join(', ')}`);
  }
  return { type, actor: one('actor'), since: parseTime('since', query.since), until: parseTime('until', query.until) };
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
        const newestFirst = parseOrder(query.order);
        // a cursor of one order is refused by the other (tags a1, a2)
        const tag = newestFirst ? 'a2' : 'a1';
        const at = decodeCursor(tag, query.cursor);
        const page = await audit.list({ limit, ...(newestFirst ? { beforeSeq: at, newestFirst } : { afterSeq: at }), ...auditFilters(query) });
        sendJson(res, 200, { items: page.items.map(auditEventJson), nextCursor: page.more && page.lastSeq !== undefined ? encodeCursor(tag, page.lastSeq) : null });
      },
    },
    { method: 'GET', path: '/api/v1/audit/verify', access: ADMIN, handle: async ({ res }) => sendJson(res, 200, await audit.verify()) },
  ];
}
