import { Client as PgClient, Notification } from 'pg';
import { Clock } from '../clock';
import { Logger } from '../log';

/**
 * Who runs the cluster-wide jobs (CRL builds, OCSP responder renewal, audit
 * checkpoints; background-jobs.ts). Exactly one instance at a time.
 */
export interface Leadership {
  /** whether this instance leads right now (and its lease has not run out) */
  isLeader(): boolean;
  /** called on every change, with the new state */
  onChange(fn: (leader: boolean) => void): void;
  /** a graceful stop: leadership released at once, so another instance takes over without waiting for the lease */
  stop(): Promise<void>;
}

/** One process on one SQLite file (or a fixed worker role): leadership never changes. */
export class FixedLeadership implements Leadership {
  constructor(private readonly leader: boolean) {}
  isLeader(): boolean {
    return this.leader;
  }
  onChange(): void {}
  async stop(): Promise<void> {}
}

/** pg_advisory_lock key of leadership: the first 8 bytes of SHA-256("hsmca.leader"), signed. */
export const PG_LEADER_LOCK = '-6599964380292928783';

export interface PgLeaderElectionOptions {
  url: string;
  instanceId: string;
  /** HSMCA_LEADER_LEASE_SECONDS */
  leaseSeconds: number;
  clock: Clock;
  log: Logger;
  /** false: LISTEN only, never lead (a worker that may not make keys) */
  mayLead?: boolean;
  /** LISTEN channels; their notifications go to onNotify */
  channels: readonly string[];
  onNotify(channel: string, payload: string): void;
  /** after a new session is open (the first, and after a lost one): notifications may have been missed meanwhile */
  onSession?(): void;
}

/**
 * Leader election on PostgreSQL alone, no extra service:
 *
 * - The leader holds a session advisory lock (PG_LEADER_LOCK) on a
 *   connection of its own. A session ends with its process (SIGKILL closes
 *   the socket: the server sees it at once) or, for a host that vanished,
 *   within seconds: TCP keepalives both ways and idle_session_timeout equal
 *   to the lease; PostgreSQL then frees the lock and a follower's next try
 *   (every second) takes it.
 * - A lease row (cluster_leader: instance, since, lease_until) is renewed
 *   every fifth of the lease through that same session. The leader acts
 *   only while its lease runs: a leader that cannot renew (its session
 *   broken, its queries stuck) stops leading when the lease ends, even
 *   before it learns that its session is gone. Two leaders can overlap only
 *   for the time a dead session takes to be noticed, and the jobs stay
 *   correct even then (CRL numbers are unique in the database, the audit
 *   chain is appended under its own lock).
 * - The same session LISTENs for the cluster's notifications (migration 011):
 *   new CRLs, new keys, revocations.
 */
export class PgLeaderElection implements Leadership {
  private client?: PgClient;
  private leader = false;
  private leaseUntil = 0;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private ticking?: Promise<void>;
  private readonly listeners: ((leader: boolean) => void)[] = [];

  constructor(private readonly opts: PgLeaderElectionOptions) {}

  /** Starts trying at once; resolves after the first try (this instance may lead from the start). */
  async start(): Promise<void> {
    await this.tick();
    this.schedule();
  }

  isLeader(): boolean {
    return this.leader && this.opts.clock.now().getTime() < this.leaseUntil;
  }

  onChange(fn: (leader: boolean) => void): void {
    this.listeners.push(fn);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.ticking;
    const client = this.client;
    this.client = undefined;
    if (client && this.leader) {
      // the lease ends now: the next leader need not wait for it
      await client.query('UPDATE cluster_leader SET lease_until = $2 WHERE id = 1 AND instance_id = $1', [this.opts.instanceId, this.opts.clock.now().getTime()]).catch(() => undefined);
      await client.query(`SELECT pg_advisory_unlock((${PG_LEADER_LOCK})::bigint)`).catch(() => undefined);
    }
    this.setLeader(false);
    await client?.end().catch(() => undefined);
  }

  private get leaseMs(): number {
    return this.opts.leaseSeconds * 1000;
  }

