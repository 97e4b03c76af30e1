import { Router } from 'express';
import * as der from '../../asn1/der';
import { normalizeSerial } from '../../ca/certificate';
import { IssuanceService } from '../../ca/issuance';
import { REASON_NAMES, RevocationService } from '../../ca/revocation';
import { CaError } from '../../errors';
import { CertificateRecord, CertificateStore } from '../../storage/certificate-store';
import { principalOf } from '../auth';
import { decodeCursor, encodeCursor, parseLimit } from '../cursor';
import type { RequestHandler } from 'express';

export interface CertificateRoutesDeps {
  issuance: IssuanceService;
  revocation: RevocationService;
  store: CertificateStore;
  /** authentication middleware for admins and requesters */
  anyRole: RequestHandler;
  /** JSON body parser, placed after authentication */
  json: RequestHandler;
  /** issuance rate limits */
  issueLimit: RequestHandler;
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

export function certificateRoutes(d: CertificateRoutesDeps): Router {
  const r = Router();

  r.post('/api/v1/certificates', d.anyRole, d.issueLimit, d.json, async (req, res) => {
    const p = principalOf(req);
    const out = await d.issuance.issue(req.body, { tokenId: p.id, name: p.name, role: p.role, scope: p.scope });
    res.status(201).json(out);
  });

  r.get('/api/v1/certificates', d.anyRole, async (req, res) => {
    const p = principalOf(req);
    const status = req.query.status;
    if (status !== undefined && status !== '' && status !== 'good' && status !== 'revoked') {
      throw new CaError('badRequest', 'invalidStatus', 'status must be "good" or "revoked"');
    }
    const limit = parseLimit(req.query.limit, MAX_LIMIT);
    const page = await d.store.list({
      status: status ? (status as 'good' | 'revoked') : undefined,
      requesterId: p.role === 'admin' ? undefined : p.id,
      limit,
      afterId: decodeCursor('c1', req.query.cursor),
    });
    res.json({ items: page.items.map(recordJson), nextCursor: page.more && page.lastId !== undefined ? encodeCursor('c1', page.lastId) : null });
  });

  r.get('/api/v1/certificates/:serial', d.anyRole, async (req, res) => {
    const p = principalOf(req);
    const serial = normalizeSerial(String(req.params.serial));
    if (!serial) throw new CaError('badRequest', 'invalidSerial', 'the serial number must be hex (upper or lower case, colons allowed)');
    const rec = await d.store.get(serial);
    // A requester learns nothing of certificates it was not issued.
    if (!rec || (p.role !== 'admin' && rec.requesterId !== p.id)) {
      throw new CaError('notFound', 'certificateNotFound', `no certificate with serial ${serial}`);
    }
    res.json(recordJson(rec));
  });

  r.post('/api/v1/certificates/:serial/revoke', d.anyRole, d.json, async (req, res) => {
    const p = principalOf(req);
    const body = req.body ?? {};
    if (typeof body !== 'object' || Array.isArray(body)) throw new CaError('badRequest', 'malformedJson', 'the body must be a JSON object');
    let canRevoke: ((r: CertificateRecord) => boolean) | undefined;
    if (p.role !== 'admin') {
      if (!d.requesterMayRevoke?.(p.scope)) throw new CaError('forbidden', 'forbidden', 'revocation needs the admin role');
      canRevoke = (rec) => rec.requesterId === p.id;
    }
    const rec = await d.revocation.revoke(String(req.params.serial), body, `${p.role}:${p.name}`, canRevoke);
    res.json(recordJson(rec));
  });

  return r;
}
