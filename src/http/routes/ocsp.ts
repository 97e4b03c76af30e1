import type { IncomingMessage, ServerResponse } from 'node:http';
import { Metrics } from '../../metrics';
import { BODY_TOO_LARGE, readBody } from '../body';
import { SECURITY_HEADERS } from '../headers';
import { ocspErrorResponse } from '../../ocsp/response';
import { OcspAnswer, OcspSource } from '../../ocsp/responder';
import { PUBLIC, Route } from '../route';

/** An OCSP request is a few hundred bytes; anything past this is not one. */
const MAX_OCSP_REQUEST = 16 * 1024;
const MALFORMED = ocspErrorResponse('malformedRequest');
const TRY_LATER = ocspErrorResponse('tryLater');

/**
 * The same security headers as the rest of the service, written without a
 * framework; not Cross-Origin-Resource-Policy, since OCSP answers are for any
 * origin's client.
 */
const BASE_HEADERS: [string, string][] = [
  ['Content-Type', 'application/ocsp-response'],
  ...SECURITY_HEADERS.filter(([name]) => name !== 'Cross-Origin-Resource-Policy'),
];

/** BASE_HEADERS as the flat [name, value, ...] list writeHead takes: no per-header setHeader calls, one header write. */
const BASE_FLAT: string[] = BASE_HEADERS.flat();
const NO_STORE_FLAT: string[] = [...BASE_FLAT, 'Cache-Control', 'no-cache, no-store'];

/**
 * Writes the answer with one writeHead (the status and every header at
 * once, from prepared lists) and one end(): the cheapest a node:http
 * response can be, which matters most to clients that open a connection per
 * request (docs/performance.md, OCSP per connection).
 */
function send(req: IncomingMessage, res: ServerResponse, a: OcspAnswer, metrics: Metrics, cacheable: boolean): void {
  metrics.ocspResponses.inc({ outcome: a.outcome });
  if (cacheable && a.cache) {
    // RFC 5019 section 6: caches may keep the response until nextUpdate.
    const maxAge = Math.max(0, Math.floor((a.cache.nextUpdate.getTime() - Date.now()) / 1000));
    const headers = [
      ...BASE_FLAT,
      'Cache-Control', `max-age=${maxAge}, public, no-transform, must-revalidate`,
      'Last-Modified', a.cache.thisUpdate.toUTCString(),
      'Expires', a.cache.nextUpdate.toUTCString(),
      'ETag', a.cache.etag,
    ];
    const inm = req.headers['if-none-match'];
    const ims = req.headers['if-modified-since'];
    const notModified =
      inm !== undefined
        ? inm.split(',').some((t) => t.trim() === a.cache!.etag || t.trim() === '*')
        : ims !== undefined && !isNaN(Date.parse(ims)) && Date.parse(ims) >= a.cache.thisUpdate.getTime();
    if (notModified) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    headers.push('Content-Length', String(a.body.length));
    res.writeHead(200, headers);
  } else {
    res.writeHead(200, [...NO_STORE_FLAT, 'Content-Length', String(a.body.length)]);
  }
  res.end(req.method === 'HEAD' ? undefined : a.body);
}

/** Decodes the base64 request of a GET path; an empty buffer when it is not base64. */
function decodeGetPath(url: string): Buffer {
  const encoded = url.split('?')[0].slice('/ocsp/'.length);
  try {
    const b64 = decodeURIComponent(encoded).replace(/\s/g, '+');
    if (b64.length === 0 || b64.length > (MAX_OCSP_REQUEST * 4) / 3 || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(b64)) return Buffer.alloc(0);
    return Buffer.from(b64.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  } catch {
    return Buffer.alloc(0);
  }
}

/**
 * RFC 6960 appendix A over HTTP: POST with the DER request as the body, and GET
 * (and HEAD) with the base64 (URL-encoded or not) request in the path. The
 * busiest routes of the service: they write their own headers, are counted
 * in the OCSP metrics rather than the HTTP ones, and read their body
 * themselves. Bad bytes get an OCSP malformedRequest answer, never an HTML
 * page or a 500.
 */
export function ocspRoutes(source: OcspSource, metrics: Metrics): Route[] {
  const answer = (req: IncomingMessage, res: ServerResponse, der: Buffer, cacheable: boolean) =>
    source.respond(der).then(
      (a) => send(req, res, a, metrics, cacheable),
      () => send(req, res, { outcome: 'tryLater', body: TRY_LATER }, metrics, false),
    );
  const common = { access: PUBLIC, ownHeaders: true, metered: false } as const;
  return [
    {
      ...common,
      method: 'POST',
      path: '/ocsp',
      handle: ({ req, res }) =>
        // Past the limit it is not an OCSP request: malformedRequest, without reading on.
        readBody(req, MAX_OCSP_REQUEST).then(
          (der) => answer(req, res, der, false),
          (e) => {
            if (e === BODY_TOO_LARGE) send(req, res, { outcome: 'malformedRequest', body: MALFORMED }, metrics, false);
            else res.destroy();
          },
        ),
    },
    { ...common, method: 'GET', path: '/ocsp/*', handle: ({ req, res }) => answer(req, res, decodeGetPath(req.url ?? ''), true) },
  ];
}
