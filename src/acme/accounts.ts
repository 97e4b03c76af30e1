import { randomBytes } from 'node:crypto';
import type { AuditLog } from '../audit/audit-log';
import type { Principal } from '../ca/issuance';
import { Clock } from '../clock';
import type { TokenStore } from '../storage/token-store';
import { AcmeStore, AccountRecord } from '../storage/acme-store';
import type { AcmeConfig } from './acme-config';
import type { AcmeRequest } from './acme-requests';
import { AcmeUrls, accountJson } from './acme-urls';
import { thumbprint, verifyEabBinding } from './jws';
import { AcmeProblem } from './problem';

export interface AcmeReply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
  /** a body that is not JSON (the certificate chain) */
  raw?: { type: string; data: Buffer };
}

const HOUR_MS = 3_600_000;
const MAX_CONTACTS = 10;

/** RFC 8555 7.3: mailto: contacts only, each a plausible address. */
function contactsOf(v: unknown): string[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length > MAX_CONTACTS) throw new AcmeProblem('invalidContact', `"contact" must be a list of at most ${MAX_CONTACTS} URLs`);
  return v.map((c) => {
    if (typeof c !== 'string') throw new AcmeProblem('invalidContact', 'each contact must be a string');
    if (!c.startsWith('mailto:')) throw new AcmeProblem('unsupportedContact', 'only mailto: contacts are supported');
    if (!/^mailto:[^@\s,?]+@[a-z0-9.-]+$/i.test(c) || c.length > 254) throw new AcmeProblem('invalidContact', `"${c.slice(0, 80)}" is not a mailto: address`);
    return c;
  });
}

/**
 * Accounts (RFC 8555 7.3): creation (with External Account Binding to a
 * requester token, 7.3.4), lookup by key (onlyReturnExisting), contact
 * updates and deactivation (7.3.6); and the issuance principal an account
 * acts as.
 */
export class AcmeAccounts {
  constructor(private readonly deps: { store: AcmeStore; tokens: TokenStore; clock: Clock; audit: AuditLog; config: AcmeConfig; urls: AcmeUrls }) {}

  async newAccount(r: AcmeRequest, ip: string | undefined): Promise<AcmeReply> {
    const { store, urls, config, clock, audit } = this.deps;
    const p = (r.payload ?? {}) as Record<string, unknown>;
    const jwk = r.jwk!;
    const tp = await thumbprint(jwk);
    const existing = await store.accountByThumbprint(tp);
    if (existing) {
      // RFC 8555 7.3.1: the key's account, 200 with its Location
      if (existing.status !== 'valid') throw new AcmeProblem('unauthorized', `the account of this key is ${existing.status}`);
      return { status: 200, body: accountJson(existing, urls), headers: { Location: urls.account(existing.id) } };
    }
    if (p.onlyReturnExisting === true) throw new AcmeProblem('accountDoesNotExist', 'no account exists for this key');
    if (p.termsOfServiceAgreed !== undefined && typeof p.termsOfServiceAgreed !== 'boolean') throw new AcmeProblem('malformed', '"termsOfServiceAgreed" must be true or false');
    const contact = contactsOf(p.contact) ?? [];
    let tokenId: string | null = null;
    let eabKid: string | null = null;
    if (p.externalAccountBinding !== undefined) {
      eabKid = await verifyEabBinding(p.externalAccountBinding, jwk, urls.newAccount, async (kid) => {
        const k = await store.getEabKey(kid);
        // a bound key's HMAC is erased (an empty key would verify an empty MAC): bound keys verify nothing
        return k && !k.accountId && k.hmacKey ? Buffer.from(k.hmacKey, 'base64url') : undefined;
      });
      const key = (await store.getEabKey(eabKid))!;
      const token = await this.deps.tokens.get(key.tokenId);
      if (!token || token.revokedAt || (token.expiresAt && token.expiresAt <= clock.now())) throw new AcmeProblem('unauthorized', 'the token this external account key is bound to is revoked or expired');
      tokenId = token.id;
    } else if (config.requireEab) {
      throw new AcmeProblem('externalAccountRequired', 'this CA requires External Account Binding: ask its operator for a key id and HMAC key (hsmca acme eab create)');
    }
    const limit = config.newAccountsPerAddressPerHour;
    if (limit > 0 && ip && (await store.accountsFromAddressSince(ip, new Date(clock.now().getTime() - HOUR_MS))) >= limit) {
      throw new AcmeProblem('rateLimited', `at most ${limit} new accounts an hour from one address`, { headers: { 'Retry-After': '3600' } });
    }
    const account: AccountRecord = { id: randomBytes(12).toString('base64url'), thumbprint: tp, jwk: { ...jwk }, status: 'valid', contact, tokenId, eabKid, createdAt: clock.now() };
    const out = await store.createAccount(account, ip);
    if (out === 'eabUsed') throw new AcmeProblem('unauthorized', 'this external account key is already bound to an account');
    if (out === 'keyExists') return this.newAccount({ ...r, payload: { onlyReturnExisting: true } }, ip);
    await audit.tryRecord({ type: 'acmeAccountCreated', actor: tokenId ? `acme-eab:${eabKid}` : 'anonymous', subject: account.id, details: { thumbprint: tp, tokenId, eabKid, contact, ip: ip ?? null } });
    return { status: 201, body: accountJson(account, urls), headers: { Location: urls.account(account.id) } };
  }

