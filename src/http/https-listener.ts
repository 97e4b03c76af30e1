import type * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { SecureContextOptions } from 'node:tls';
import type { Core } from '../core';
import { CaError, StartupError } from '../errors';
import type { TlsMaterial } from '../tls/server-certificate';
import type { ServerTls } from '../tls/server-tls';
import { isLoopbackHost } from '../tls/tls-settings';
import { PUBLIC, Route } from './route';
import { AcmeProblem, sendProblem } from '../acme/problem';
import { acmeBaseUrl } from '../acme/acme-urls';

/**
 * TLS 1.2 with forward secrecy and AEAD only (ECDHE with AES-GCM or
 * ChaCha20-Poly1305: RFC 9325 section 4.2, Mozilla's "intermediate"), and the
 * TLS 1.3 suites (RFC 8446 section 9.1). No CBC, no RSA key exchange.
 */
export const TLS_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/** Everything a secure context is made of; given whole at every swap, so a renewal never loosens the protocol settings. */
function secureContextOptions(m: TlsMaterial): SecureContextOptions {
  // RFC 8996: TLS 1.0 and 1.1 are deprecated
  return { key: m.key, cert: m.cert, minVersion: 'TLSv1.2', ciphers: TLS_CIPHERS, honorCipherOrder: true };
}

export interface HttpsListener {
  server: https.Server;
  url: string;
  /** no new connections; requests in flight finish */
  close(): Promise<void>;
}

/**
 * HTTPS on HSMCA_HOST:HSMCA_HTTPS_PORT (contract section 6) with the same
 * request listener, limits and timeouts as the plain HTTP listener. A renewed
 * certificate replaces the secure context in place: new handshakes get it,
 * open connections keep theirs.
 */
export async function listenHttps(core: Core, tls: ServerTls, listener: http.RequestListener): Promise<HttpsListener> {
  const { config } = core;
  const server = https.createServer(
    { ...secureContextOptions(tls.current()), requestTimeout: 30_000, headersTimeout: 15_000, maxHeaderSize: 16 * 1024, handshakeTimeout: 10_000 },
    listener,
  );
  server.keepAliveTimeout = 5_000;
  if (config.maxConnections > 0) server.maxConnections = config.maxConnections;
  tls.onChange((m) => server.setSecureContext(secureContextOptions(m)));
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.httpsPort, config.host, () => resolve());
    });
  } catch (e) {
    throw new StartupError(`HSMCA_HTTPS_PORT: cannot listen on ${config.host}:${config.httpsPort}: ${(e as Error).message}`);
  }
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    server,
    url: `https://${host}:${addr.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}

/**
 * The routes the plain HTTP port serves (contract section 6). On a loopback
 * HSMCA_HOST, or with HTTPS off (HSMCA_HTTPS_PORT=0: TLS is then the
 * operator's proxy's job), all of them. Otherwise a bearer token must not
 * cross the network in clear: the routes that take one answer 403
 * httpsRequired, naming the HTTPS URL, before any header is read as a token
 * (better than a 404 that would hide where the route went); OCSP, CRLs, CA
 * certificates, /healthz and /metrics are served as before (RFC 5019 and
 * RFC 5280 fetch them over HTTP).
 */
export function plainHttpRoutes(core: Core, routes: Route[]): Route[] {
  const { config } = core;
  if (config.httpsPort === 0 || isLoopbackHost(config.host)) return routes;
  const host = new URL(config.publicUrl).hostname;
  const httpsUrl = `https://${host}:${config.httpsPort}`;
  // ACME (contract section 7) is an HTTPS service: a client pointed at the plain port learns where the directory is
  const acmeDirectory = `${acmeBaseUrl(config)}/directory`;
  return routes.map((r) =>
    r.path.startsWith('/acme/')
      ? {
          method: r.method,
          path: r.path,
          access: PUBLIC,
          handle: (ctx) => {
            ctx.res.setHeader('Cache-Control', 'no-store');
            sendProblem(ctx.res, new AcmeProblem('malformed', `ACME is served on HTTPS only: the directory is ${acmeDirectory}`, { status: 403 }));
          },
        }
      : typeof r.access === 'object'
      ? {
          method: r.method,
          path: r.path,
          access: PUBLIC,
          handle: () => {
            throw new CaError('forbidden', 'httpsRequired', `this route takes a bearer token and is served on HTTPS only (${httpsUrl})`);
          },
        }
      : r,
  );
}
