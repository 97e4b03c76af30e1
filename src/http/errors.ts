import type { ServerResponse } from 'node:http';
import type { ErrorRequestHandler, RequestHandler } from 'express';
import { CaError, STATUS_OF } from '../errors';
import { Logger } from '../log';

/** A JSON answer, written as Express's res.json writes it (also on a bare node:http response). */
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

/** Unknown paths answer the contract's JSON, never an HTML page. */
export const notFoundHandler: RequestHandler = (req, res) => {
  sendError(res, new CaError('notFound', 'notFound', `no route for ${req.method} ${req.path.slice(0, 200)}`));
};

/**
 * The one place where kinds become status codes (STYLE.md practice 9).
 * Body-parser errors carry a `type`; anything unexpected is logged here and
 * answered as a bare 500 without details.
 */
export function errorHandler(log: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (err instanceof CaError) return sendError(res, err);
    const type = (err as { type?: string })?.type;
    if (type === 'entity.too.large') return sendError(res, new CaError('tooLarge', 'bodyTooLarge', 'the request body is too large'));
    if (type === 'entity.parse.failed') return sendError(res, new CaError('badRequest', 'malformedJson', 'the request body is not valid JSON'));
    if (type === 'encoding.unsupported' || type === 'charset.unsupported') {
      return sendError(res, new CaError('badRequest', 'unsupportedEncoding', 'the request body must be UTF-8 JSON'));
    }
    if (type === 'request.aborted') return res.destroy();
    const status = (err as { status?: number })?.status;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      return sendError(res, new CaError('badRequest', 'badRequest', 'the request could not be read'));
    }
    sendError(res, unexpectedError(log, req.method, req.path, err));
  };
}

/** An error nobody expected: logged with its stack, answered as a bare 500 that says nothing of it. */
export function unexpectedError(log: Logger, method: string, path: string, e: unknown): CaError {
  log.error('unexpected error', { method, path, error: (e as Error)?.stack ?? String(e) });
  return new CaError('internal', 'internalError', 'an internal error occurred; it has been logged');
}
