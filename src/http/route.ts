import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ParsedUrlQuery } from 'node:querystring';
import type { AuthenticatedToken } from '../auth/tokens';
import { CaError } from '../errors';
import type { Role } from '../storage/token-store';

/**
 * Who may call a route: anyone, only a client on this host (metrics), or a
 * bearer token with one of the roles (401 without a valid token, 403 with a
 * token of another role).
 */
export type Access = 'public' | 'localhost' | { roles: readonly Role[] };

export const PUBLIC: Access = 'public';
export const LOCALHOST: Access = 'localhost';
export const ADMIN: Access = { roles: ['admin'] };
export const ANY_ROLE: Access = { roles: ['admin', 'requester'] };

/** What a handler gets: the request, its route parameters and query, the caller, the body. */
export interface RouteContext {
  req: IncomingMessage;
  res: ServerResponse;
  /** `:name` segments of the route's path, URL-decoded */
  params: Record<string, string>;
  /** the query string, parsed as node's querystring does (a repeated key gives an array) */
  query: ParsedUrlQuery;
  /** the client's address (the socket's; no proxy headers are trusted) */
  ip: string | undefined;
  /** the authenticated token, on routes that take one */
  principal?: AuthenticatedToken;
  /** the parsed JSON body on routes with `body: 'json'`; undefined when the request has none */
  body: unknown;
}

/**
 * One entry of the route table: everything the service answers is declared
 * this way, whichever listener serves it (see router.ts for the stages a
 * request goes through).
 */
export interface Route {
  method: 'GET' | 'POST';
  /**
   * The path; `:name` takes one segment, a trailing `*` takes the rest
   * (left undecoded for the handler to read from req.url). Matched without
   * regard to case and with an optional trailing slash.
   */
  path: string;
  access: Access;
  /** a JSON body (strict, at most HSMCA_MAX_BODY_BYTES), read only after the caller was authenticated */
  body?: 'json';
  /** admission after authentication and before the body is read (rate limits); throws CaError to refuse */
  admit?(ip: string | undefined, principal: AuthenticatedToken | undefined): void;
  /** the route writes response headers of its own instead of the API's security headers (OCSP) */
  ownHeaders?: boolean;
  /** counted in hsmca_http_requests_total and the latency histogram (default true) */
  metered?: boolean;
  /** answers the request; a CaError thrown becomes the contract's error body */
  handle(ctx: RouteContext): void | Promise<void>;
}

/** The caller of a route that takes a token. */
export function principalOf(ctx: RouteContext): AuthenticatedToken {
  if (!ctx.principal) throw new CaError('unauthorized', 'unauthorized', 'not authenticated');
  return ctx.principal;
}

