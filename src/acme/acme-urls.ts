import type { Config } from '../config';
import type { AccountRecord, AuthzRecord, ChallengeRecord, OrderRecord } from '../storage/acme-store';

/**
 * The ACME server's base URL, in one place: every URL in the directory and
 * in ACME objects, and the `url` every JWS must carry, is built from it.
 * ACME is served over HTTPS (contract section 7): the HTTPS listener on the
 * host of HSMCA_PUBLIC_URL, or HSMCA_ACME_BASE_URL where a proxy fronts
 * hsmca. With HTTPS off (HSMCA_HTTPS_PORT=0: TLS is the proxy's job) it is
 * HSMCA_PUBLIC_URL/acme.
 */
export function acmeBaseUrl(config: Config): string {
  if (config.acme.baseUrl) return config.acme.baseUrl;
  if (config.httpsPort === 0) return `${config.publicUrl}/acme`;
  return `https://${new URL(config.publicUrl).hostname}:${config.httpsPort}/acme`;
}

export class AcmeUrls {
  constructor(readonly base: string) {}
  get directory() { return `${this.base}/directory`; }
  get newNonce() { return `${this.base}/new-nonce`; }
  get newAccount() { return `${this.base}/new-account`; }
  get newOrder() { return `${this.base}/new-order`; }
  get revokeCert() { return `${this.base}/revoke-cert`; }
  get keyChange() { return `${this.base}/key-change`; }
  get renewalInfo() { return `${this.base}/renewal-info`; }
  account(id: string) { return `${this.base}/account/${id}`; }
  order(id: string) { return `${this.base}/order/${id}`; }
  finalize(id: string) { return `${this.base}/order/${id}/finalize`; }
  authz(id: string) { return `${this.base}/authz/${id}`; }
  challenge(id: string) { return `${this.base}/chall/${id}`; }
  certificate(orderId: string) { return `${this.base}/cert/${orderId}`; }
  /** the URL a request was sent to: the base and the request's path below /acme (a proxy may serve /acme under another path) */
  requestUrl(path: string): string {
    return path.startsWith('/acme/') ? this.base + path.slice('/acme'.length) : new URL(this.base).origin + path;
  }
}

/** RFC 8555 7.1.2 */
export function accountJson(a: AccountRecord, urls: AcmeUrls) {
  return { status: a.status, contact: a.contact, orders: `${urls.account(a.id)}/orders`, ...(a.eabKid ? { externalAccountBinding: { kid: a.eabKid } } : {}) };
}

/** RFC 8555 7.1.3 */
export function orderJson(o: OrderRecord, authzIds: string[], urls: AcmeUrls) {
  return {
    status: o.status,
    expires: o.expiresAt.toISOString(),
    identifiers: o.identifiers,
    authorizations: authzIds.map((id) => urls.authz(id)),
    finalize: urls.finalize(o.id),
    ...(o.profile ? { profile: o.profile } : {}),
    ...(o.certificateSerial && o.status === 'valid' ? { certificate: urls.certificate(o.id) } : {}),
    ...(o.error ? { error: o.error } : {}),
  };
}

/** RFC 8555 8 */
export function challengeJson(c: ChallengeRecord, urls: AcmeUrls) {
  return {
    type: c.type,
    url: urls.challenge(c.id),
    status: c.status,
    token: c.token,
    ...(c.validatedAt ? { validated: c.validatedAt.toISOString() } : {}),
    ...(c.error ? { error: c.error } : {}),
  };
}

/** RFC 8555 7.1.4 */
export function authzJson(a: AuthzRecord, challenges: ChallengeRecord[], urls: AcmeUrls) {
  return {
    identifier: a.identifier,
    status: a.status,
    expires: a.expiresAt.toISOString(),
    challenges: challenges.map((c) => challengeJson(c, urls)),
    ...(a.wildcard ? { wildcard: true } : {}),
  };
}
