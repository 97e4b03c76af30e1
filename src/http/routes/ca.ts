import { Router } from 'express';
import * as der from '../../asn1/der';
import { CaHierarchy } from '../../ca/hierarchy';

export function caRoutes(h: CaHierarchy): Router {
  const r = Router();
  const issuer = der.pemEncode('CERTIFICATE', h.issuing.certificate);
  const root = der.pemEncode('CERTIFICATE', h.root.certificate);
  r.get('/api/v1/ca', (_req, res) => {
    res.json({ issuer, root, chain: [issuer, root] });
  });
  const derRoute = (cert: Buffer) => (_req: unknown, res: import('express').Response) => {
    res.setHeader('Content-Type', 'application/pkix-cert');
    res.setHeader('Cache-Control', 'public, max-age=86400');
    res.end(cert);
  };
  r.get('/ca/issuer.crt', derRoute(h.issuing.certificate));
  r.get('/ca/root.crt', derRoute(h.root.certificate));
  return r;
}
