import type { Knex } from 'knex';
import { Database, storageError } from './database';

/** ACME state (migration 008): the only place its SQL lives. */

export type AcmeStatus = 'pending' | 'ready' | 'processing' | 'valid' | 'invalid' | 'deactivated' | 'revoked' | 'expired';

export interface AcmeIdentifier {
  type: 'dns' | 'ip';
  value: string;
}

export interface EabKeyRecord {
  kid: string;
  hmacKey: string;
  tokenId: string;
  createdAt: Date;
  accountId: string | null;
}

export interface AccountRecord {
  id: string;
  thumbprint: string;
  jwk: Record<string, unknown>;
  status: 'valid' | 'deactivated' | 'revoked';
  contact: string[];
  tokenId: string | null;
  eabKid: string | null;
  createdAt: Date;
}

export interface OrderRecord {
  id: string;
  accountId: string;
  status: AcmeStatus;
  identifiers: AcmeIdentifier[];
  expiresAt: Date;
  error: unknown;
  certificateSerial: string | null;
  createdAt: Date;
  /** the profile asked for (draft-ietf-acme-profiles); null: an order from before profiles, tls-server */
  profile: string | null;
}

export interface AuthzRecord {
  id: string;
  orderId: string;
  accountId: string;
  identifier: AcmeIdentifier;
  wildcard: boolean;
  status: AcmeStatus;
  expiresAt: Date;
}

export interface ChallengeRecord {
  id: string;
  authzId: string;
  accountId: string;
  type: 'http-01' | 'dns-01' | 'tls-alpn-01';
  token: string;
  status: AcmeStatus;
  error: unknown;
  validatedAt: Date | null;
}

const json = (v: unknown) => (v === undefined || v === null ? null : JSON.stringify(v));
const parse = (v: unknown) => (v === null || v === undefined ? null : JSON.parse(String(v)));
const date = (v: unknown) => new Date(Number(v));

function account(r: Record<string, unknown>): AccountRecord {
  return {
    id: String(r.id),
    thumbprint: String(r.thumbprint),
    jwk: parse(r.jwk),
    status: r.status as AccountRecord['status'],
    contact: parse(r.contact) ?? [],
    tokenId: (r.token_id as string) ?? null,
    eabKid: (r.eab_kid as string) ?? null,
    createdAt: date(r.created_at),
  };
}

function order(r: Record<string, unknown>): OrderRecord {
  return {
    id: String(r.id),
    accountId: String(r.account_id),
    status: r.status as AcmeStatus,
    identifiers: parse(r.identifiers),
    expiresAt: date(r.expires_at),
    error: parse(r.error),
    certificateSerial: (r.certificate_serial as string) ?? null,
    createdAt: date(r.created_at),
    profile: (r.profile as string) ?? null,
  };
}

function authz(r: Record<string, unknown>): AuthzRecord {
  return {
    id: String(r.id),
    orderId: String(r.order_id),
    accountId: String(r.account_id),
    identifier: { type: r.identifier_type as 'dns' | 'ip', value: String(r.identifier_value) },
    wildcard: !!r.wildcard,
    status: r.status as AcmeStatus,
    expiresAt: date(r.expires_at),
  };
}

function challenge(r: Record<string, unknown>): ChallengeRecord {
  return {
    id: String(r.id),
    authzId: String(r.authz_id),
    accountId: String(r.account_id),
    type: r.type as ChallengeRecord['type'],
    token: String(r.token),
    status: r.status as AcmeStatus,
    error: parse(r.error),
    validatedAt: r.validated_at == null ? null : date(r.validated_at),
  };
}

async function guarded<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw storageError(e);
  }
}

export class AcmeStore {
  private readonly knex: Knex;

  constructor(db: Database) {
    this.knex = db.knex;
  }

  // --- nonces (RFC 8555 6.5)

  addNonce(value: string, expiresAt: Date): Promise<void> {
    return guarded(async () => void (await this.knex('acme_nonces').insert({ value, expires_at: expiresAt.getTime() })));
  }

  /** true once for a nonce that was issued and has not expired: the DELETE is the single use, on every instance */
  consumeNonce(value: string, now: Date): Promise<boolean> {
    return guarded(async () => (await this.knex('acme_nonces').where({ value }).andWhere('expires_at', '>', now.getTime()).delete()) === 1);
  }

