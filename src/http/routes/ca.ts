import * as der from '../../asn1/der';
import { CaHierarchy } from '../../ca/hierarchy';
import { sendJson } from '../errors';
import { PUBLIC, Route } from '../route';

/** The CA certificates: as JSON (PEM) for clients, and as DER at the caIssuers URLs written into certificates. */
export function caRoutes(h: CaHierarchy): Route[] {
  const issuer = der.pemEncode('CERTIFICATE', h.issuing.certificate);
  const root = der.pemEncode('CERTIFICATE', h.root.certificate);
  const derRoute = (path: string, cert: Buffer): Route => ({
    method: 'GET',
    path,
    access: PUBLIC,
    handle({ res }) {
      res.setHeader('Content-Type', 'application/pkix-cert');
      res.setHeader('Cache-Control', 'public, max-age=86400');
      res.end(cert);
    },
  });
  return [
    { method: 'GET', path: '/api/v1/ca', access: PUBLIC, handle: ({ res }) => sendJson(res, 200, { issuer, root, chain: [issuer, root] }) },
    derRoute('/ca/issuer.crt', h.issuing.certificate),
    derRoute('/ca/root.crt', h.root.certificate),
  ];
}
