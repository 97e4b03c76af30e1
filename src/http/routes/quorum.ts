import { CaError } from '../../errors';
import type { QuorumGate } from '../../quorum/gate';
import { sendJson } from '../errors';
import { ADMIN, Route, principalOf } from '../route';

/**
 * The quorum's requests for admins and approvers: list, read (with the exact
 * bytes to sign), approve with a signature made by a registered approver key.
 */
export function quorumRoutes(gate: QuorumGate): Route[] {
  return [
    {
      method: 'GET',
      path: '/api/v1/quorum/requests',
      access: ADMIN,
      async handle({ res, query }) {
        const state = typeof query.state === 'string' && query.state !== '' ? query.state : undefined;
        let limit = 100;
        if (query.limit !== undefined) {
          limit = Number(query.limit);
          if (typeof query.limit !== 'string' || !/^\d{1,3}$/.test(query.limit) || limit < 1 || limit > 500) throw new CaError('badRequest', 'invalidLimit', 'limit must be a whole number from 1 to 500');
        }
        sendJson(res, 200, { items: await gate.list({ state, limit }), threshold: await gate.threshold() });
      },
    },
    {
      method: 'GET',
      path: '/api/v1/quorum/requests/:id',
      access: ADMIN,
      handle: async ({ res, params }) => sendJson(res, 200, await gate.get(params.id)),
    },
    {
      method: 'POST',
      path: '/api/v1/quorum/requests/:id/approve',
      access: ADMIN,
      body: 'json',
      async handle(ctx) {
        const b = ctx.body as Record<string, unknown> | undefined;
        if (!b || typeof b !== 'object' || Array.isArray(b)) throw new CaError('badRequest', 'malformedJson', 'the body must be a JSON object');
        if (typeof b.signature !== 'string' || !/^[A-Za-z0-9+/_-]{16,1024}={0,2}$/.test(b.signature)) {
          throw new CaError('badRequest', 'invalidSignature', 'signature must be the base64 signature over the request\'s signingInput');
        }
        if (b.approver !== undefined && (typeof b.approver !== 'string' || b.approver.length > 128)) throw new CaError('badRequest', 'invalidApprover', 'approver must be an approver name');
        const signature = Buffer.from(b.signature.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
        const out = await gate.approve(ctx.params.id, signature, { approver: b.approver as string | undefined, by: `admin:${principalOf(ctx).name}` });
        sendJson(ctx.res, 200, { request: out.request, executed: out.executed ? { ...(out.executed.record ?? {}), ...(out.executed.reveal ?? {}) } : null });
      },
    },
    {
      method: 'GET',
      path: '/api/v1/quorum/approvers',
      access: ADMIN,
      async handle({ res }) {
        const items = (await gate.listApprovers()).map((a) => ({ id: a.id, name: a.name, algorithm: a.algorithm, fingerprint: a.fingerprint, createdAt: a.createdAt.toISOString() }));
        sendJson(res, 200, { items, threshold: await gate.threshold() });
      },
    },
  ];
}
