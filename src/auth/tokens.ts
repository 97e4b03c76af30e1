import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { Clock } from '../clock';
import { CaError } from '../errors';
import { Role, TokenRecord, TokenStore } from '../storage/token-store';

export const ROLES: Role[] = ['admin', 'requester'];

export interface AuthenticatedToken {
  id: string;
  name: string;
  role: Role;
  scope: unknown;
}

export const hashToken = (token: string): string => createHash('sha256').update(token, 'utf8').digest('hex');

/**
 * Bearer tokens: 32 random bytes, shown once, stored as SHA-256 hashes.
 * A token is high-entropy, so a fast hash is enough; the lookup is by hash and
 * the stored hash is compared again in constant time.
 */
export class TokenService {
  constructor(private readonly deps: { store: TokenStore; clock: Clock }) {}

  async create(opts: { role: string; name: string; token?: string; expiresAt?: Date | null; scope?: unknown }): Promise<{ token: string; record: TokenRecord }> {
    if (!ROLES.includes(opts.role as Role)) throw new CaError('badRequest', 'invalidRole', `role must be one of ${ROLES.join(', ')}`);
    const name = (opts.name ?? '').trim();
    if (!name || name.length > 128) throw new CaError('badRequest', 'invalidName', 'a token name is 1 to 128 characters');
    const token = opts.token ?? randomBytes(32).toString('hex');
    const record: TokenRecord = {
      id: randomBytes(8).toString('hex'),
      name,
      role: opts.role as Role,
      hash: hashToken(token),
      scope: opts.scope ?? null,
      createdAt: this.deps.clock.now(),
      expiresAt: opts.expiresAt ?? null,
      revokedAt: null,
    };
    await this.deps.store.add(record);
    return { token, record };
  }

  /** The token's holder, or 401 for a missing, unknown, revoked or expired token. */
  async authenticate(authorization: string | undefined): Promise<AuthenticatedToken> {
    const m = authorization?.match(/^Bearer\s+([\x21-\x7e]{1,512})\s*$/i);
    if (!m) throw new CaError('unauthorized', 'unauthorized', 'an "Authorization: Bearer <token>" header is required');
    const hash = hashToken(m[1]);
    const rec = await this.deps.store.findByHash(hash);
    const ok = !!rec && timingSafeEqual(Buffer.from(rec.hash, 'hex'), Buffer.from(hash, 'hex'));
    if (!ok || !rec) throw new CaError('unauthorized', 'invalidToken', 'the bearer token is not valid');
    const now = this.deps.clock.now();
    if (rec.revokedAt) throw new CaError('unauthorized', 'invalidToken', 'the bearer token is not valid');
    if (rec.expiresAt && rec.expiresAt <= now) throw new CaError('unauthorized', 'tokenExpired', 'the bearer token has expired');
    return { id: rec.id, name: rec.name, role: rec.role, scope: rec.scope };
  }
}
