import type * as http from 'node:http';
import type * as https from 'node:https';
import * as os from 'node:os';
import { BackgroundJobs, startBackgroundJobs } from './background-jobs';
import { Cluster, openCluster } from './cluster/cluster';
import { Readiness, readinessRoutes } from './cluster/readiness';
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
  /** several instances: leadership, notifications, the instance's row (cluster/) */
  cluster: Cluster;
  /** /readyz's state */
  readiness: Readiness;
  /**
   * graceful stop: /readyz says 503 at once; after HSMCA_SHUTDOWN_DELAY_SECONDS
   * no new connections; in-flight requests finish (at most
   * HSMCA_SHUTDOWN_GRACE_SECONDS), then the jobs, leadership, database and HSM close
   */
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
  let cluster: Cluster;
  try {
    cluster = await openCluster(core, opts.role);
  } catch (e) {
    await core.close();
    throw e;
  }
  const jobs = startBackgroundJobs(core, cluster, tls);
  const readiness = new Readiness(() => core.db.ping());
  // from the start of a stop, every answer closes its connection: clients and the balancer open new ones elsewhere
  const draining =
    (inner: http.RequestListener): http.RequestListener =>
    (req, res) => {
      if (readiness.isStopping) res.setHeader('Connection', 'close');
      inner(req, res);
    };
  let listener: HttpListener | undefined;
  let secure: HttpsListener | undefined;
  let acme: AcmeServer | undefined;
  try {
    // built once: both listeners share the rate limits' buckets
    const routes = [...readinessRoutes(readiness), ...serviceRoutes(core, { onAcme: (a) => (acme = a) })];
    // validations a dead process left processing are taken over now and whenever another worker's lease runs out
    acme?.validator.startResuming();
    listener = await listenHttp(core, draining(createRequestListener(core, plainHttpRoutes(core, routes))));
    if (tls) secure = await listenHttps(core, tls, draining(createRequestListener(core, routes)));
    await cluster.registry.register(os.hostname(), Number(new URL(listener.url).port));
  } catch (e) {
    await Promise.all([listener?.close(), secure?.close()]);
    await acme?.validator.stop(0);
    await stopCore(core, jobs, cluster, false);
    throw e;
  }
  core.log.info('hsmca serving', { url: listener.url, httpsUrl: secure?.url, hsm: core.hsm.kind, database: core.db.kind, instance: cluster.instanceId });
  let stopping: Promise<void> | undefined;
  const plain = listener;
  const servers = [plain.server, secure?.server];
  const stop = () =>
    (stopping ??= (async () => {
      readiness.beginStop();
      // the balancer sees /readyz fail and stops sending new requests here
      if (config.shutdownDelaySeconds > 0) await sleep(config.shutdownDelaySeconds * 1000);
      // ACME validations in flight get HSMCA_SHUTDOWN_GRACE_SECONDS, as requests do; none starts meanwhile
      const closed = Promise.all([plain.close(), secure?.close(), acme?.validator.stop(config.shutdownGraceSeconds * 1000)]);
      // requests still running after the grace period lose their connections
      const grace = setTimeout(() => servers.forEach((s) => s?.closeAllConnections()), config.shutdownGraceSeconds * 1000);
      await closed;
      clearTimeout(grace);
      await stopCore(core, jobs, cluster, true);
    })());
  return { core, server: listener.server, url: listener.url, httpsServer: secure?.server, httpsUrl: secure?.url, tls, cluster, readiness, stop };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function stopCore(core: Core, jobs: BackgroundJobs, cluster: Cluster, checkpoint: boolean): Promise<void> {
  await jobs.stop();
  if (checkpoint) await jobs.finalCheckpoint();
  await cluster.registry.deregister();
  await cluster.stop();
  await core.close();
}
