import { CrlService } from '../../ca/crl-service';
import { CaError } from '../../errors';
import { sendJson } from '../errors';
import { ADMIN, PUBLIC, Route, RouteContext } from '../route';

/** GET /crl and GET /crl/delta from the stored copy, with validators; POST /api/v1/crl/refresh for admins. */
export function crlRoutes(crls: CrlService): Route[] {
  const serve = (kind: 'full' | 'delta') => ({ req, res }: RouteContext) => {
    const c = crls.current(kind);
    if (!c) throw new CaError('unavailable', 'crlUnavailable', 'no CRL has been generated yet; try again shortly');
    res.setHeader('Content-Type', 'application/pkix-crl');
    res.setHeader('ETag', c.etag);
    res.setHeader('Last-Modified', c.record.thisUpdate.toUTCString());
    res.setHeader('Expires', c.record.nextUpdate.toUTCString());
    const maxAge = Math.max(0, Math.min(60, Math.floor((c.record.nextUpdate.getTime() - Date.now()) / 1000)));
    res.setHeader('Cache-Control', `public, max-age=${maxAge}, no-transform`);
    const inm = req.headers['if-none-match'];
    res.statusCode = inm && inm.split(',').some((t) => t.trim() === c.etag) ? 304 : 200;
    res.end(res.statusCode === 304 ? undefined : c.record.der);
  };
  return [
    { method: 'GET', path: '/crl', access: PUBLIC, handle: serve('full') },
    { method: 'GET', path: '/crl/delta', access: PUBLIC, handle: serve('delta') },
    {
      method: 'POST',
      path: '/api/v1/crl/refresh',
      access: ADMIN,
      async handle({ res }) {
        const rec = await crls.refresh();
        sendJson(res, 200, { crlNumber: Number(rec.crlNumber), thisUpdate: rec.thisUpdate.toISOString(), nextUpdate: rec.nextUpdate.toISOString(), entries: rec.entries });
      },
    },
  ];
}