  sweepNonces(now: Date): Promise<number> {
    return guarded(() => this.knex('acme_nonces').where('expires_at', '<=', now.getTime()).delete());
  }

  // --- External Account Binding keys (RFC 8555 7.3.4)

  addEabKey(k: EabKeyRecord): Promise<void> {
    return guarded(async () => void (await this.knex('acme_eab_keys').insert({ kid: k.kid, hmac_key: k.hmacKey, token_id: k.tokenId, created_at: k.createdAt.getTime(), account_id: null })));
  }

  getEabKey(kid: string): Promise<EabKeyRecord | undefined> {
    return guarded(async () => {
      const r = await this.knex('acme_eab_keys').where({ kid }).first();
      return r && { kid: r.kid, hmacKey: r.hmac_key, tokenId: r.token_id, createdAt: date(r.created_at), accountId: r.account_id ?? null };
    });
  }

  // --- accounts

  /** Inserts the account, binding its EAB key (and erasing its HMAC) in the same transaction; 'eabUsed' when the key already bound another account. */
  createAccount(a: AccountRecord, ip: string | undefined): Promise<'created' | 'eabUsed' | 'keyExists'> {
    return guarded(() =>
      this.knex.transaction(async (trx) => {
        if (await trx('acme_accounts').where({ thumbprint: a.thumbprint }).first()) return 'keyExists' as const;
        if (a.eabKid) {
          // bound once, and the HMAC key erased: it has done its one job, and a copy of the database cannot bind another account
          const n = await trx('acme_eab_keys').where({ kid: a.eabKid }).whereNull('account_id').update({ account_id: a.id, hmac_key: '' });
          if (n !== 1) return 'eabUsed' as const;
        }
        await trx('acme_accounts').insert({
          id: a.id,
          thumbprint: a.thumbprint,
          jwk: JSON.stringify(a.jwk),
          status: a.status,
          contact: json(a.contact),
          token_id: a.tokenId,
          eab_kid: a.eabKid,
          created_ip: ip ?? null,
          created_at: a.createdAt.getTime(),
        });
        return 'created' as const;
      }),
    );
  }

  accountById(id: string): Promise<AccountRecord | undefined> {
    return guarded(async () => {
      const r = await this.knex('acme_accounts').where({ id }).first();
      return r && account(r);
    });
  }

  accountByThumbprint(thumbprint: string): Promise<AccountRecord | undefined> {
    return guarded(async () => {
      const r = await this.knex('acme_accounts').where({ thumbprint }).first();
      return r && account(r);
    });
  }

  updateAccount(id: string, change: { contact?: string[]; status?: AccountRecord['status'] }): Promise<void> {
    const row: Record<string, unknown> = {};
    if (change.contact) row.contact = json(change.contact);
    if (change.status) row.status = change.status;
    return guarded(async () => void (await this.knex('acme_accounts').where({ id }).update(row)));
  }

  /** RFC 8555 7.3.5: replaces the account key when it is still `oldThumbprint`; false when not (or the new key is taken). */
  changeAccountKey(id: string, oldThumbprint: string, thumbprint: string, jwk: Record<string, unknown>): Promise<boolean> {
    return guarded(async () => {
      try {
        return (await this.knex('acme_accounts').where({ id, thumbprint: oldThumbprint }).update({ thumbprint, jwk: JSON.stringify(jwk) })) === 1;
      } catch (e) {
        if (/unique|duplicate/i.test((e as Error).message)) return false;
        throw e;
      }
    });
  }

  accountsFromAddressSince(ip: string, since: Date): Promise<number> {
    return guarded(async () => Number((await this.knex('acme_accounts').where({ created_ip: ip }).andWhere('created_at', '>', since.getTime()).count<{ n: number }[]>({ n: '*' }))[0].n));
  }

  // --- orders, authorizations, challenges

