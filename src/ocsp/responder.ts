import { createHash } from 'node:crypto';
import { Clock } from '../clock';
import { serialHex } from '../ca/certificate';
import { CaIdentity } from '../ca/hierarchy';
import { CertificateStore, SerialStatus } from '../storage/certificate-store';
import { Logger } from '../log';
import { CertIdRequest, OcspMalformedError, OcspRequestInfo, parseOcspRequest } from './request';
import { CertStatus, IssuerHashes, buildOcspResponse, certIdMatchesIssuer, encodeSingleResponse, issuerHashes, ocspErrorResponse, OcspErrorStatus } from './response';
import { ResponderCertificateManager } from './responder-certificate';
import { SignatureBudget } from './signature-budget';

export type OcspOutcome = 'successful' | OcspErrorStatus;

/** What the HTTP adapter sends back: the DER and what caches need to know of it. */
export interface OcspAnswer {
  outcome: OcspOutcome;
  body: Buffer;
  /** set on successful answers that may be cached (RFC 5019) */
  cache?: { thisUpdate: Date; nextUpdate: Date; etag: string };
  /** the certificate statuses, for metrics */
  statuses?: CertStatus['kind'][];
}

/** The OCSP source interface (STYLE.md practice 12): caching and storage lookups are layers around it. */
export interface OcspSource {
  respond(request: Buffer): Promise<OcspAnswer>;
}

interface CachedResponse {
  body: Buffer;
  thisUpdate: Date;
  nextUpdate: Date;
  etag: string;
  /** the status this response was signed for; a change re-signs */
  statusKey: string;
  responder: string;
}

export interface OcspResponderSettings {
  /** nextUpdate - thisUpdate */
  validitySeconds: number;
  /** a pre-signed response is reused until this fraction of its validity has passed */
  refreshAtFraction: number;
  /** pre-signed responses kept in memory, for certificates this CA issued */
  cacheSize: number;
  /**
   * Signatures a second (with a second's burst) for what cannot come from the
   * pre-signed cache: a serial this CA never issued, a nonce, several
   * certificates in one request. 0: no limit.
   */
  onDemandSignaturesPerSecond: number;
}

/** Responses for serials this CA never issued, kept apart so that they never push out a real certificate's. */
const UNKNOWN_CACHE_SIZE = 1024;

const ERROR_ANSWERS = new Map<OcspErrorStatus, OcspAnswer>();
function errorAnswer(status: OcspErrorStatus): OcspAnswer {
  let a = ERROR_ANSWERS.get(status);
  if (!a) ERROR_ANSWERS.set(status, (a = { outcome: status, body: ocspErrorResponse(status) }));
  return a;
}

const statusKeyOf = (s: SerialStatus | undefined) => (s === undefined ? 'unknown' : s.revokedAt === null ? 'good' : `revoked:${s.revokedAt}:${s.reason ?? 0}`);

function certStatusOf(s: SerialStatus | undefined): CertStatus {
  if (s === undefined) return { kind: 'unknown' };
  if (s.revokedAt === null) return { kind: 'good' };
  return { kind: 'revoked', revokedAt: new Date(s.revokedAt), reason: s.reason ?? undefined };
}

/**
 * The RFC 6960 responder for the issuing CA. Each request reads the status
 * from the database (so a revocation shows on the very next request), and a
 * single-certificate request without a nonce is answered from a pre-signed
 * response while that response is fresh and its status unchanged: a lookup
 * costs an index read, not an HSM signature.
 */
export class OcspResponder implements OcspSource {
  private readonly hashes: IssuerHashes;
  private readonly cache = new Map<string, CachedResponse>();
  private readonly unknownCache = new Map<string, CachedResponse>();
  private readonly signing = new Map<string, Promise<CachedResponse>>();
  private readonly onDemand?: SignatureBudget;

  constructor(
    private readonly deps: {
      issuer: CaIdentity;
      /** the issuing CA's id (migration 013): a serial another issuer signed is not this one's to answer */
      issuerId?: number;
      responders: ResponderCertificateManager;
      certificates: CertificateStore;
      clock: Clock;
      log: Logger;
      settings: OcspResponderSettings;
    },
  ) {
    this.hashes = issuerHashes(deps.issuer.name, deps.issuer.spki);
    const rate = deps.settings.onDemandSignaturesPerSecond;
    if (rate > 0) this.onDemand = new SignatureBudget(rate, () => deps.clock.now().getTime());
    deps.responders.onRenewed(() => {
      this.cache.clear();
      this.unknownCache.clear();
    });
  }

  /** Whether a signature that no cache can stand for may be made now (see onDemandSignaturesPerSecond). */
  private mayGoOnDemand(): boolean {
    return !this.onDemand || this.onDemand.take();
  }

  async respond(request: Buffer): Promise<OcspAnswer> {
    let info: OcspRequestInfo;
    try {
      info = parseOcspRequest(request);
    } catch (e) {
      if (e instanceof OcspMalformedError) return errorAnswer('malformedRequest');
      throw e;
    }
    return this.respondParsed(info);
  }

