import type { IncomingMessage, ServerResponse } from 'node:http';
import { TokenService } from '../../auth/tokens';
import { IssuanceService } from '../../ca/issuance';
import { CaError } from '../../errors';
import { Logger } from '../../log';
import { Metrics } from '../../metrics';
import { SECURITY_HEADERS } from '../headers';
import { AuthHooks } from '../auth';
import { BODY_ABORTED, BODY_TOO_LARGE, readBody } from '../body';
import { sendError, sendJson, unexpectedError } from '../errors';
import { IssuanceRateLimit } from '../rate-limit';

export interface IssueHandlerDeps {
  issuance: IssuanceService;
  tokens: TokenService;
  limit: IssuanceRateLimit;
  metrics: Metrics;
  log: Logger;
  maxBodyBytes: number;
  hooks?: AuthHooks;
}

const ROUTE = '/api/v1/certificates';
const NOT_JSON = new CaError('badRequest', 'malformedJson', 'the request body is not valid JSON');

/**
 * POST /api/v1/certificates on the bare node:http request, as OCSP is: the
 * busiest write path of the service pays for no router and no body-parser.
 * It does what the Express route does, in the same order and with the same
 * answers (tested side by side): security headers and no-store, token
 * authentication (a failure reported to the auth hooks), the issuance rate
 * limits (the same buckets), the body read under HSMCA_MAX_BODY_BYTES and
 * parsed as strict JSON, issuance, 201 with the contract's JSON.
 *
 * Requests it does not take are left to Express (returns false): other
 * methods and paths, and bodies that Express's parser would first decode
 * (a Content-Encoding, or a charset other than UTF-8).
 */
export function issueHttpHandler(d: IssueHandlerDeps): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    if (req.method !== 'POST') return false;
    const url = req.url ?? '';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    if (path !== ROUTE && path !== ROUTE + '/') return false;
    const encoding = req.headers['content-encoding'];
    if (encoding !== undefined && encoding.trim().toLowerCase() !== 'identity') return false;
    const type = req.headers['content-type'];
    if (type !== undefined && /charset/i.test(type) && !/;\s*charset\s*=\s*"?utf-8"?\s*(;|$)/i.test(type)) return false;
    void serve(d, req, res, path);
    return true;
  };
}

async function serve(d: IssueHandlerDeps, req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
  const t0 = process.hrtime.bigint();
  for (const [k, v] of SECURITY_HEADERS) res.setHeader(k, v);
  res.setHeader('Cache-Control', 'no-store');
  res.on('finish', () => {
    d.metrics.httpRequests.inc({ method: 'POST', route: ROUTE, status: String(res.statusCode) });
    d.metrics.httpDuration.observe(Number(process.hrtime.bigint() - t0) / 1e9, { route: ROUTE });
  });
  try {
    const ip = req.socket.remoteAddress;
    let principal;
    try {
      principal = await d.tokens.authenticate(req.headers.authorization);
    } catch (e) {
      if (e instanceof CaError && e.kind === 'unauthorized') d.hooks?.failed?.({ error: e, ip, path });
      throw e;
    }
    d.limit.take(ip, principal.id);
    let raw: Buffer;
    try {
      raw = await readBody(req, d.maxBodyBytes);
    } catch (e) {
      throw e === BODY_TOO_LARGE ? new CaError('tooLarge', 'bodyTooLarge', 'the request body is too large') : e;
    }
    const body = parseJson(raw);
    const out = await d.issuance.issue(body, { tokenId: principal.id, name: principal.name, role: principal.role, scope: principal.scope });
    sendJson(res, 201, out);
  } catch (e) {
    if (e === BODY_ABORTED || res.headersSent) {
      res.destroy();
      return;
    }
    sendError(res, e instanceof CaError ? e : unexpectedError(d.log, 'POST', path, e));
  }
}

const FIRST_CHAR = /^[\x20\x09\x0a\x0d]*([^\x20\x09\x0a\x0d])/;

/** Strict JSON as Express's parser reads it: UTF-8 (a BOM dropped), an object or array at the top, an empty body as {}. */
function parseJson(raw: Buffer): unknown {
  let text = raw.toString('utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (text.length === 0) return {};
  const first = FIRST_CHAR.exec(text)?.[1];
  if (first !== '{' && first !== '[') throw NOT_JSON;
  try {
    return JSON.parse(text);
  } catch {
    throw NOT_JSON;
  }
}
