import type { Request, Response, RequestHandler } from 'express';
import { Metrics } from '../../metrics';
import { ocspErrorResponse } from '../../ocsp/response';
import { OcspAnswer, OcspSource } from '../../ocsp/responder';

/** An OCSP request is a few hundred bytes; anything past this is not one. */
const MAX_OCSP_REQUEST = 16 * 1024;
const MALFORMED = ocspErrorResponse('malformedRequest');

function send(req: Request, res: Response, a: OcspAnswer, metrics: Metrics, cacheable: boolean): void {
  metrics.ocspResponses.inc({ outcome: a.outcome });
  for (const s of a.statuses ?? []) metrics.ocspResponses.inc({ outcome: a.outcome, status: s });
  res.setHeader('Content-Type', 'application/ocsp-response');
  if (cacheable && a.cache) {
    // RFC 5019 section 6: caches may keep the response until nextUpdate.
    const now = Date.now();
    const maxAge = Math.max(0, Math.floor((a.cache.nextUpdate.getTime() - now) / 1000));
    res.setHeader('Cache-Control', `max-age=${maxAge}, public, no-transform, must-revalidate`);
    res.setHeader('Last-Modified', a.cache.thisUpdate.toUTCString());
    res.setHeader('Expires', a.cache.nextUpdate.toUTCString());
    res.setHeader('ETag', a.cache.etag);
    const inm = req.headers['if-none-match'];
    const ims = req.headers['if-modified-since'];
    const notModified =
      inm !== undefined
        ? inm.split(',').some((t) => t.trim() === a.cache!.etag || t.trim() === '*')
        : ims !== undefined && !isNaN(Date.parse(ims)) && Date.parse(ims) >= a.cache.thisUpdate.getTime();
    if (notModified) {
      res.status(304).end();
      return;
    }
  } else {
    res.setHeader('Cache-Control', 'no-cache, no-store');
  }
  res.status(200).end(a.body);
}

/**
 * RFC 6960 appendix A over HTTP: POST with the DER request as the body, and GET
 * with the base64 (URL-encoded or not) request in the path. Bad bytes get an
 * OCSP malformedRequest answer, never an HTML page or a 500.
 */
export function ocspHandler(source: OcspSource, metrics: Metrics): RequestHandler {
  return (req, res, next) => {
    if (req.path !== '/ocsp' && !req.path.startsWith('/ocsp/')) return next();
    if (req.method === 'POST' && req.path === '/ocsp') {
      const chunks: Buffer[] = [];
      let size = 0;
      let tooBig = false;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_OCSP_REQUEST) tooBig = true;
        else chunks.push(c);
      });
      req.on('error', () => res.destroy());
      req.on('end', () => {
        if (tooBig) {
          metrics.ocspResponses.inc({ outcome: 'malformedRequest' });
          res.setHeader('Content-Type', 'application/ocsp-response');
          res.status(200).end(MALFORMED);
          return;
        }
        source.respond(Buffer.concat(chunks)).then((a) => send(req, res, a, metrics, false), next);
      });
      return;
    }
    if (req.method === 'GET' || req.method === 'HEAD') {
      // The raw path: base64 may hold '/', '+' and '=' in plain or %-encoded form.
      const rawPath = (req.originalUrl ?? req.url).split('?')[0];
      const encoded = rawPath.slice(rawPath.indexOf('/ocsp/') + '/ocsp/'.length);
      let der: Buffer;
      try {
        const b64 = decodeURIComponent(encoded).replace(/\s/g, '+');
        if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(b64) || b64.length === 0 || b64.length > (MAX_OCSP_REQUEST * 4) / 3) throw new Error('not base64');
        der = Buffer.from(b64.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
      } catch {
        der = Buffer.alloc(0);
      }
      source.respond(der).then((a) => send(req, res, a, metrics, true), next);
      return;
    }
    return next();
  };
}
