import * as der from '../../asn1/der';
import type { Core } from '../../core';
import { CaError } from '../../errors';
import { Issuer, IssuerRegistry } from '../../ca/issuers';
import { renewRootUnderQuorum, rotateUnderQuorum } from '../../quorum/ca-operations';
import { sendJson } from '../errors';
import { ADMIN, PUBLIC, Route, RouteContext, principalOf } from '../route';
import { sendCrl } from './crl-response';

const pem = (d: Buffer) => der.pemEncode('CERTIFICATE', d);

function sendDer(res: RouteContext['res'], cert: Buffer): void {
  res.setHeader('Content-Type', 'application/pkix-cert');
  res.setHeader('Cache-Control', 'public, max-age=86400');
  res.end(cert);
}

/** `2.crt` → 2; anything else is an unknown path. */
function idOfFile(file: string, what: string): number {
  const m = /^([1-9][0-9]{0,8})\.crt$/.exec(file);
  if (!m) throw new CaError('notFound', 'notFound', `no ${what} "${file.slice(0, 40)}"`);
  return Number(m[1]);
}

function idOf(text: string, what: string): number {
  if (!/^[1-9][0-9]{0,8}$/.test(text)) throw new CaError('notFound', 'notFound', `no ${what} "${text.slice(0, 40)}"`);
  return Number(text);
}

function issuerOf(issuers: IssuerRegistry, id: number): Issuer {
  const i = issuers.byId(id);
  if (!i) throw new CaError('notFound', 'unknownIssuer', `no issuing CA with id ${id}`);
  return i;
}

/** An issuer as GET /api/v1/ca and /api/v1/ca/issuers list it: its summary, its certificate and its chain. */
function issuerJson(issuers: IssuerRegistry, i: Issuer) {
  return { ...issuers.describe(i), certificate: pem(i.identity.certificate), chain: [pem(i.identity.certificate), pem(i.root.certificate)] };
}

/**
 * The CA certificates: as JSON (PEM) for clients, and as DER at the caIssuers
 * URLs written into certificates; every issuer's certificate and CRLs at
 * stable URLs of its own; the rotation and root renewal ceremonies (issue 17).
 * `/ca/issuer.crt`, `/ca/root.crt` and `/api/v1/ca`'s first three fields are
 * the active issuer's chain, read at each request.
 */
export function caRoutes(core: Core): Route[] {
  const issuers = core.issuers;
  const actor = (ctx: RouteContext) => `admin:${principalOf(ctx).name}`;
  return [
    {
      method: 'GET',
      path: '/api/v1/ca',
      access: PUBLIC,
      handle: ({ res }) => {
        const a = issuers.active();
        const issuer = pem(a.identity.certificate);
        const root = pem(a.root.certificate);
        sendJson(res, 200, {
          issuer,
          root,
          chain: [issuer, root],
          issuerId: a.id,
          rootId: a.rootId,
          previousIssuers: issuers
            .all()
            .filter((i) => i.id !== a.id)
            .map((i) => issuerJson(issuers, i)),
          roots: issuers.roots().map((r) => ({ id: r.id, status: r.status, certificate: pem(r.identity.certificate) })),
          crossCertificates: issuers.crosses().map((c) => ({
            id: c.id,
            subjectRootId: c.subjectRootId,
            issuerRootId: c.issuerRootId,
            certificate: pem(c.der),
          })),
        });
      },
    },
    {
      method: 'GET',
      path: '/api/v1/ca/issuers',
      access: PUBLIC,
      handle: ({ res }) => sendJson(res, 200, { items: issuers.all().map((i) => issuerJson(issuers, i)) }),
    },
    { method: 'GET', path: '/ca/issuer.crt', access: PUBLIC, handle: ({ res }) => sendDer(res, issuers.active().identity.certificate) },
    { method: 'GET', path: '/ca/root.crt', access: PUBLIC, handle: ({ res }) => sendDer(res, issuers.active().root.certificate) },
    {
      method: 'GET',
      path: '/ca/issuer/:file',
      access: PUBLIC,
      handle: ({ res, params }) => sendDer(res, issuerOf(issuers, idOfFile(params.file, 'issuing CA certificate')).identity.certificate),
    },
    {
      method: 'GET',
      path: '/ca/root/:file',
      access: PUBLIC,
      handle: ({ res, params }) => {
        const id = idOfFile(params.file, 'root certificate');
        const r = issuers.root(id);
        if (!r) throw new CaError('notFound', 'unknownRoot', `no root CA with id ${id}`);
        sendDer(res, r.identity.certificate);
      },
    },
    {
      method: 'GET',
      path: '/ca/cross/:file',
      access: PUBLIC,
      handle: ({ res, params }) => {
        const id = idOfFile(params.file, 'cross-certificate');
        const c = issuers.crosses().find((x) => x.id === id);
        if (!c) throw new CaError('notFound', 'unknownCrossCertificate', `no cross-certificate with id ${id}`);
        sendDer(res, c.der);
      },
    },
    { method: 'GET', path: '/crl/issuer/:id', access: PUBLIC, handle: (ctx) => sendCrl(ctx, issuerOf(issuers, idOf(ctx.params.id, 'issuer')).crls.current('full')) },
    { method: 'GET', path: '/crl/issuer/:id/delta', access: PUBLIC, handle: (ctx) => sendCrl(ctx, issuerOf(issuers, idOf(ctx.params.id, 'issuer')).crls.current('delta')) },
    {
      method: 'POST',
      path: '/api/v1/ca/rotate',
      access: ADMIN,
      handle: async (ctx) => {
        // 201 with the new issuer, or 202 with the quorum request it waits on (HSMCA_QUORUM > 1)
        const o = await rotateUnderQuorum(core, actor(ctx));
        if (o.status === 'pending') sendJson(ctx.res, 202, { quorumRequest: o.request });
        else sendJson(ctx.res, 201, o.result);
      },
    },
    {
      method: 'POST',
      path: '/api/v1/ca/renew-root',
      access: ADMIN,
      handle: async (ctx) => {
        const o = await renewRootUnderQuorum(core, actor(ctx));
        if (o.status === 'pending') sendJson(ctx.res, 202, { quorumRequest: o.request });
        else sendJson(ctx.res, 201, o.result);
      },
    },
  ];
}