  /** POST to the account URL: read (POST-as-GET or {}), update contacts, or deactivate (RFC 8555 7.3.2, 7.3.6). */
  async update(r: AcmeRequest, id: string): Promise<AcmeReply> {
    const { store, urls, audit } = this.deps;
    const a = r.account!;
    if (a.id !== id) throw new AcmeProblem('unauthorized', 'a request about an account must be signed by that account');
    const p = (r.payload ?? {}) as Record<string, unknown>;
    const contact = contactsOf(p.contact);
    let status = a.status;
    if (p.status !== undefined) {
      if (p.status !== 'deactivated') throw new AcmeProblem('malformed', 'an account can only be changed to "deactivated"');
      status = 'deactivated';
    }
    if (contact || status !== a.status) {
      await store.updateAccount(id, { contact, status });
      // RFC 8555 7.3.6: a deactivated account's authorizations are never reused
      if (status === 'deactivated') await store.endValidAuthzs({ accountId: id }, 'deactivated');
      await audit.tryRecord({ type: 'acmeAccountUpdated', actor: `acme:${id}`, subject: id, details: { contact: contact ?? a.contact, status } });
    }
    return { status: 200, body: accountJson({ ...a, contact: contact ?? a.contact, status }, urls), headers: { Location: urls.account(id) } };
  }

  /** RFC 8555 7.1.2.1: the account's current orders (at most 1000, newest first). */
  async orders(r: AcmeRequest, id: string): Promise<AcmeReply> {
    if (r.account!.id !== id) throw new AcmeProblem('unauthorized', 'an account\'s orders are read by that account only');
    const ids = await this.deps.store.orderIdsOfAccount(id, this.deps.clock.now(), 1000);
    return { status: 200, body: { orders: ids.map((o) => this.deps.urls.order(o)) } };
  }

  /**
   * Who an account acts as in the issuance pipeline: its bound requester
   * token (scope, profiles, validity and rate limits apply), or, without a
   * binding, a principal allowed HSMCA_ACME_ALLOWED_DOMAINS only.
   */
  async principalOf(a: AccountRecord): Promise<Principal> {
    if (a.tokenId) {
      const t = await this.deps.tokens.get(a.tokenId);
      if (!t || t.revokedAt || (t.expiresAt && t.expiresAt <= this.deps.clock.now())) throw new AcmeProblem('unauthorized', 'the token this account is bound to is revoked or expired');
      return { tokenId: t.id, name: t.name, role: t.role, scope: t.scope };
    }
    const names = this.deps.config.allowedDomains;
    if (names.length === 0) throw new AcmeProblem('rejectedIdentifier', 'this CA allows no names to accounts without External Account Binding (HSMCA_ACME_ALLOWED_DOMAINS is empty)');
    return { tokenId: `acme:${a.id}`, name: `acme:${a.id}`, role: 'requester', scope: { names, profiles: this.deps.config.profiles } };
  }
}
