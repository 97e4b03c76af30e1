import type { JWK } from 'jose';
import { randomBytes } from 'node:crypto';
import type { AuditLog } from '../audit/audit-log';
import { scopePolicy } from '../auth/scope';
import { ipToBytes, validDnsName } from '../ca/csr';
import type { ProfileRegistry } from '../ca/profiles';
import { Clock } from '../clock';
import { CaError } from '../errors';
import { AcmeIdentifier, AcmeStore, AuthzRecord, ChallengeRecord, OrderRecord } from '../storage/acme-store';
import type { AcmeAccounts, AcmeReply } from './accounts';
import type { AcmeConfig } from './acme-config';
import type { AcmeRequest } from './acme-requests';
import { AcmeUrls, authzJson, challengeJson, orderJson } from './acme-urls';
import { thumbprint } from './jws';
import { AcmeProblem, problemFromCaError } from './problem';
import { Validator } from './validator';

const ORDER_LIFETIME_MS = 7 * 86_400_000;
const HOUR_MS = 3_600_000;
const MAX_IDENTIFIERS = 100;
const id = () => randomBytes(12).toString('base64url');

/** An IP identifier in its canonical text (RFC 8738 3: IPv6 per RFC 5952). */
function canonicalIp(v: string): string | undefined {
  const b = ipToBytes(v);
  if (!b) return undefined;
  if (b.length === 4) return [...b].join('.');
  // the WHATWG URL parser writes IPv6 hosts in RFC 5952 form
  return new URL(`http://[${v}]/`).hostname.slice(1, -1);
}

/** RFC 8555 7.4 identifiers: dns names (a wildcard only as "*." at the left) and ip addresses (RFC 8738). */
export function parseIdentifiers(v: unknown): AcmeIdentifier[] {
  if (!Array.isArray(v) || v.length === 0 || v.length > MAX_IDENTIFIERS) throw new AcmeProblem('malformed', `"identifiers" must be a list of 1 to ${MAX_IDENTIFIERS} identifiers`);
  const out: AcmeIdentifier[] = [];
  const subproblems = [];
  for (const i of v) {
    if (!i || typeof i !== 'object' || typeof i.value !== 'string' || typeof i.type !== 'string') throw new AcmeProblem('malformed', 'each identifier is {"type": "dns" or "ip", "value": string}');
    if (i.type === 'dns') {
      const name = i.value.toLowerCase().replace(/\.$/, '');
      const base = name.startsWith('*.') ? name.slice(2) : name;
      if (!validDnsName(base) || base.includes('*') || !base.includes('.') || ipToBytes(base)) {
        subproblems.push({ type: 'urn:ietf:params:acme:error:rejectedIdentifier', detail: `"${i.value.slice(0, 80)}" is not a DNS name this CA issues for`, identifier: { type: 'dns', value: i.value.slice(0, 255) } });
        continue;
      }
      out.push({ type: 'dns', value: name });
    } else if (i.type === 'ip') {
      const ip = canonicalIp(i.value);
      if (!ip) {
        subproblems.push({ type: 'urn:ietf:params:acme:error:malformed', detail: `"${i.value.slice(0, 80)}" is not an IP address`, identifier: { type: 'ip', value: i.value.slice(0, 64) } });
        continue;
      }
      out.push({ type: 'ip', value: ip });
    } else {
      throw new AcmeProblem('unsupportedIdentifier', `identifier type "${String(i.type).slice(0, 20)}" is not supported (dns and ip are)`);
    }
  }
  if (subproblems.length) throw new AcmeProblem('rejectedIdentifier', 'some identifiers cannot be issued for', { subproblems });
  const seen = new Set<string>();
  return out.filter((i) => !seen.has(`${i.type}:${i.value}`) && !!seen.add(`${i.type}:${i.value}`));
}

/**
 * Orders, authorizations and challenges (RFC 8555 7.4, 7.5): a new order
 * gets one authorization per identifier, each with the challenges its kind
 * allows (a wildcard: dns-01 only; an IP address: http-01 and tls-alpn-01,
 * RFC 8738 7); a challenge the client answers is validated by the Validator.
 */
export class AcmeOrders {
  constructor(
    private readonly deps: { store: AcmeStore; clock: Clock; audit: AuditLog; config: AcmeConfig; urls: AcmeUrls; accounts: AcmeAccounts; profiles: ProfileRegistry; validator: Validator },
  ) {}

