import { Debouncer } from './ca/crl-service';
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
 * The periodic work of a serving CA. Leadership: of several worker
 * processes sharing one database, exactly one (the leader; a lone process is
 * its own leader) builds CRLs, renews the OCSP responder certificate and
 * signs audit checkpoints; followers adopt what it makes.
 *
 * - CRLs: a few seconds after a burst of revocations (in the process that
 *   revoked), at least every HSMCA_CRL_REFRESH_SECONDS (leader), and at a
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
export function startBackgroundJobs(core: Core, leader: boolean, tls?: { refresh(): Promise<unknown> }): BackgroundJobs {
  const timers: NodeJS.Timeout[] = [];
  const every = (ms: number, job: () => Promise<unknown>, what: string) => {
    const t = setInterval(() => job().catch(logFailure(core.log, what)), ms);
    t.unref();
    timers.push(t);
  };

  // after revocations: the full CRL and the shards revoked into; periodically: every shard too (they expire)
  // every issuer keeps its own CRLs fresh, the previous ones included (their certificates still validate)
  const crl = new Debouncer(
    (periodic) => Promise.all(core.issuers.all().map((i) => i.crls.refresh({ allShards: periodic }))),
    CRL_DEBOUNCE_MS,
    core.config.crlRefreshSeconds * 1000,
    core.log,
  );
  if (leader) crl.start();
  core.revocation.onRevoked((e) => {
    if (e.record.crlShard !== null) core.crls.shards?.markDirty(e.record.crlShard);
    crl.trigger();
  });
  // Several workers share one database: serve the newest CRL whoever made it.
  if (core.config.workers > 1) every(CRL_RELOAD_MS, () => Promise.all(core.issuers.all().map((i) => i.crls.reload())), 'CRL reload');

  every(leader ? RESPONDER_CHECK_MS : RESPONDER_ADOPT_MS, () => Promise.all(core.issuers.all().map((i) => i.responders.ensureFresh())), 'OCSP responder renewal');

  // A rotation or root renewal made by another process (a worker, the hsmca CLI): adopted within seconds.
  every(ISSUERS_RELOAD_MS, () => core.issuers.refresh(), 'issuer reload');

  if (tls) every(TLS_CHECK_MS, () => tls.refresh(), 'HTTPS certificate renewal');

  // Failed authentications: one summary per address per interval (every worker, for its own).
  every(core.authFailures.intervalMs, () => core.authFailures.flush(), 'authentication failure summary');

  const signer = leader ? core.auditSigner : undefined;
  const checkpoint = (): Promise<void> => (signer ? core.audit.checkpoint(signer).catch(logFailure(core.log, 'audit checkpoint')) : Promise.resolve());
  if (signer) {
    void checkpoint();
    every(AUDIT_CHECKPOINT_MS, checkpoint, 'audit checkpoint');
  }

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