  /** The order, its new authorizations and their challenges, and its links to them and to the reused ones (`reusedAuthzIds`), in one transaction. */
  createOrder(o: OrderRecord, authzs: AuthzRecord[], challenges: ChallengeRecord[], now: Date, reusedAuthzIds: string[] = []): Promise<void> {
    return guarded(() =>
      this.knex.transaction(async (trx) => {
        await trx('acme_orders').insert({
          id: o.id,
          account_id: o.accountId,
          status: o.status,
          identifiers: JSON.stringify(o.identifiers),
          expires_at: o.expiresAt.getTime(),
          error: null,
          certificate_serial: null,
          created_at: o.createdAt.getTime(),
          profile: o.profile,
        });
        if (authzs.length) {
          await trx('acme_authorizations').insert(
            authzs.map((a) => ({
              id: a.id,
              order_id: a.orderId,
              account_id: a.accountId,
              identifier_type: a.identifier.type,
              identifier_value: a.identifier.value,
              wildcard: a.wildcard,
              status: a.status,
              expires_at: a.expiresAt.getTime(),
            })),
          );
        }
        const links = [...authzs.map((a) => a.id), ...reusedAuthzIds];
        if (links.length) await trx('acme_order_authorizations').insert(links.map((authz_id) => ({ order_id: o.id, authz_id })));
        if (challenges.length) {
          await trx('acme_challenges').insert(
            challenges.map((c) => ({ id: c.id, authz_id: c.authzId, account_id: c.accountId, type: c.type, token: c.token, status: c.status, error: null, validated_at: null, updated_at: now.getTime() })),
          );
        }
      }),
    );
  }

  ordersOfAccountSince(accountId: string, since: Date): Promise<number> {
    return guarded(async () => Number((await this.knex('acme_orders').where({ account_id: accountId }).andWhere('created_at', '>', since.getTime()).count<{ n: number }[]>({ n: '*' }))[0].n));
  }

  /** the account's orders not yet expired, newest first (RFC 8555 7.1.2.1) */
  orderIdsOfAccount(accountId: string, now: Date, limit: number): Promise<string[]> {
    return guarded(async () =>
      (await this.knex('acme_orders').where({ account_id: accountId }).andWhere('expires_at', '>', now.getTime()).whereNot({ status: 'invalid' }).orderBy('created_at', 'desc').limit(limit).select('id')).map((r: { id: string }) => r.id),
    );
  }

  orderById(id: string): Promise<OrderRecord | undefined> {
    return guarded(async () => {
      const r = await this.knex('acme_orders').where({ id }).first();
      return r && order(r);
    });
  }

  orderByCertificate(serial: string): Promise<OrderRecord | undefined> {
    return guarded(async () => {
      const r = await this.knex('acme_orders').where({ certificate_serial: serial }).first();
      return r && order(r);
    });
  }

  /** Moves an order from one status to another; false when it was no longer in `from` (another request won). */
  setOrderStatus(id: string, from: AcmeStatus[], to: AcmeStatus, extra: { error?: unknown; certificateSerial?: string } = {}): Promise<boolean> {
    const row: Record<string, unknown> = { status: to };
    if (extra.error !== undefined) row.error = json(extra.error);
    if (extra.certificateSerial !== undefined) row.certificate_serial = extra.certificateSerial;
    return guarded(async () => (await this.knex('acme_orders').where({ id }).whereIn('status', from).update(row)) === 1);
  }

  /** the order's authorizations: those it made and those it reused (acme_order_authorizations) */
  authzsOfOrder(orderId: string): Promise<AuthzRecord[]> {
    return guarded(async () =>
      (
        await this.knex('acme_authorizations as a')
          .join('acme_order_authorizations as l', 'l.authz_id', 'a.id')
          .where('l.order_id', orderId)
          .orderBy('a.identifier_value')
          .select('a.*')
      ).map(authz),
    );
  }

  /** the orders an authorization belongs to */
  orderIdsOfAuthz(authzId: string): Promise<string[]> {
    return guarded(async () => (await this.knex('acme_order_authorizations').where({ authz_id: authzId }).select('order_id')).map((r: { order_id: string }) => r.order_id));
  }

  /**
   * A valid authorization of the account for exactly this identifier (a wildcard
   * one only for a wildcard, a plain one only for a plain name), validated at
   * `validatedSince` or later and not expiring before `usableUntil`: the newest.
   */
  reusableAuthz(accountId: string, identifier: AcmeIdentifier, wildcard: boolean, validatedSince: Date, usableUntil: Date): Promise<AuthzRecord | undefined> {
    return guarded(async () => {
      const r = await this.knex('acme_authorizations')
        .where({ account_id: accountId, identifier_type: identifier.type, identifier_value: identifier.value, wildcard, status: 'valid' })
        .andWhere('validated_at', '>=', validatedSince.getTime())
        .andWhere('expires_at', '>', usableUntil.getTime())
        .orderBy('validated_at', 'desc')
        .first();
      return r && authz(r);
    });
  }

