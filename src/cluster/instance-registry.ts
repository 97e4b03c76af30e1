import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import type { Knex } from 'knex';
import { Clock } from '../clock';
import { Logger } from '../log';

/** How often an instance writes its heartbeat (cluster_instances.last_seen). */
export const HEARTBEAT_MS = 5000;

export interface InstanceRecord {
  id: string;
  host: string;
  port: number;
  pid: number;
  startedAt: Date;
  lastSeen: Date;
}

/** A fresh id per process: host name, pid and random bits, readable in logs and in cluster_instances. */
export function newInstanceId(): string {
  return `${os.hostname().slice(0, 32)}-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/**
 * cluster_instances (migration 011): each running instance's row, its
 * heartbeat every HEARTBEAT_MS, deleted at a graceful stop. An instance
 * killed leaves its row behind with an old last_seen; rows silent for a day
 * are swept by whoever starts next.
 */
export class InstanceRegistry {
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly deps: { knex: Knex; clock: Clock; log: Logger },
    readonly id: string,
  ) {}

  async register(host: string, port: number): Promise<void> {
    const now = this.deps.clock.now().getTime();
    await this.deps.knex('cluster_instances').where('last_seen', '<', now - 86400_000).delete();
    await this.deps.knex('cluster_instances').insert({ id: this.id, host, port, pid: process.pid, started_at: now, last_seen: now });
    this.timer = setInterval(() => {
      this.deps
        .knex('cluster_instances')
        .where({ id: this.id })
        .update({ last_seen: this.deps.clock.now().getTime() })
        .catch((e) => this.deps.log.warn('cluster: heartbeat failed', { error: (e as Error).message }));
    }, HEARTBEAT_MS);
    this.timer.unref();
  }

  async list(): Promise<InstanceRecord[]> {
    const rows = await this.deps.knex('cluster_instances').orderBy('started_at', 'asc');
    return rows.map((r) => ({ id: r.id, host: r.host, port: Number(r.port), pid: Number(r.pid), startedAt: new Date(Number(r.started_at)), lastSeen: new Date(Number(r.last_seen)) }));
  }

  async deregister(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.deps.knex('cluster_instances').where({ id: this.id }).delete().catch(() => undefined);
  }
}