  private schedule(): void {
    if (this.stopped) return;
    // the leader renews five times per lease; followers try for the lock every second
    const ms = this.leader ? this.leaseMs / 5 : Math.min(1000, this.leaseMs / 5);
    this.timer = setTimeout(() => {
      this.ticking = this.tick().finally(() => {
        this.ticking = undefined;
        this.schedule();
      });
    }, ms);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    try {
      const client = this.client ?? (await this.connect());
      if (this.stopped) return;
      const now = this.opts.clock.now().getTime();
      if (this.leader) {
        const r = await client.query('UPDATE cluster_leader SET lease_until = $2 WHERE id = 1 AND instance_id = $1', [this.opts.instanceId, now + this.leaseMs]);
        if (r.rowCount === 1) this.leaseUntil = now + this.leaseMs;
        else {
          this.opts.log.warn('cluster: another instance holds the leader lease; stepping down');
          await client.query(`SELECT pg_advisory_unlock((${PG_LEADER_LOCK})::bigint)`);
          this.setLeader(false);
        }
        return;
      }
      if (this.opts.mayLead === false) {
        await client.query('SELECT 1'); // keeps the session from idling out
        return;
      }
      const r = await client.query<{ ok: boolean }>(`SELECT pg_try_advisory_lock((${PG_LEADER_LOCK})::bigint) AS ok`);
      if (!r.rows[0]?.ok) return;
      await client.query(
        `INSERT INTO cluster_leader (id, instance_id, since, lease_until) VALUES (1, $1, $2, $3)
         ON CONFLICT (id) DO UPDATE SET instance_id = EXCLUDED.instance_id, since = EXCLUDED.since, lease_until = EXCLUDED.lease_until`,
        [this.opts.instanceId, now, now + this.leaseMs],
      );
      this.leaseUntil = now + this.leaseMs;
      this.opts.log.info('cluster: this instance leads', { instance: this.opts.instanceId });
      this.setLeader(true);
    } catch (e) {
      this.opts.log.warn('cluster: the leader session failed; reconnecting', { error: (e as Error).message });
      this.drop();
    }
  }

  private async connect(): Promise<PgClient> {
    const lease = this.opts.leaseSeconds;
    const client = new PgClient({
      connectionString: this.opts.url,
      application_name: `hsmca ${this.opts.instanceId}`,
      keepAlive: true,
      keepAliveInitialDelayMillis: 1000,
      connectionTimeoutMillis: Math.max(1000, (this.leaseMs / 2) | 0),
      query_timeout: Math.max(1000, (this.leaseMs / 2) | 0),
    });
    client.on('error', (e) => {
      this.opts.log.warn('cluster: the leader session broke', { error: e.message });
      if (this.client === client) this.drop();
    });
    client.on('notification', (n: Notification) => this.opts.onNotify(n.channel, n.payload ?? ''));
    await client.connect();
    try {
      // the server ends a session it has not heard from (idle) for a lease, and probes a silent peer within seconds
      await client.query(`SET idle_session_timeout = '${lease}s'`);
      await client.query('SET tcp_keepalives_idle = 2; SET tcp_keepalives_interval = 1; SET tcp_keepalives_count = 3');
      for (const ch of this.opts.channels) await client.query(`LISTEN ${ch}`);
    } catch (e) {
      await client.end().catch(() => undefined);
      throw e;
    }
    if (this.stopped) {
      await client.end().catch(() => undefined);
      throw new Error('stopped');
    }
    this.client = client;
    this.opts.onSession?.();
    return client;
  }

  /** The session is gone (or suspect): so is leadership, and the lock with the session. */
  private drop(): void {
    const client = this.client;
    this.client = undefined;
    this.setLeader(false);
    client?.end().catch(() => undefined);
  }

  private setLeader(leader: boolean): void {
    if (this.leader === leader) return;
    this.leader = leader;
    if (!leader) this.leaseUntil = 0;
    for (const fn of this.listeners) {
      try {
        fn(leader);
      } catch (e) {
        this.opts.log.error('cluster: a leadership listener failed', { error: (e as Error).message });
      }
    }
  }
}
