import { RootRenewalResult, RotationResult, renewRoot, rotateIssuer } from '../ca/rotation';
import type { Core } from '../core';
import type { QuorumGate, QuorumRequestView } from './gate';

/**
 * The CA ceremonies run under quorum (issue 17): a new issuing CA (rotation)
 * and any use of the root key (root renewal). With M <= 1 they run at once,
 * as before; otherwise they wait for M approvals and run in the process that
 * receives the M-th (the service or `hsmca quorum approve`).
 */
export function registerCaExecutors(gate: QuorumGate, core: Core): void {
  gate.register('ca.rotate', async (_op, ctx) => ({ record: { ...(await rotateIssuer(core, ctx.requestedBy)) } }));
  gate.register('ca.renew-root', async (_op, ctx) => ({ record: { ...(await renewRoot(core, ctx.requestedBy)) } }));
}

export type CeremonyOutcome<T> = { status: 'executed'; result: T } | { status: 'pending'; request: QuorumRequestView };

export async function rotateUnderQuorum(core: Core, by: string): Promise<CeremonyOutcome<RotationResult>> {
  const o = await core.quorum.requireQuorum('ca.rotate', {}, by);
  return o.status === 'pending' ? o : { status: 'executed', result: o.result.record as unknown as RotationResult };
}

export async function renewRootUnderQuorum(core: Core, by: string): Promise<CeremonyOutcome<RootRenewalResult>> {
  const o = await core.quorum.requireQuorum('ca.renew-root', {}, by);
  return o.status === 'pending' ? o : { status: 'executed', result: o.result.record as unknown as RootRenewalResult };
}
