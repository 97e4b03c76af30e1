import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { Clock } from '../clock';
import { CaError } from '../errors';
import { Role, TokenRecord, TokenStore } from '../storage/token-store';
import { parseScope } from './scope';

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

  private readonly listeners: ((e: { kind: 'created' | 'revoked'; record: TokenRecord; by: string }) => void)[] = [];

  onChange(fn: (e: { kind: 'created' | 'revoked'; record: TokenRecord; by: string }) => void): void {
    this.listeners.push(fn);
  }

  async create(opts: { role: unknown; name: string; token?: string; expiresAt?: Date | null; scope?: unknown; by?: string }): Promise<{ token: string; record: TokenRecord }> {
    const { token, record } = this.prepare(opts);
    await this.add(record, opts.by);
    return { token, record };
  }

  /**
   * A checked token and its record, not yet stored: a quorum request
   * (src/quorum/) shows the token to its requester at once and stores the
   * record (its hash only) when the approvals are in.
   */
  prepare(opts: { role: unknown; name: string; token?: string; expiresAt?: Date | null; scope?: unknown }): { token: string; record: TokenRecord } {
    if (!ROLES.includes(opts.role as Role)) throw new CaError('badRequest', 'invalidRole', `role must be one of ${ROLES.join(', ')}`);
    const scope = parseScope(opts.scope);
    if (scope && opts.role === 'admin') throw new CaError('badRequest', 'invalidScope', 'admin tokens cannot be scoped');
    const name = (opts.name ?? '').trim();
    if (!name || name.length > 128) throw new CaError('badRequest', 'invalidName', 'a token name is 1 to 128 characters');
    const token = opts.token ?? randomBytes(32).toString('hex');
    const record: TokenRecord = {
      id: randomBytes(8).toString('hex'),
      name,
      role: opts.role as Role,
      hash: hashToken(token),
      scope,
      createdAt: this.deps.clock.now(),
      expiresAt: opts.expiresAt ?? null,
      revokedAt: null,
    };
    return { token, record };
  }

  /** Stores a prepared record (and tells the listeners: the audit log). */
  async add(record: TokenRecord, by?: string): Promise<void> {
    await this.deps.store.add(record);
    for (const l of this.listeners) l({ kind: 'created', record, by: by ?? 'cli' });
  }

  get(id: string): Promise<TokenRecord | undefined> {
    return this.deps.store.get(id);
  }

  list(): Promise<TokenRecord[]> {
    return this.deps.store.list();
  }

  async revoke(id: string, by: string): Promise<TokenRecord> {
    const ok = await this.deps.store.revoke(id, this.deps.clock.now());
    const rec = await this.deps.store.get(id);
    if (!rec) throw new CaError('notFound', 'tokenNotFound', `no token with id ${id.slice(0, 40)}`);
    if (!ok) throw new CaError('conflict', 'alreadyRevoked', `token ${id} is already revoked`);
    for (const l of this.listeners) l({ kind: 'revoked', record: rec, by });
    return rec;
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
