import * as der from '../../asn1/der';
import { AuthenticatedToken } from '../../auth/tokens';
import { normalizeSerial } from '../../ca/certificate';
import { IssuanceService } from '../../ca/issuance';
import { REASON_NAMES, RevocationService, RevokeRequest } from '../../ca/revocation';
import { CaError } from '../../errors';
import type { ParsedUrlQuery } from 'node:querystring';
import { CertificateRecord, CertificateStore } from '../../storage/certificate-store';
import { decodeCursor, encodeCursor, parseLimit } from '../cursor';
import { sendJson } from '../errors';
import { ANY_ROLE, Route, principalOf } from '../route';

export interface CertificateRoutesDeps {
  issuance: IssuanceService;
  revocation: RevocationService;
  store: CertificateStore;
  /** issuance rate limits, taken after authentication and before the body is read */
  issueLimit: (ip: string | undefined, principal: AuthenticatedToken | undefined) => void;
  /** whether a requester may revoke what it was issued (token scope) */
  requesterMayRevoke?: (scope: unknown) => boolean;
}

/** The API form of a certificate record (contract section 3). */
export function recordJson(r: CertificateRecord) {
  return {
    serialNumber: r.serial,
    status: r.revokedAt ? 'revoked' : 'good',
    profile: r.profile,
    subject: r.subject,
    sans: r.sans,
    notBefore: r.notBefore.toISOString(),
    notAfter: r.notAfter.toISOString(),
    revokedAt: r.revokedAt ? r.revokedAt.toISOString() : null,
    revocationReason: r.revocationReason === null ? null : (REASON_NAMES[r.revocationReason] ?? String(r.revocationReason)),
    invalidityDate: r.invalidityDate ? r.invalidityDate.toISOString() : null,
    certificate: der.pemEncode('CERTIFICATE', r.der),
  };
}

const MAX_LIMIT = 500;

/**
 * The listing's search filters (the console's search box): `q` is a serial in
 * any accepted form, matched exactly, or else text found in the subject or
 * the SANs; `profile` an exact profile name.
 */
/**
 * The certificate named by a serial in a path, if the principal may see it:
 * a requester learns nothing of certificates it was not issued (404 as for
 * an unknown serial).
 */
export async function visibleCertificate(store: CertificateStore, p: AuthenticatedToken, serialParam: string): Promise<CertificateRecord> {
  const serial = normalizeSerial(serialParam);
  if (!serial) throw new CaError('badRequest', 'invalidSerial', 'the serial number must be hex (upper or lower case, colons allowed)');
  const rec = await store.get(serial);
  if (!rec || (p.role !== 'admin' && rec.requesterId !== p.id)) {
    throw new CaError('notFound', 'certificateNotFound', `no certificate with serial ${serial}`);
  }
  return rec;
}

function searchFilters(query: ParsedUrlQuery): { profile?: string; q?: string } {
  const one = (name: string, max: number): string | undefined => {
    const v = query[name];
    if (v === undefined || v === '') return undefined;
    if (typeof v !== 'string' || v.length > max) throw new CaError('badRequest', `invalid${name[0].toUpperCase()}${name.slice(1)}`, `${name} must be given once, at most ${max} characters`);
    return v;
  };
  const q = one('q', 200)?.trim();
  return { profile: one('profile', 64), q: q || undefined };
}

/** Contract section 3: issue, list, read and revoke certificates. */
export function certificateRoutes(d: CertificateRoutesDeps): Route[] {
  return [
    {
      method: 'POST',
      path: '/api/v1/certificates',
      access: ANY_ROLE,
      admit: d.issueLimit,
      body: 'json',
      async handle(ctx) {
        const p = principalOf(ctx);
        sendJson(ctx.res, 201, await d.issuance.issue(ctx.body, { tokenId: p.id, name: p.name, role: p.role, scope: p.scope }));
      },
    },
    {
      method: 'GET',
      path: '/api/v1/certificates',
      access: ANY_ROLE,
      async handle(ctx) {
        const p = principalOf(ctx);
        const status = ctx.query.status;
        if (status !== undefined && status !== '' && status !== 'good' && status !== 'revoked') {
          throw new CaError('badRequest', 'invalidStatus', 'status must be "good" or "revoked"');
        }
        const limit = parseLimit(ctx.query.limit, MAX_LIMIT);
        const afterId = decodeCursor('c1', ctx.query.cursor);
        const { profile, q } = searchFilters(ctx.query);
        const requesterId = p.role === 'admin' ? undefined : p.id;
        // a serial is looked up by its unique index: one certificate, whatever the table's size
        const serial = q !== undefined && afterId === undefined ? normalizeSerial(q) : undefined;
        if (serial) {
          const rec = await d.store.get(serial);
          const visible = rec && (requesterId === undefined || rec.requesterId === requesterId);
          const matches = visible && (!profile || rec.profile === profile) && (!status || (status === 'revoked') === !!rec.revokedAt);
          if (matches) return sendJson(ctx.res, 200, { items: [recordJson(rec)], nextCursor: null });
        }
        const page = await d.store.list({ status: status ? (status as 'good' | 'revoked') : undefined, requesterId, limit, afterId, profile, contains: q });
        sendJson(ctx.res, 200, { items: page.items.map(recordJson), nextCursor: page.more && page.lastId !== undefined ? encodeCursor('c1', page.lastId) : null });
      },
    },
    {
      method: 'GET',
      path: '/api/v1/certificates/:serial',
      access: ANY_ROLE,
      async handle(ctx) {
        sendJson(ctx.res, 200, recordJson(await visibleCertificate(d.store, principalOf(ctx), ctx.params.serial)));
      },
    },
    {
      method: 'POST',
      path: '/api/v1/certificates/:serial/revoke',
      access: ANY_ROLE,
      body: 'json',
      async handle(ctx) {
        const p = principalOf(ctx);
        const body = ctx.body ?? {};
        if (typeof body !== 'object' || Array.isArray(body)) throw new CaError('badRequest', 'malformedJson', 'the body must be a JSON object');
        let canRevoke: ((r: CertificateRecord) => boolean) | undefined;
        if (p.role !== 'admin') {
          if (!d.requesterMayRevoke?.(p.scope)) throw new CaError('forbidden', 'forbidden', 'revocation needs the admin role');
          canRevoke = (rec) => rec.requesterId === p.id;
        }
        sendJson(ctx.res, 200, recordJson(await d.revocation.revoke(ctx.params.serial, body as RevokeRequest, `${p.role}:${p.name}`, canRevoke)));
      },
    },
  ];
}
