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
