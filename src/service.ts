import type * as http from 'node:http';
import type * as https from 'node:https';
import { BackgroundJobs, startBackgroundJobs } from './background-jobs';
import { Config } from './config';
import { Core, CoreOptions, openCore } from './core';
import { HttpsListener, listenHttps, plainHttpRoutes } from './http/https-listener';
import { HttpListener, createRequestListener, listenHttp, serviceRoutes } from './http/listener';
import { ServerTls } from './tls/server-tls';
import type { AcmeServer } from './acme/acme-server';

export type ServiceOptions = CoreOptions;

export interface RunningService {
  core: Core;
  server: http.Server;
  url: string;
  /** the HTTPS listener (contract section 6); undefined when HSMCA_HTTPS_PORT=0 */
  httpsServer?: https.Server;
  httpsUrl?: string;
  /** its certificate: `tls.refresh()` is the renewal job */
  tls?: ServerTls;
  /** graceful stop: no new connections, in-flight requests finish, then the database and HSM close */
  stop(): Promise<void>;
}

/**
 * `hsmca serve`, top to bottom: the CA core (settings, data folder,
 * database, HSM, hierarchy, services; core.ts) → the HTTPS certificate
 * (tls/server-tls.ts) → the background jobs (background-jobs.ts) → the HTTP
 * and HTTPS listeners over one route table (http/listener.ts,
 * http/https-listener.ts). A stop runs the other way round.
 */
export async function startService(config: Config, opts: ServiceOptions = {}): Promise<RunningService> {
  const core = await openCore(config, opts);
  let tls: ServerTls | undefined;
  try {
    if (config.httpsPort > 0) tls = await ServerTls.open(core, { canIssue: opts.role !== 'follower' });
  } catch (e) {
    await core.close();
    throw e;
  }
  const jobs = startBackgroundJobs(core, opts.role !== 'follower', tls);
  let listener: HttpListener | undefined;
  let secure: HttpsListener | undefined;
  let acme: AcmeServer | undefined;
  try {
    // built once: both listeners share the rate limits' buckets
    const routes = serviceRoutes(core, { onAcme: (a) => (acme = a) });
    // validations a dead process left processing are taken over now and whenever another worker's lease runs out
    acme?.validator.startResuming();
    listener = await listenHttp(core, createRequestListener(core, plainHttpRoutes(core, routes)));
    if (tls) secure = await listenHttps(core, tls, createRequestListener(core, routes));
  } catch (e) {
    await listener?.close();
    await acme?.validator.stop(0);
    await stopCore(core, jobs, false);
    throw e;
  }
  core.log.info('hsmca serving', { url: listener.url, httpsUrl: secure?.url, hsm: core.hsm.kind, database: core.db.kind });
  let stopping: Promise<void> | undefined;
  const plain = listener;
  const stop = () =>
    (stopping ??= (async () => {
      // ACME validations in flight get HSMCA_SHUTDOWN_GRACE_SECONDS, as requests do; none starts meanwhile
      await Promise.all([plain.close(), secure?.close(), acme?.validator.stop(config.shutdownGraceSeconds * 1000)]);
      await stopCore(core, jobs, true);
    })());
  return { core, server: listener.server, url: listener.url, httpsServer: secure?.server, httpsUrl: secure?.url, tls, stop };
}

async function stopCore(core: Core, jobs: BackgroundJobs, checkpoint: boolean): Promise<void> {
  await jobs.stop();
  if (checkpoint) await jobs.finalCheckpoint();
  await core.close();
}
