import type { AuditLog } from '../audit/audit-log';
import type { TokenService } from '../auth/tokens';
import type { Clock } from '../clock';
import type { Config } from '../config';
import type { Database } from '../storage/database';
import { QuorumGate } from './gate';
import { QuorumStore } from './quorum-store';
import { registerTokenExecutors } from './token-operations';

/** The gate with the executors every process can run (approvers, M, tokens); the backup executor is added where the HSM is open. */
export function openQuorumGate(config: Config, d: { db: Database; audit: AuditLog; clock: Clock; tokens: TokenService }): QuorumGate {
  const gate = new QuorumGate({ store: new QuorumStore(d.db), audit: d.audit, clock: d.clock, configuredThreshold: config.quorum, requestTtlSeconds: config.quorumRequestTtlSeconds });
  registerTokenExecutors(gate, d.tokens, d.clock);
  return gate;
}
