import { createHash } from 'node:crypto';
import { Clock } from '../clock';
import { serialHex } from '../ca/certificate';
import { CaIdentity } from '../ca/hierarchy';
import { CertificateStore, SerialStatus } from '../storage/certificate-store';
import { Logger } from '../log';
import { CertIdRequest, OcspMalformedError, OcspRequestInfo, parseOcspRequest } from './request';
import { CertStatus, IssuerHashes, buildOcspResponse, certIdMatchesIssuer, encodeSingleResponse, issuerHashes, ocspErrorResponse, OcspErrorStatus } from './response';
import { ResponderCertificateManager } from './responder-certificate';

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
  /** pre-signed responses kept in memory */
  cacheSize: number;
}

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
  private readonly signing = new Map<string, Promise<CachedResponse>>();

  constructor(
    private readonly deps: {
      issuer: CaIdentity;
      responders: ResponderCertificateManager;
      certificates: CertificateStore;
      clock: Clock;
      log: Logger;
      settings: OcspResponderSettings;
    },
  ) {
    this.hashes = issuerHashes(deps.issuer.name, deps.issuer.spki);
    deps.responders.onRenewed(() => this.cache.clear());
  }

  async respond(request: Buffer): Promise<OcspAnswer> {
    let info: OcspRequestInfo;
    try {
      info = parseOcspRequest(request);
    } catch (e) {
      if (e instanceof OcspMalformedError) return errorAnswer('malformedRequest');
      throw e;
    }
    // A CertID under a known hash algorithm that names another issuer: not ours to answer.
    if (info.certIds.some((c) => c.hash !== undefined && !certIdMatchesIssuer(c, this.hashes))) return errorAnswer('unauthorized');
    try {
      if (info.certIds.length === 1 && info.nonce === undefined) return await this.cached(info.certIds[0]);
      return await this.fresh(info);
    } catch (e) {
      this.deps.log.error('OCSP response failed', { error: (e as Error).message });
      return errorAnswer('tryLater');
    }
  }

  private async lookup(c: CertIdRequest): Promise<SerialStatus | undefined> {
    if (c.hash === undefined) return undefined;
    return this.deps.certificates.status(serialHex(c.serialNumber));
  }

  private window(): { thisUpdate: Date; nextUpdate: Date } {
    const now = this.deps.clock.now().getTime();
    const thisUpdate = new Date(Math.floor(now / 1000) * 1000);
    return { thisUpdate, nextUpdate: new Date(thisUpdate.getTime() + this.deps.settings.validitySeconds * 1000) };
  }

  private async cached(c: CertIdRequest): Promise<OcspAnswer> {
    const status = await this.lookup(c);
    const statusKey = statusKeyOf(status);
    const key = c.raw.toString('latin1');
    const responder = this.deps.responders.current().label;
    const now = this.deps.clock.now().getTime();
    const hit = this.cache.get(key);
    const { validitySeconds, refreshAtFraction } = this.deps.settings;
    if (hit && hit.statusKey === statusKey && hit.responder === responder && now < hit.thisUpdate.getTime() + validitySeconds * 1000 * refreshAtFraction) {
      return { outcome: 'successful', body: hit.body, cache: hit, statuses: [certStatusOf(status).kind] };
    }
    const signKey = `${key}|${statusKey}`;
    let pending = this.signing.get(signKey);
    if (!pending) {
      pending = this.signOne(c, status, statusKey, responder).finally(() => this.signing.delete(signKey));
      this.signing.set(signKey, pending);
    }
    const entry = await pending;
    this.cache.delete(key);
    this.cache.set(key, entry);
    if (this.cache.size > this.deps.settings.cacheSize) this.cache.delete(this.cache.keys().next().value!);
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
