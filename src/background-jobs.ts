import { Debouncer } from './ca/crl-service';
import { Cluster, NOTIFY_CHANNELS } from './cluster/cluster';
import type { Core } from './core';
import { Logger } from './log';

/** A burst of revocations makes one CRL, this long after the last of them. */
export const CRL_DEBOUNCE_MS = 2000;
/** How often the leader checks that the OCSP responder certificate is far from its end. */
const RESPONDER_CHECK_MS = 3600_000;
/** How often a follower looks for a responder certificate the leader renewed. */
const RESPONDER_ADOPT_MS = 60_000;
/** How often each of several workers reloads the newest CRL from the shared database. */
const CRL_RELOAD_MS = 2000;
/** Several instances on PostgreSQL: the slow poll behind LISTEN/NOTIFY (a notification lost with a session). */
const CLUSTER_POLL_MS = 15_000;
/** How often each process looks for an issuing CA or root made by another process (rotation, root renewal). */
export const ISSUERS_RELOAD_MS = 2000;
/** How often the HTTPS certificate is checked: renewed when due (leader), adopted (followers), reloaded when brought files change. */
export const TLS_CHECK_MS = 60_000;
/** How often the leader signs the audit log's head (also at start and at shutdown). */
export const AUDIT_CHECKPOINT_MS = 60_000;

/** The one way a failed background job is reported: a log line naming the job. */
const logFailure = (log: Logger, what: string) => (e: unknown) => log.error(`${what} failed`, { error: (e as Error)?.message ?? String(e) });

export interface BackgroundJobs {
  /** no more runs; a CRL that revocations are waiting for is built first (a graceful stop never leaves one out) */
  stop(): Promise<void>;
  /** the audit checkpoint a graceful stop signs last (nothing on a follower) */
  finalCheckpoint(): Promise<void>;
}

/**
 * The periodic work of a serving CA. Leadership (cluster/): of several
 * instances or worker processes sharing one database, exactly one at a time
 * (the leader; a lone process is its own leader) builds CRLs, renews the
 * OCSP responder certificate and signs audit checkpoints; followers adopt
 * what it makes. On PostgreSQL leadership moves by election and the others'
 * writes arrive by NOTIFY (migration 011), with a slow poll behind it.
 *
 * - CRLs: a few seconds after a burst of revocations (on PostgreSQL: the
 *   leader, for revocations on any instance; on SQLite: the process that
 *   revoked), at least every HSMCA_CRL_REFRESH_SECONDS (leader), at taking
 *   the lead when a revocation is missing from the newest, and at a
 *   graceful stop when revocations are still waiting for one; followers
 *   reload the newest one.
 * - OCSP responder certificate: renewed well before it expires (leader),
 *   adopted by followers.
 * - Audit checkpoints: the log's head signed at start, every minute and at
 *   a graceful stop (leader).
 * - Failed authentications: each interval's summaries written (every
 *   worker), and at a graceful stop, before the last checkpoint.
 * - The HTTPS server certificate (tls/server-tls.ts): renewed before two
 *   thirds of its life (leader), adopted by followers; every process swaps
 *   its own listener's secure context.
 */
export function startBackgroundJobs(core: Core, cluster: Cluster, tls?: { refresh(): Promise<unknown> }): BackgroundJobs {
  const timers: NodeJS.Timeout[] = [];
  const every = (ms: number, job: () => Promise<unknown>, what: string) => {
    const t = setInterval(() => job().catch(logFailure(core.log, what)), ms);
    t.unref();
    timers.push(t);
  };
  const leads = () => cluster.leadership.isLeader();

  // after revocations: the full CRL and the shards revoked into; periodically: every shard too (they expire)
  // every issuer keeps its own CRLs fresh, the previous ones included (their certificates still validate)
  const crl = new Debouncer(
    (periodic) => Promise.all(core.issuers.all().map((i) => i.crls.refresh({ allShards: periodic }))),
    CRL_DEBOUNCE_MS,
    core.config.crlRefreshSeconds * 1000,
    core.log,
  );
  const reloadCrls = () => Promise.all(core.issuers.all().map((i) => i.crls.reload()));
  const freshResponders = () => Promise.all(core.issuers.all().map((i) => i.responders.ensureFresh()));
  const revoked = (shard: number | null) => {
    if (shard !== null) core.crls.shards?.markDirty(shard);
    crl.trigger();
  };
  if (cluster.shared) {
    // Several instances: the leader builds every CRL. Each revocation, whichever instance made it,
    // reaches it by NOTIFY; a new leader first builds one if any revocation is missing from the last.
    core.revocation.onRevoked((e) => (leads() ? revoked(e.record.crlShard) : undefined));
    cluster.on(NOTIFY_CHANNELS.revoked, (p) => (leads() ? revoked(p === '' ? null : Number(p)) : undefined));
    cluster.on(NOTIFY_CHANNELS.crl, () => void reloadCrls().catch(logFailure(core.log, 'CRL reload')));
    cluster.on(NOTIFY_CHANNELS.keys, () => void freshResponders().catch(logFailure(core.log, 'OCSP responder adoption')));
    cluster.onSession(() => {
      void reloadCrls().catch(logFailure(core.log, 'CRL reload'));
      void freshResponders().catch(logFailure(core.log, 'OCSP responder adoption'));
    });
    every(CLUSTER_POLL_MS, reloadCrls, 'CRL reload');
  } else {
    // One database file: the process that revoked builds the CRL (several workers share the file).
    core.revocation.onRevoked((e) => revoked(e.record.crlShard));
    if (core.config.workers > 1) every(CRL_RELOAD_MS, reloadCrls, 'CRL reload');
  }

  every(RESPONDER_ADOPT_MS, () => (leads() ? Promise.resolve() : freshResponders()), 'OCSP responder adoption');
  every(RESPONDER_CHECK_MS, () => (leads() ? freshResponders() : Promise.resolve()), 'OCSP responder renewal');

  // A rotation or root renewal made by another process (a worker, an instance, the hsmca CLI): adopted within seconds;
  // only the leader renews any issuer's responder certificate.
  const gateResponders = () => core.issuers.all().forEach((i) => i.responders.issueOnlyWhen(leads));
  gateResponders();
  every(ISSUERS_RELOAD_MS, () => core.issuers.refresh().then(gateResponders), 'issuer reload');

  if (tls) every(TLS_CHECK_MS, () => tls.refresh(), 'HTTPS certificate renewal');

  // Failed authentications: one summary per address per interval (every worker, for its own).
  every(core.authFailures.intervalMs, () => core.authFailures.flush(), 'authentication failure summary');

  const signer = core.auditSigner;
  const checkpoint = (): Promise<void> => (signer && leads() ? core.audit.checkpoint(signer).catch(logFailure(core.log, 'audit checkpoint')) : Promise.resolve());
  every(AUDIT_CHECKPOINT_MS, checkpoint, 'audit checkpoint');

  // Taking the lead: the periodic CRL, a CRL now if a revocation is missing from the last, the responder and a checkpoint.
  const lead = () => {
    crl.start();
    for (const i of core.issuers.all()) void i.crls.init().catch(logFailure(core.log, 'CRL catch-up'));
    void freshResponders().catch(logFailure(core.log, 'OCSP responder renewal'));
    void checkpoint();
  };
  if (leads()) {
    crl.start();
    void checkpoint();
  }
  cluster.leadership.onChange((leader) => (leader ? lead() : crl.stop()));

  return {
    async stop() {
      for (const t of timers) clearInterval(t);
      crl.stop();
      await crl.flush();
      await core.authFailures.flush();
    },
    finalCheckpoint: checkpoint,
  };
}
