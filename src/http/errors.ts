import type { ServerResponse } from 'node:http';
import { CaError, STATUS_OF } from '../errors';
import { Logger } from '../log';
import { databaseUnavailable, isDatabaseUnreachable } from '../storage/database';

/** A JSON answer: UTF-8 with its length, the content type the API has always sent. */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = Buffer.from(JSON.stringify(body), 'utf8');
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', text.length);
  res.end(text);
}

/** The contract's error body, with the status of the error's kind. */
export function sendError(res: ServerResponse, e: CaError): void {
  if (e.headers) for (const [k, v] of Object.entries(e.headers)) res.setHeader(k, v);
  sendJson(res, STATUS_OF[e.kind], { error: { code: e.code, message: e.message } });
}

/** An error nobody expected: logged with its stack, answered as a bare 500 that says nothing of it. */
export function unexpectedError(log: Logger, method: string, path: string, e: unknown): CaError {
  // the database down or restarting: 503 databaseUnavailable with Retry-After, not a 500; it recovers by itself
  if (isDatabaseUnreachable(e)) {
    log.warn('database unavailable', { method, path, error: (e as Error)?.message ?? String(e) });
    return databaseUnavailable();
  }
  log.error('unexpected error', { method, path, error: (e as Error)?.stack ?? String(e) });
  return new CaError('internal', 'internalError', 'an internal error occurred; it has been logged');
}
