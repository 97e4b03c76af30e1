import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { scopeAllowsRevoke } from '../auth/scope';
import type { Core } from '../core';
import { StartupError } from '../errors';
import { IssuanceRateLimit } from './rate-limit';
import { Route } from './route';
import { createRouter } from './router';
import { AcmeServer, openAcmeServer } from '../acme/acme-server';
import { acmeRoutes } from './routes/acme';
import { auditRoutes } from './routes/audit';
import { blockedKeyRoutes } from './routes/blocked-keys';
import { caRoutes } from './routes/ca';
import { certificateRoutes } from './routes/certificates';
import { crlRoutes } from './routes/crl';
import { ocspRoutes } from './routes/ocsp';
import { Health, systemRoutes } from './routes/system';
import { tokenRoutes } from './routes/tokens';
import { acmeAdminRoutes } from './routes/acme-admin';
import { consoleRoutes } from './routes/console';
import { uiRoutes } from './routes/ui';
import { AcmeAdminStore } from '../storage/acme-admin-store';
import { AcmeStore } from '../storage/acme-store';
import { CertificateStats } from '../storage/certificate-stats';
import { isLoopbackHost } from '../tls/tls-settings';
import { quorumRoutes } from './routes/quorum';

/** The service's whole route table: every route of contract section 3 and the status routes. */
export function serviceRoutes(core: Core, opts: { onAcme?: (acme: AcmeServer) => void } = {}): Route[] {
  // Each worker process of each instance (HSMCA_INSTANCES) keeps its own buckets; connections are
  // spread evenly over them, so each gets its share of the configured limit (docs/configuration.md).
  const shares = core.config.workers * core.config.instances;
  const issueLimit = new IssuanceRateLimit({
    perToken: Math.ceil(core.config.issueRatePerToken / shares),
    perAddress: Math.ceil(core.config.issueRatePerAddress / shares),
  });
  const acme = openAcmeServer(core, { issueLimit: (ip, tokenId) => issueLimit.take(ip, tokenId) });
  opts.onAcme?.(acme);
  return [
    ...ocspRoutes(core.ocsp, core.metrics),
    ...certificateRoutes({
      issuance: core.issuance,
      revocation: core.revocation,
      store: core.certificates,
      issueLimit: (ip, principal) => issueLimit.take(ip, principal?.id),
      requesterMayRevoke: scopeAllowsRevoke,
    }),
    ...systemRoutes({ health: () => health(core), metrics: core.metrics }),
    ...caRoutes(core),
    ...crlRoutes(core.crls, () => core.issuers.all().map((i) => i.crls)),
    ...tokenRoutes(core.tokens, core.quorum),
    ...auditRoutes(core.audit),
    ...blockedKeyRoutes(core.blockedKeys),
    ...acmeRoutes(acme, { log: core.log, maxBodyBytes: core.config.maxBodyBytes }),
    ...consoleRoutes({ hierarchy: core.hierarchy, issuerOf: (id) => core.issuers.byId(id)?.identity, hsm: core.hsm, crls: core.crls, responders: core.responders, ocsp: core.ocsp, store: core.certificates, stats: new CertificateStats(core.db, () => core.clock.now()) }),
    ...acmeAdminRoutes({ admin: new AcmeAdminStore(core.db), acme: new AcmeStore(core.db), tokens: core.tokenStore, audit: core.audit, clock: core.clock }),
    ...uiRoutes({ httpsUiUrl: consoleHttpsUrl(core) }),
    ...quorumRoutes(core.quorum),
  ];
}

/** Where plain HTTP on a public host sends the console (docs/ui.md): the HTTPS listener's /ui/. */
function consoleHttpsUrl(core: Core): string | undefined {
  const { config } = core;
  if (config.httpsPort === 0 || isLoopbackHost(config.host)) return undefined;
  return `https://${new URL(config.publicUrl).hostname}:${config.httpsPort}/ui/`;
}

/** /healthz: the database answers and the HSM (or, in a cluster, enough of its tokens) can sign. */
async function health(core: Core): Promise<Health> {
  let database = 'ok';
  try {
    await core.db.ping();
  } catch {
    database = 'down';
  }
  let hsm;
  try {
    hsm = await core.hsm.health();
  } catch {
    hsm = { status: 'down' as const, tokens: [] };
  }
  const ok = database === 'ok' && hsm.status !== 'down';
  const status = !ok ? 'unavailable' : hsm.status === 'degraded' ? 'degraded' : 'ok';
  return { ok, body: { status, database, hsm } };
}

/** The request listener every listener of the service uses: the route table (built once, shared by the listeners) behind the router. */
export function createRequestListener(core: Core, routes: Route[] = serviceRoutes(core)): http.RequestListener {
  return createRouter(routes, {
    authenticate: (authorization) => core.tokens.authenticate(authorization),
    hooks: { admit: (ip) => core.authFailures.admit(ip), failed: (e) => core.authFailures.failed(e) },
    metrics: core.metrics,
    log: core.log,
    maxBodyBytes: core.config.maxBodyBytes,
  });
}

export interface HttpListener {
  server: http.Server;
  url: string;
  /** no new connections; requests in flight finish */
  close(): Promise<void>;
}

/** Listens on HSMCA_HOST:HSMCA_PORT; a port that cannot be had is one start-up line naming the setting. */
export async function listenHttp(core: Core, listener: http.RequestListener = createRequestListener(core)): Promise<HttpListener> {
  const { config } = core;
  const server = http.createServer({ requestTimeout: 30_000, headersTimeout: 15_000, maxHeaderSize: 16 * 1024 }, listener);
  server.keepAliveTimeout = 5_000;
  // Past this many open connections node closes new ones at once, before any byte is read:
  // a flood of idle connections cannot take every file descriptor of the process.
  if (config.maxConnections > 0) server.maxConnections = config.maxConnections;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => resolve());
    });
  } catch (e) {
    throw new StartupError(`HSMCA_PORT: cannot listen on ${config.host}:${config.port}: ${(e as Error).message}`);
  }
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    server,
    url: `http://${host}:${addr.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}