  /** The answer to a request already parsed (several issuers: the request is parsed once, to find its issuer). */
  async respondParsed(info: OcspRequestInfo): Promise<OcspAnswer> {
    // A CertID under a known hash algorithm that names another issuer: not ours to answer.
    if (info.certIds.some((c) => c.hash !== undefined && !certIdMatchesIssuer(c, this.hashes))) return errorAnswer('unauthorized');
    try {
      if (info.certIds.length === 1 && info.nonce === undefined) return await this.cached(info.certIds[0]);
      // A nonce or several certificates need a signature of their own, within the budget. Past it,
      // one certificate with a nonce gets the pre-signed answer without the nonce (RFC 8954 section 2.1
      // lets a responder leave the nonce out); anything else is asked to try later.
      if (!this.mayGoOnDemand()) return info.certIds.length === 1 ? await this.cached(info.certIds[0]) : errorAnswer('tryLater');
      return await this.fresh(info);
    } catch (e) {
      this.deps.log.error('OCSP response failed', { error: (e as Error).message });
      return errorAnswer('tryLater');
    }
  }

  private async lookup(c: CertIdRequest): Promise<SerialStatus | undefined> {
    if (c.hash === undefined) return undefined;
    const s = await this.deps.certificates.status(serialHex(c.serialNumber));
    if (s && this.deps.issuerId !== undefined && s.issuerId !== this.deps.issuerId) return undefined;
    return s;
  }

  private window(): { thisUpdate: Date; nextUpdate: Date } {
    const now = this.deps.clock.now().getTime();
    const thisUpdate = new Date(Math.floor(now / 1000) * 1000);
    return { thisUpdate, nextUpdate: new Date(thisUpdate.getTime() + this.deps.settings.validitySeconds * 1000) };
  }

  /**
   * One certificate, no nonce: the pre-signed response while it is fresh and
   * its status unchanged. A serial this CA never issued is answered
   * `unknown` from a small cache of its own, and signing one is on demand
   * (within the budget, `tryLater` past it): random serials can neither
   * make the HSM sign without limit nor push real certificates' responses
   * out of the cache.
   */
  private async cached(c: CertIdRequest): Promise<OcspAnswer> {
    const status = await this.lookup(c);
    const statusKey = statusKeyOf(status);
    const cache = status === undefined ? this.unknownCache : this.cache;
    const key = c.raw.toString('latin1');
    const responder = this.deps.responders.current().label;
    const now = this.deps.clock.now().getTime();
    const hit = cache.get(key);
    const { validitySeconds, refreshAtFraction } = this.deps.settings;
    if (hit && hit.statusKey === statusKey && hit.responder === responder && now < hit.thisUpdate.getTime() + validitySeconds * 1000 * refreshAtFraction) {
      return { outcome: 'successful', body: hit.body, cache: hit, statuses: [certStatusOf(status).kind] };
    }
    const signKey = `${key}|${statusKey}`;
    let pending = this.signing.get(signKey);
    if (!pending && status === undefined && !this.mayGoOnDemand()) return errorAnswer('tryLater');
    if (!pending) {
      pending = this.signOne(c, status, statusKey, responder).finally(() => this.signing.delete(signKey));
      this.signing.set(signKey, pending);
    }
    const entry = await pending;
    cache.delete(key);
    cache.set(key, entry);
    if (cache.size > (status === undefined ? UNKNOWN_CACHE_SIZE : this.deps.settings.cacheSize)) cache.delete(cache.keys().next().value!);
    return { outcome: 'successful', body: entry.body, cache: entry, statuses: [certStatusOf(status).kind] };
  }

  private async signOne(c: CertIdRequest, status: SerialStatus | undefined, statusKey: string, responder: string): Promise<CachedResponse> {
    const w = this.window();
    const single = encodeSingleResponse({ certId: c.raw, status: certStatusOf(status), ...w });
    const body = await buildOcspResponse({ responder: this.deps.responders.current(), producedAt: w.thisUpdate, singleResponses: [single] });
    return { body, ...w, etag: `"${createHash('sha1').update(body).digest('hex')}"`, statusKey, responder };
  }

  private async fresh(info: OcspRequestInfo): Promise<OcspAnswer> {
    const w = this.window();
    const statuses = await Promise.all(info.certIds.map((c) => this.lookup(c)));
    const singles = info.certIds.map((c, i) => encodeSingleResponse({ certId: c.raw, status: certStatusOf(statuses[i]), ...w }));
    const body = await buildOcspResponse({ responder: this.deps.responders.current(), producedAt: w.thisUpdate, singleResponses: singles, nonce: info.nonce });
    // A response with a nonce answers one request only: it must not be cached.
    const cache = info.nonce === undefined ? { ...w, etag: `"${createHash('sha1').update(body).digest('hex')}"` } : undefined;
    return { outcome: 'successful', body, cache, statuses: statuses.map((s) => certStatusOf(s).kind) };
  }
}
