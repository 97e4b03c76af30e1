import { CrlService } from '../../ca/crl-service';
import { sendJson } from '../errors';
import { ADMIN, PUBLIC, Route, RouteContext } from '../route';
import { sendCrl } from './crl-response';
import { crlShardRoutes } from './crl-shards';

/** GET /crl and GET /crl/delta (the active issuer's) from the stored copy, with validators; the shard CRLs when partitioned; POST /api/v1/crl/refresh for admins (every issuer's). */
export function crlRoutes(crls: CrlService, everyIssuer: () => CrlService[] = () => [crls]): Route[] {
  const serve = (kind: 'full' | 'delta') => (ctx: RouteContext) => sendCrl(ctx, crls.current(kind));
  return [
    { method: 'GET', path: '/crl', access: PUBLIC, handle: serve('full') },
    { method: 'GET', path: '/crl/delta', access: PUBLIC, handle: serve('delta') },
    ...crlShardRoutes(crls.shards),
    {
      method: 'POST',
      path: '/api/v1/crl/refresh',
      access: ADMIN,
      async handle({ res }) {
        // the active issuer's answers; the previous issuers' CRLs are made afresh too (issue 17)
        await Promise.all(everyIssuer().map((c) => c.refresh({ allShards: true })));
        const rec = crls.current('full')!.record;
        sendJson(res, 200, { crlNumber: Number(rec.crlNumber), thisUpdate: rec.thisUpdate.toISOString(), nextUpdate: rec.nextUpdate.toISOString(), entries: rec.entries });
      },
    },
  ];
}
