import { CaError } from '../../errors';
import { RouteContext } from '../route';

/** The parts of a stored CRL that its HTTP answer needs. */
export interface ServableCrl {
  record: { der: Buffer; thisUpdate: Date; nextUpdate: Date };
  etag: string;
}

/** Answers a CRL from the stored copy, with validators (ETag, Last-Modified, Expires) and a short shared-cache lifetime. */
export function sendCrl({ req, res }: RouteContext, c: ServableCrl | undefined): void {
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
}