  /** pending → valid, stamping when (the start of its reuse window) */
  validateAuthz(id: string, now: Date): Promise<boolean> {
    return guarded(async () => (await this.knex('acme_authorizations').where({ id, status: 'pending' }).update({ status: 'valid', validated_at: now.getTime() })) === 1);
  }

  /** Ends the reuse of valid authorizations: an account's when it is deactivated, or an order's when its certificate is revoked. */
  endValidAuthzs(where: { accountId: string } | { orderId: string }, to: 'deactivated' | 'revoked'): Promise<number> {
    return guarded(async () => {
      const q = this.knex('acme_authorizations').where({ status: 'valid' });
      if ('accountId' in where) q.andWhere({ account_id: where.accountId });
      else q.whereIn('id', this.knex('acme_order_authorizations').where({ order_id: where.orderId }).select('authz_id'));
      return q.update({ status: to });
    });
  }

  authzById(id: string): Promise<AuthzRecord | undefined> {
    return guarded(async () => {
      const r = await this.knex('acme_authorizations').where({ id }).first();
      return r && authz(r);
    });
  }

  /** The account's valid, unexpired authorizations for these names (revocation by an account, RFC 8555 7.6). */
  validAuthzsFor(accountId: string, values: string[], now: Date): Promise<AuthzRecord[]> {
    return guarded(async () =>
      (await this.knex('acme_authorizations').where({ account_id: accountId, status: 'valid' }).whereIn('identifier_value', values).andWhere('expires_at', '>', now.getTime())).map(authz),
    );
  }

  setAuthzStatus(id: string, from: AcmeStatus[], to: AcmeStatus): Promise<boolean> {
    return guarded(async () => (await this.knex('acme_authorizations').where({ id }).whereIn('status', from).update({ status: to })) === 1);
  }

  challengesOfAuthz(authzId: string): Promise<ChallengeRecord[]> {
    return guarded(async () => (await this.knex('acme_challenges').where({ authz_id: authzId }).orderBy('type')).map(challenge));
  }

  challengeById(id: string): Promise<ChallengeRecord | undefined> {
    return guarded(async () => {
      const r = await this.knex('acme_challenges').where({ id }).first();
      return r && challenge(r);
    });
  }

  setChallengeStatus(id: string, from: AcmeStatus[], to: AcmeStatus, now: Date, error?: unknown): Promise<boolean> {
    const row: Record<string, unknown> = { status: to, updated_at: now.getTime() };
    if (to === 'valid') row.validated_at = now.getTime();
    if (error !== undefined) row.error = json(error);
    return guarded(async () => (await this.knex('acme_challenges').where({ id }).whereIn('status', from).update(row)) === 1);
  }

  /** a validation in progress says it is alive: a processing challenge left untouched longer than a lease has lost its worker */
  touchChallenge(id: string, now: Date): Promise<boolean> {
    return guarded(async () => (await this.knex('acme_challenges').where({ id, status: 'processing' }).update({ updated_at: now.getTime() })) === 1);
  }

  /** processing challenges whose worker stopped touching them before `staleBefore` (a process that died, or stopped past its grace) */
  orphanedChallenges(staleBefore: Date, limit: number): Promise<(ChallengeRecord & { updatedAt: Date })[]> {
    return guarded(async () =>
      (await this.knex('acme_challenges').where({ status: 'processing' }).andWhere('updated_at', '<', staleBefore.getTime()).orderBy('updated_at').limit(limit)).map((r: Record<string, unknown>) => ({
        ...challenge(r),
        updatedAt: date(r.updated_at),
      })),
    );
  }

  /** takes over an orphaned validation: true for exactly one of the workers that try (the row must be as it was seen) */
  claimChallenge(id: string, seenUpdatedAt: Date, now: Date): Promise<boolean> {
    return guarded(async () => (await this.knex('acme_challenges').where({ id, status: 'processing', updated_at: seenUpdatedAt.getTime() }).update({ updated_at: now.getTime() })) === 1);
  }

  failedValidationsSince(accountId: string, since: Date): Promise<number> {
    return guarded(async () =>
      Number((await this.knex('acme_challenges').where({ account_id: accountId, status: 'invalid' }).andWhere('updated_at', '>', since.getTime()).count<{ n: number }[]>({ n: '*' }))[0].n),
    );
  }
}
