import { BlockedKeyService } from '../../ca/goodkey/blocked-keys';
import { BlockedKeyRecord } from '../../storage/blocked-key-store';
import { decodeCursor, encodeCursor, parseLimit } from '../cursor';
import { sendJson } from '../errors';
import { ADMIN, Route, principalOf } from '../route';

/** The API form of a blocked key. */
export function blockedKeyJson(b: BlockedKeyRecord) {
  return {
    spkiSha256: b.spkiSha256,
    addedAt: b.addedAt.toISOString(),
    source: b.source,
    serialNumber: b.serial,
    addedBy: b.addedBy,
    comment: b.comment,
  };
}

const MAX_LIMIT = 500;

/**
 * Blocked keys, for admins: add one (201; 200 with the entry already there
 * when the key was blocked before, so a retry is harmless) and list them,
 * newest first, with the certificate listing's cursors.
 */
export function blockedKeyRoutes(blockedKeys: BlockedKeyService): Route[] {
  return [
    {
      method: 'POST',
      path: '/api/v1/blocked-keys',
      access: ADMIN,
      body: 'json',
      async handle(ctx) {
        const p = principalOf(ctx);
        const { record, created } = await blockedKeys.add(ctx.body as never, `${p.role}:${p.name}`);
        sendJson(ctx.res, created ? 201 : 200, blockedKeyJson(record));
      },
    },
    {
      method: 'GET',
      path: '/api/v1/blocked-keys',
      access: ADMIN,
      async handle(ctx) {
        const limit = parseLimit(ctx.query.limit, MAX_LIMIT);
        const page = await blockedKeys.list({ limit, afterId: decodeCursor('k1', ctx.query.cursor) });
        sendJson(ctx.res, 200, { items: page.items.map(blockedKeyJson), nextCursor: page.more && page.lastId !== undefined ? encodeCursor('k1', page.lastId) : null });
      },
    },
  ];
}
