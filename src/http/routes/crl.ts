import { Router, Request, Response } from 'express';
import { CrlService } from '../../ca/crl-service';
import { CaError } from '../../errors';
import { RequestHandler } from 'express';

/** GET /crl and GET /crl/delta from the stored copy, with validators; POST /api/v1/crl/refresh for admins. */
export function crlRoutes(crls: CrlService, adminOnly: RequestHandler): Router {
  const r = Router();
  const serve = (kind: 'full' | 'delta') => (req: Request, res: Response) => {
    const c = crls.current(kind);
    if (!c) throw new CaError('unavailable', 'crlUnavailable', 'no CRL has been generated yet; try again shortly');
    res.setHeader('Content-Type', 'application/pkix-crl');
    res.setHeader('ETag', c.etag);
    res.setHeader('Last-Modified', c.record.thisUpdate.toUTCString());
    res.setHeader('Expires', c.record.nextUpdate.toUTCString());
    const maxAge = Math.max(0, Math.min(60, Math.floor((c.record.nextUpdate.getTime() - Date.now()) / 1000)));
    res.setHeader('Cache-Control', `public, max-age=${maxAge}, no-transform`);
    const inm = req.headers['if-none-match'];
    if (inm && inm.split(',').some((t) => t.trim() === c.etag)) {
      res.status(304).end();
      return;
    }
    res.status(200).end(c.record.der);
  };
  r.get('/crl', serve('full'));
  r.get('/crl/delta', serve('delta'));
  r.post('/api/v1/crl/refresh', adminOnly, async (_req, res) => {
    const rec = await crls.refresh();
    res.json({ crlNumber: Number(rec.crlNumber), thisUpdate: rec.thisUpdate.toISOString(), nextUpdate: rec.nextUpdate.toISOString(), entries: rec.entries });
  });
  return r;
}
