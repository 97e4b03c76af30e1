import { systemClock } from '../clock';
import type { Core } from '../core';
import { NOTIFY_CHANNELS } from '../../migrations/011_cluster';
import { FixedLeadership, Leadership, PgLeaderElection } from './leader-election';
import { InstanceRegistry, newInstanceId } from './instance-registry';

export { NOTIFY_CHANNELS };
export type NotifyChannel = (typeof NOTIFY_CHANNELS)[keyof typeof NOTIFY_CHANNELS];

/**
 * This instance's place among several sharing one database (contract
 * section 8): who leads, the notifications of the others' writes, and its
 * row in cluster_instances.
 */
export interface Cluster {
  instanceId: string;
  leadership: Leadership;
  registry: InstanceRegistry;
  /** whether other instances may write to the same database (PostgreSQL): the background jobs then listen and poll */
  shared: boolean;
  /** a notification from any instance's write (migration 011's triggers); PostgreSQL only */
  on(channel: NotifyChannel, fn: (payload: string) => void): void;
  /** a new listening session: notifications may have been missed while there was none */
  onSession(fn: () => void): void;
  stop(): Promise<void>;
}

/**
 * PostgreSQL: leader election and LISTEN (leader-election.ts); a worker
 * started as a follower (HSMCA_WORKERS) listens but never leads, because it
 * may not make keys. SQLite: one host, one database file; the process leads
 * unless it is such a follower worker.
 */
export async function openCluster(core: Core, role: 'single' | 'leader' | 'follower' = 'single'): Promise<Cluster> {
  const instanceId = newInstanceId();
  const registry = new InstanceRegistry({ knex: core.db.knex, clock: core.clock, log: core.log }, instanceId);
  const handlers = new Map<string, ((payload: string) => void)[]>();
  const sessions: (() => void)[] = [];
  const base = {
    instanceId,
    registry,
    on: (channel: NotifyChannel, fn: (payload: string) => void) => void (handlers.get(channel) ?? handlers.set(channel, []).get(channel)!).push(fn),
    onSession: (fn: () => void) => void sessions.push(fn),
  };
  if (core.db.kind !== 'postgres' || !core.db.url) {
    return { ...base, leadership: new FixedLeadership(role !== 'follower'), shared: false, stop: async () => undefined };
  }
  const election = new PgLeaderElection({
    url: core.db.url,
    instanceId,
    leaseSeconds: core.config.leaderLeaseSeconds,
    // a lease is wall-clock time shared with the other hosts, not the CA's (injectable) clock
    clock: systemClock,
    log: core.log,
    mayLead: role !== 'follower',
    channels: Object.values(NOTIFY_CHANNELS),
    onNotify: (channel, payload) => {
      for (const fn of handlers.get(channel) ?? []) fn(payload);
    },
    onSession: () => {
      for (const fn of sessions) fn();
    },
  });
  await election.start();
  return { ...base, leadership: election, shared: true, stop: () => election.stop() };
}
