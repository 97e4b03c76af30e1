import type { ServerResponse } from 'node:http';
import type { AcmeReply } from '../../acme/accounts';
import type { AcmeRequest } from '../../acme/acme-requests';
import type { AcmeServer } from '../../acme/acme-server';
import { AcmeProblem, problemFromCaError, sendProblem } from '../../acme/problem';
import { CaError } from '../../errors';
import type { Logger } from '../../log';
import { BODY_TOO_LARGE, readBody } from '../body';
import { sendJson, unexpectedError } from '../errors';
import { PUBLIC, Route, RouteContext } from '../route';

type Keys = 'kid' | 'jwk' | 'either';

/**
 * The ACME server's routes (RFC 8555 7.1). Every POST carries a JWS (checked
 * by AcmeRequests), every answer a fresh Replay-Nonce and a Link to the
 * directory, every error a problem document (application/problem+json).
 */
export function acmeRoutes(acme: AcmeServer, opts: { log: Logger; maxBodyBytes: number }): Route[] {
  const { urls } = acme;

  const send = (res: ServerResponse, reply: AcmeReply) => {
    for (const [k, v] of Object.entries(reply.headers ?? {})) res.setHeader(k, v);
    if (reply.raw) {
      res.statusCode = reply.status;
      res.setHeader('Content-Type', reply.raw.type);
      res.setHeader('Content-Length', reply.raw.data.length);
      res.end(reply.raw.data);
    } else if (reply.body === undefined) {
      res.statusCode = reply.status;
      res.setHeader('Content-Length', 0);
      res.end();
    } else sendJson(res, reply.status, reply.body);
  };

  const post = (path: string, keys: Keys, handler: (r: AcmeRequest, ctx: RouteContext) => Promise<AcmeReply>): Route => ({
    method: 'POST',
    path,
    access: PUBLIC,
    async handle(ctx) {
      const { req, res } = ctx;
      res.setHeader('Cache-Control', 'no-store');
      res.setHeader('Link', `<${urls.directory}>;rel="index"`);
      try {
        // RFC 8555 6.5: every response to a POST carries a nonce, errors included (a badNonce is retried with it)
        res.setHeader('Replay-Nonce', await acme.nonces.issue());
        const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
        if (type !== 'application/jose+json') throw new AcmeProblem('malformed', 'ACME requests are sent as application/jose+json (RFC 8555 6.2)', { status: 415 });
        let body: Buffer;
        try {
          body = await readBody(req, opts.maxBodyBytes);
        } catch (e) {
          if (e === BODY_TOO_LARGE) throw new AcmeProblem('malformed', 'the request body is too large', { status: 413 });
          throw e;
        }
        const path = (req.url ?? '/').split('?')[0];
        const r = await acme.requests.verify(path, body, keys);
        const reply = await handler(r, ctx);
        const link = reply.headers?.Link;
        if (link) res.setHeader('Link', [`<${urls.directory}>;rel="index"`, link]);
        send(res, { ...reply, headers: Object.fromEntries(Object.entries(reply.headers ?? {}).filter(([k]) => k !== 'Link')) });
      } catch (e) {
        if (typeof e === 'symbol') throw e; // the client went away
        const p = e instanceof AcmeProblem ? e : e instanceof CaError ? problemFromCaError(e) : (unexpectedError(opts.log, 'POST', path, e), new AcmeProblem('serverInternal', 'an internal error occurred; it has been logged'));
        sendProblem(res, p);
      }
    },
  });

  return [
    {
      method: 'GET',
      path: '/acme/directory',
      access: PUBLIC,
      handle: (ctx) => sendJson(ctx.res, 200, acme.directory()),
    },
    {
      // RFC 8555 7.2: HEAD answers 200, GET 204, both with a fresh nonce and no caching
      method: 'GET',
      path: '/acme/new-nonce',
      access: PUBLIC,
      async handle(ctx) {
        const { res } = ctx;
        res.setHeader('Cache-Control', 'no-store');
        res.setHeader('Link', `<${urls.directory}>;rel="index"`);
        try {
          res.setHeader('Replay-Nonce', await acme.nonces.issue());
        } catch (e) {
          return sendProblem(res, e instanceof CaError ? problemFromCaError(e) : new AcmeProblem('serverInternal', 'no nonce could be made'));
        }
        res.statusCode = ctx.req.method === 'HEAD' ? 200 : 204;
        res.end();
      },
    },
    {
      // RFC 9773: renewal information is fetched with a plain GET, no JWS
      method: 'GET',
      path: '/acme/renewal-info/:id',
      access: PUBLIC,
      async handle(ctx) {
        ctx.res.setHeader('Link', `<${urls.directory}>;rel="index"`);
        try {
          send(ctx.res, await acme.renewalInfo(ctx.params.id));
        } catch (e) {
          sendProblem(ctx.res, e instanceof AcmeProblem ? e : e instanceof CaError ? problemFromCaError(e) : (unexpectedError(opts.log, 'GET', '/acme/renewal-info', e), new AcmeProblem('serverInternal', 'an internal error occurred; it has been logged')));
        }
      },
    },
    post('/acme/new-account', 'jwk', (r, ctx) => acme.accounts.newAccount(r, ctx.ip)),
    post('/acme/account/:id', 'kid', (r, ctx) => acme.accounts.update(r, ctx.params.id)),
    post('/acme/account/:id/orders', 'kid', (r, ctx) => acme.accounts.orders(r, ctx.params.id)),
    post('/acme/new-order', 'kid', (r) => acme.orders.newOrder(r)),
    post('/acme/order/:id', 'kid', (r, ctx) => acme.orders.order(r, ctx.params.id)),
    post('/acme/order/:id/finalize', 'kid', (r, ctx) => acme.certificates.finalize(r, ctx.params.id, ctx.ip)),
    post('/acme/authz/:id', 'kid', (r, ctx) => acme.orders.authz(r, ctx.params.id)),
    post('/acme/chall/:id', 'kid', (r, ctx) => acme.orders.challenge(r, ctx.params.id)),
    post('/acme/cert/:id', 'kid', (r, ctx) => acme.certificates.download(r, ctx.params.id)),
    post('/acme/revoke-cert', 'either', (r) => acme.certificates.revoke(r)),
    post('/acme/key-change', 'kid', (r) => acme.changeKey(r)),
  ];
}
