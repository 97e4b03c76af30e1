import type { CrlShards } from '../../ca/crl-shards';
import { CaError } from '../../errors';
import { sendJson } from '../errors';
import { PUBLIC, Route } from '../route';
import { sendCrl } from './crl-response';

/**
 * Partitioned CRLs (HSMCA_CRL_SHARDS > 1): GET /crl/{shard}, the CRL that the
 * certificates of a shard name in their cRLDistributionPoints, and GET
 * /crl/shards.json, every shard's URL as the JSON array CCADB asks of CAs
 * that partition their CRLs ("JSON Array of Partitioned CRLs"). Unpartitioned,
 * there are no such routes: both answer 404 like any unknown path.
 */
export function crlShardRoutes(shards: CrlShards | undefined): Route[] {
  if (!shards) return [];
  const unknown = (what: string) => new CaError('notFound', 'unknownCrlShard', `no CRL shard "${what.slice(0, 40)}": shards are numbered 0 to ${shards.plan.count - 1}`);
  return [
    {
      method: 'GET',
      path: '/crl/shards.json',
      access: PUBLIC,
      handle({ res }) {
        res.setHeader('Cache-Control', 'public, max-age=300');
        sendJson(res, 200, shards.plan.urls());
      },
    },
    {
      method: 'GET',
      path: '/crl/:shard',
      access: PUBLIC,
      handle(ctx) {
        const shard = shards.plan.parse(ctx.params.shard);
        if (shard === undefined) throw unknown(ctx.params.shard);
        sendCrl(ctx, shards.current(shard));
      },
    },
  ];
}
