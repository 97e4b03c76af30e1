import type { Request, RequestHandler } from 'express';
import { AuthenticatedToken, TokenService } from '../auth/tokens';
import { CaError } from '../errors';
import { Role } from '../storage/token-store';

declare module 'express-serve-static-core' {
  interface Request {
    principal?: AuthenticatedToken;
  }
}

export interface AuthHooks {
  failed?(e: { error: CaError; ip: string | undefined; path: string }): void;
}

/** Authenticates the bearer token and checks its role; 401 and 403 otherwise. */
export function requireRole(tokens: TokenService, roles: Role[], hooks: AuthHooks = {}): RequestHandler {
  return async (req, _res, next) => {
    let principal: AuthenticatedToken;
    try {
      principal = await tokens.authenticate(req.headers.authorization);
    } catch (e) {
      if (e instanceof CaError && e.kind === 'unauthorized') hooks.failed?.({ error: e, ip: req.ip, path: req.path });
      throw e;
    }
    if (!roles.includes(principal.role)) {
      throw new CaError('forbidden', 'forbidden', `this needs the ${roles.join(' or ')} role; the token has ${principal.role}`);
    }
    req.principal = principal;
    next();
  };
}

export function principalOf(req: Request): AuthenticatedToken {
  if (!req.principal) throw new CaError('unauthorized', 'unauthorized', 'not authenticated');
  return req.principal;
}