  async newOrder(r: AcmeRequest): Promise<AcmeReply> {
    const { store, clock, config, urls, audit } = this.deps;
    const account = r.account!;
    const p = (r.payload ?? {}) as Record<string, unknown>;
    if (p.notBefore !== undefined || p.notAfter !== undefined) throw new AcmeProblem('malformed', 'this CA does not take notBefore or notAfter in orders; the validity is the profile\'s');
    const identifiers = parseIdentifiers(p.identifiers);
    const now = clock.now();
    const limit = config.ordersPerAccountPerHour;
    if (limit > 0 && (await store.ordersOfAccountSince(account.id, new Date(now.getTime() - HOUR_MS))) >= limit) {
      throw new AcmeProblem('rateLimited', `at most ${limit} new orders an hour per account`, { headers: { 'Retry-After': '3600' } });
    }
    // the account's policy first: an order it could never finalize is refused now, naming the identifier
    const principal = await this.deps.accounts.principalOf(account);
    const profile = this.deps.profiles.get(this.profileOf(p.profile, principal.scope as { profiles?: string[] } | null))!;
    try {
      await scopePolicy.check({
        principal,
        profile,
        sans: { dns: identifiers.filter((i) => i.type === 'dns').map((i) => i.value), ip: identifiers.filter((i) => i.type === 'ip').map((i) => i.value), email: [], uri: [] },
        commonNames: [],
        validityDays: Math.min(profile.defaultValidityDays, (principal.scope as { maxValidityDays?: number } | null)?.maxValidityDays ?? Infinity),
      });
    } catch (e) {
      if (!(e instanceof CaError)) throw e;
      await audit.tryRecord({ type: 'acmeOrderRefused', actor: `acme:${account.id}`, details: { identifiers, code: e.code, message: e.message } });
      throw problemFromCaError(e);
    }
    const order: OrderRecord = { id: id(), accountId: account.id, status: 'pending', identifiers, expiresAt: new Date(now.getTime() + ORDER_LIFETIME_MS), error: null, certificateSerial: null, createdAt: now, profile: profile.name };
    const authzs: AuthzRecord[] = [];
    const reused: AuthzRecord[] = [];
    const challenges: ChallengeRecord[] = [];
    const reuseMs = config.authzReuseHours * HOUR_MS;
    for (const i of identifiers) {
      const wildcard = i.value.startsWith('*.');
      const identifier = { type: i.type, value: wildcard ? i.value.slice(2) : i.value };
      // RFC 8555 7.1.3: an order may share a valid authorization the account already holds for the same identifier
      // (a wildcard only with a wildcard); a deactivated or revoked one is never valid again
      const held = reuseMs > 0 ? await store.reusableAuthz(account.id, identifier, wildcard, new Date(now.getTime() - reuseMs), now) : undefined;
      if (held) {
        reused.push(held);
        continue;
      }
      const a: AuthzRecord = { id: id(), orderId: order.id, accountId: account.id, identifier: { type: i.type, value: wildcard ? i.value.slice(2) : i.value }, wildcard, status: 'pending', expiresAt: order.expiresAt };
      authzs.push(a);
      const types: ChallengeRecord['type'][] = wildcard ? ['dns-01'] : i.type === 'ip' ? ['http-01', 'tls-alpn-01'] : ['http-01', 'dns-01', 'tls-alpn-01'];
      for (const type of types) challenges.push({ id: id(), authzId: a.id, accountId: account.id, type, token: randomBytes(32).toString('base64url'), status: 'pending', error: null, validatedAt: null });
    }
    // every authorization reused: nothing to validate, the order is ready at once
    if (authzs.length === 0) order.status = 'ready';
    await store.createOrder(order, authzs, challenges, now, reused.map((a) => a.id));
    await audit.tryRecord({ type: 'acmeOrderCreated', actor: `acme:${account.id}`, subject: order.id, details: { identifiers, profile: profile.name, tokenId: account.tokenId, reusedAuthorizations: reused.map((a) => a.id) } });
    const all = [...authzs, ...reused].sort((x, y) => (x.identifier.value < y.identifier.value ? -1 : x.identifier.value > y.identifier.value ? 1 : 0));
    return { status: 201, body: orderJson(order, all.map((a) => a.id), urls), headers: { Location: urls.order(order.id) } };
  }

