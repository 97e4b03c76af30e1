import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { parse as parseQuery } from 'node:querystring';
import type { AuthenticatedToken } from '../auth/tokens';
import { CaError } from '../errors';
import { Logger } from '../log';
import { Metrics } from '../metrics';
import { BODY_ABORTED } from './body';
import { sendError, unexpectedError } from './errors';
import { SECURITY_HEADERS } from './headers';
import { readJsonBody } from './json-body';
import { Access, Route, RouteContext } from './route';
import { isLoopbackHost } from '../tls/tls-settings';

/** A failed authentication, for metrics and the audit log (never the presented token). */
export interface AuthHooks {
  /** before a token is looked up: throws CaError (429) to refuse the client's address */
  admit?(ip: string | undefined): void;
  failed?(e: { error: CaError; ip: string | undefined; path: string }): void;
}

export interface RouterDeps {
  /** checks a bearer token (the Authorization header as sent); throws CaError('unauthorized') */
  authenticate(authorization: string | undefined): Promise<AuthenticatedToken>;
  hooks?: AuthHooks;
  metrics: Metrics;
  log: Logger;
  /** HSMCA_MAX_BODY_BYTES: the largest JSON body */
  maxBodyBytes: number;
}

interface CompiledRoute {
  route: Route;
  pattern: RegExp;
  names: string[];
}

/** A route's path as a case-insensitive pattern with an optional trailing slash (Express's default matching, which the API had before). */
function compile(route: Route): CompiledRoute {
  const names: string[] = [];
  let source = '';
  let rest = route.path;
  const wildcard = rest.endsWith('*');
  if (wildcard) rest = rest.slice(0, -1);
  for (const part of rest.split(/(:[A-Za-z_]\w*)/)) {
    if (part.startsWith(':')) {
      names.push(part.slice(1));
      source += '([^/]+)';
    } else {
      source += part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    }
  }
  const pattern = wildcard ? new RegExp(`^${source}`, 'i') : new RegExp(`^${source.replace(/\/$/, '')}/?$`, 'i');
  return { route, pattern, names };
}

/** The client's address may fetch loopback-only routes. */
export function isLoopback(addr: string | undefined): boolean {
  return !!addr && isLoopbackHost(addr);
}

const isAborted = (e: unknown) => e === BODY_ABORTED || (e as { type?: string })?.type === 'request.aborted';

/**
 * The one request listener of the service: it serves a route table (see
 * route.ts) on the bare node:http request, for every route and every
 * listener. A request goes through the same stages whatever the route:
 *
 *   match (method and path; HEAD is answered by the GET route)
 *   → security headers, no-store under /api, metrics
 *   → authentication and role (429 for an address with too many failures,
 *     401, 403; failures reported to the hooks)
 *   → admission (rate limits)
 *   → the JSON body, read only now, under its limit
 *   → the handler
 *   → any error as the contract's JSON (CaError's kind gives the status; an
 *     unexpected error is logged and answered as a bare 500).
 *
 * Unknown paths and methods get 404 with the contract's JSON, never a page.
 */
export function createRouter(routes: readonly Route[], deps: RouterDeps): RequestListener {
  const exact = new Map<string, Route>();
  const patterns: CompiledRoute[] = [];
  for (const r of routes) {
    if (!r.path.includes(':') && !r.path.endsWith('*')) {
      const key = `${r.method} ${r.path.toLowerCase().replace(/(.)\/$/, '$1')}`;
      if (exact.has(key)) throw new Error(`route declared twice: ${key}`);
      exact.set(key, r);
    } else {
      patterns.push(compile(r));
    }
  }

  const match = (method: string, path: string): { route: Route; params: Record<string, string> } | undefined => {
    const m = method === 'HEAD' ? 'GET' : method;
    const key = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
    const hit = exact.get(`${m} ${key.toLowerCase()}`);
    if (hit) return { route: hit, params: {} };
    for (const c of patterns) {
      if (c.route.method !== m) continue;
      const found = c.pattern.exec(path);
      if (!found) continue;
      const params: Record<string, string> = {};
      c.names.forEach((n, i) => (params[n] = decodeURIComponent(found[i + 1])));
      return { route: c.route, params };
    }
    return undefined;
  };

  const authorize = async (access: Access, req: IncomingMessage, path: string): Promise<AuthenticatedToken | undefined> => {
    if (access === 'public') return undefined;
    if (access === 'localhost') {
      if (!isLoopback(req.socket.remoteAddress)) throw new CaError('forbidden', 'forbidden', 'metrics are served to the local host only');
      return undefined;
    }
    deps.hooks?.admit?.(req.socket.remoteAddress);
    let principal: AuthenticatedToken;
    try {
      principal = await deps.authenticate(req.headers.authorization);
    } catch (e) {
      if (e instanceof CaError && e.kind === 'unauthorized') deps.hooks?.failed?.({ error: e, ip: req.socket.remoteAddress, path });
      throw e;
    }
    if (!access.roles.includes(principal.role)) {
      throw new CaError('forbidden', 'forbidden', `this needs the ${access.roles.join(' or ')} role; the token has ${principal.role}`);
    }
    return principal;
  };

  const fail = (req: IncomingMessage, res: ServerResponse, path: string, e: unknown) => {
    if (res.headersSent || isAborted(e)) {
      res.destroy();
      return;
    }
    sendError(res, e instanceof CaError ? e : unexpectedError(deps.log, req.method ?? '', path, e));
  };

  const meter = (req: IncomingMessage, res: ServerResponse, route: string) => {
    const t0 = process.hrtime.bigint();
    res.on('finish', () => {
      deps.metrics.httpRequests.inc({ method: req.method ?? '', route, status: String(res.statusCode) });
      deps.metrics.httpDuration.observe(Number(process.hrtime.bigint() - t0) / 1e9, { route });
    });
  };

  const serve = async (req: IncomingMessage, res: ServerResponse, route: Route, params: Record<string, string>, path: string, query: string): Promise<void> => {
    try {
      const principal = await authorize(route.access, req, path);
      const ip = req.socket.remoteAddress;
      route.admit?.(ip, principal);
      const body = route.body === 'json' ? await readJsonBody(req, res, deps.maxBodyBytes) : undefined;
      const ctx: RouteContext = { req, res, params, query: query ? parseQuery(query) : {}, ip, principal, body };
      await route.handle(ctx);
    } catch (e) {
      fail(req, res, path, e);
    }
  };

  return (req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    let found: { route: Route; params: Record<string, string> } | undefined;
    try {
      found = match(req.method ?? '', path);
    } catch {
      // a parameter that is not valid percent-encoding
      for (const [k, v] of SECURITY_HEADERS) res.setHeader(k, v);
      meter(req, res, path.split('/').slice(0, 3).join('/'));
      return sendError(res, new CaError('badRequest', 'badRequest', 'the request could not be read'));
    }
    if (!found || !found.route.ownHeaders) {
      for (const [k, v] of SECURITY_HEADERS) res.setHeader(k, v);
      if (/^\/api(\/|$)/i.test(path)) res.setHeader('Cache-Control', 'no-store');
    }
    if (!found) {
      meter(req, res, 'unmatched');
      return sendError(res, new CaError('notFound', 'notFound', `no route for ${req.method} ${path.slice(0, 200)}`));
    }
    if (found.route.metered !== false) meter(req, res, found.route.path);
    void serve(req, res, found.route, found.params, path, q < 0 ? '' : url.slice(q + 1));
  };
}
