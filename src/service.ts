import type * as http from 'node:http';
import { BackgroundJobs, startBackgroundJobs } from './background-jobs';
import { Config } from './config';
import { Core, CoreOptions, openCore } from './core';
import { listenHttp } from './http/listener';

export type ServiceOptions = CoreOptions;

export interface RunningService {
  core: Core;
  server: http.Server;
  url: string;
  /** graceful stop: no new connections, in-flight requests finish, then the database and HSM close */
  stop(): Promise<void>;
}

/**
 * `hsmca serve`, top to bottom: the CA core (settings, data folder,
 * database, HSM, hierarchy, services; core.ts) → the background jobs
 * (background-jobs.ts) → the HTTP listener (http/listener.ts). A stop runs
 * the other way round.
 */
export async function startService(config: Config, opts: ServiceOptions = {}): Promise<RunningService> {
  const core = await openCore(config, opts);
  const jobs = startBackgroundJobs(core, opts.role !== 'follower');
  let listener;
  try {
    listener = await listenHttp(core);
  } catch (e) {
    await stopCore(core, jobs, false);
    throw e;
  }
  core.log.info('hsmca serving', { url: listener.url, hsm: core.hsm.kind, database: core.db.kind });
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      await listener.close();
      await stopCore(core, jobs, true);
    })());
  return { core, server: listener.server, url: listener.url, stop };
}

async function stopCore(core: Core, jobs: BackgroundJobs, checkpoint: boolean): Promise<void> {
  await jobs.stop();
  if (checkpoint) await jobs.finalCheckpoint();
  await core.close();
}