  /**
   * draft-ietf-acme-profiles 4: the order's "profile", one of HSMCA_ACME_PROFILES that
   * the account's token may use; without one, the first of those the token may use.
   */
  private profileOf(asked: unknown, scope: { profiles?: string[] } | null): string {
    const offered = this.deps.config.profiles;
    const permitted = offered.filter((n) => !scope?.profiles || scope.profiles.includes(n));
    if (asked === undefined) {
      if (permitted.length === 0) throw new AcmeProblem('invalidProfile', `this account may use none of the profiles offered (${offered.join(', ')})`);
      return permitted[0];
    }
    if (typeof asked !== 'string') throw new AcmeProblem('malformed', '"profile" must be a profile name from the directory\'s meta.profiles');
    if (!offered.includes(asked)) throw new AcmeProblem('invalidProfile', `"${asked.slice(0, 64)}" is not a profile offered here (${offered.join(', ')})`);
    if (!permitted.includes(asked)) throw new AcmeProblem('invalidProfile', `this account may not use the profile "${asked}" (it may use: ${permitted.join(', ') || 'none'})`);
    return asked;
  }

  async ownOrder(r: AcmeRequest, orderId: string): Promise<OrderRecord> {
    const o = await this.deps.store.orderById(orderId);
    if (!o || o.accountId !== r.account!.id) throw new AcmeProblem('malformed', 'no such order', { status: 404 });
    if (o.expiresAt <= this.deps.clock.now() && o.status !== 'valid' && o.status !== 'invalid') {
      await this.deps.store.setOrderStatus(o.id, [o.status], 'invalid', { error: { type: 'urn:ietf:params:acme:error:malformed', detail: 'the order expired' } });
      return { ...o, status: 'invalid' };
    }
    return o;
  }

  /** The order's current state; Retry-After while it is processing (RFC 8555 7.4). */
  async order(r: AcmeRequest, orderId: string): Promise<AcmeReply> {
    const o = await this.ownOrder(r, orderId);
    const authzs = await this.deps.store.authzsOfOrder(o.id);
    return { status: 200, body: orderJson(o, authzs.map((a) => a.id), this.deps.urls), headers: o.status === 'processing' ? { 'Retry-After': '1' } : {} };
  }

  async authz(r: AcmeRequest, authzId: string): Promise<AcmeReply> {
    const { store, urls } = this.deps;
    const a = await store.authzById(authzId);
    if (!a || a.accountId !== r.account!.id) throw new AcmeProblem('malformed', 'no such authorization', { status: 404 });
    const p = r.payload as Record<string, unknown> | undefined;
    if (p && p.status !== undefined) {
      // RFC 8555 7.5.2: a client gives up an authorization it holds
      if (p.status !== 'deactivated') throw new AcmeProblem('malformed', 'an authorization can only be changed to "deactivated"');
      if (await store.setAuthzStatus(a.id, ['pending', 'valid'], 'deactivated')) a.status = 'deactivated';
    }
    const challenges = await store.challengesOfAuthz(a.id);
    return { status: 200, body: authzJson(a, challenges, urls), headers: a.status === 'pending' && challenges.some((c) => c.status === 'processing') ? { 'Retry-After': '1' } : {} };
  }

  /** RFC 8555 7.5.1: a POST with {} asks for validation; POST-as-GET reads the challenge. */
  async challenge(r: AcmeRequest, challengeId: string): Promise<AcmeReply> {
    const { store, urls, config, clock } = this.deps;
    const account = r.account!;
    let c = await store.challengeById(challengeId);
    if (!c || c.accountId !== account.id) throw new AcmeProblem('malformed', 'no such challenge', { status: 404 });
    const a = (await store.authzById(c.authzId))!;
    if (r.payload !== undefined && c.status === 'pending') {
      if (a.status !== 'pending') throw new AcmeProblem('malformed', `the authorization is ${a.status}`);
      if (a.expiresAt <= clock.now()) throw new AcmeProblem('malformed', 'the authorization expired');
      if (!this.deps.validator.accepting) throw new AcmeProblem('serverInternal', 'this server is stopping and takes no new validation; retry in a moment', { status: 503, headers: { 'Retry-After': '1' } });
      const limit = config.failedValidationsPerAccountPerHour;
      if (limit > 0 && (await store.failedValidationsSince(account.id, new Date(clock.now().getTime() - HOUR_MS))) >= limit) {
        throw new AcmeProblem('rateLimited', `at most ${limit} failed validations an hour per account`, { headers: { 'Retry-After': '3600' } });
      }
      if (await store.setChallengeStatus(c.id, ['pending'], 'processing', clock.now())) {
        c = { ...c, status: 'processing' };
        this.deps.validator.start(c, a, `${c.token}.${await thumbprint(account.jwk as unknown as JWK)}`);
      }
    }
    return { status: 200, body: challengeJson(c, urls), headers: { Link: `<${urls.authz(a.id)}>;rel="up"`, ...(c.status === 'processing' ? { 'Retry-After': '1' } : {}) } };
  }
}
