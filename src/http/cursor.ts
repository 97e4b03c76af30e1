import { CaError } from '../errors';

/**
 * Opaque pagination cursors: a tag naming the listing, and the position to
 * continue after. A cursor of one listing is refused by another.
 */
export function encodeCursor(tag: string, position: number): string {
  return Buffer.from(`${tag}:${position}`).toString('base64url');
}

/** The position in a cursor; undefined for none; 400 invalidCursor for anything this API did not hand out. */
export function decodeCursor(tag: string, c: unknown): number | undefined {
  if (c === undefined || c === '') return undefined;
  const m = typeof c === 'string' ? Buffer.from(c, 'base64url').toString('latin1').match(/^([a-z0-9]+):(\d{1,15})$/) : null;
  if (!m || m[1] !== tag) throw new CaError('badRequest', 'invalidCursor', 'cursor is not one this API returned');
  return Number(m[2]);
}

/** The `limit` of a listing: 1 to `max`, 50 when absent; 400 invalidLimit otherwise. */
export function parseLimit(q: unknown, max: number, def = 50): number {
  if (q === undefined) return def;
  const l = String(q);
  if (!/^\d{1,4}$/.test(l) || Number(l) < 1 || Number(l) > max) throw new CaError('badRequest', 'invalidLimit', `limit must be 1 to ${max}`);
  return Number(l);
}
