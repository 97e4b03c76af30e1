import express, { RequestHandler } from 'express';
import { Metrics } from '../metrics';
import { Logger } from '../log';
import { CaError } from '../errors';
import { errorHandler, notFoundHandler, sendError } from './errors';
import { SECURITY_HEADERS } from './headers';

export interface AppParts {
  metrics: Metrics;
  log: Logger;
  /** routers mounted in order */
  routers: RequestHandler[];
  health: () => Promise<{ ok: boolean; body: Record<string, unknown> }>;
}

const securityHeaders: RequestHandler = (_req, res, next) => {
  for (const [k, v] of SECURITY_HEADERS) res.setHeader(k, v);
  next();
};

function isLoopback(addr: string | undefined): boolean {
  return !!addr && (addr === '::1' || addr.startsWith('127.') || addr.startsWith('::ffff:127.'));
}

/** JSON bodies, read only after the token was checked (a stranger's bytes are not parsed). */
export function jsonBody(maxBodyBytes: number): RequestHandler {
  return express.json({ limit: maxBodyBytes, strict: true, type: () => true });
}

export function createApp(p: AppParts): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.set('query parser', 'simple');
  app.use(securityHeaders);
  app.use((req, res, next) => {
    const t0 = process.hrtime.bigint();
    res.on('finish', () => {
      const route = (req.route?.path as string | undefined) ?? (res.statusCode === 404 ? 'unmatched' : req.path.split('/').slice(0, 3).join('/'));
      p.metrics.httpRequests.inc({ method: req.method, route, status: String(res.statusCode) });
      p.metrics.httpDuration.observe(Number(process.hrtime.bigint() - t0) / 1e9, { route });
    });
    next();
  });
  app.use('/api', (_req, res, next) => {
    res.setHeader('Cache-Control', 'no-store');
    next();
  });

  app.get('/healthz', async (_req, res) => {
    let h: { ok: boolean; body: Record<string, unknown> };
    try {
      h = await p.health();
    } catch {
      h = { ok: false, body: { status: 'unavailable' } };
    }
    res.setHeader('Cache-Control', 'no-store');
    res.status(h.ok ? 200 : 503).json(h.body);
  });

  app.get('/metrics', (req, res) => {
    if (!isLoopback(req.socket.remoteAddress)) {
      return sendError(res, new CaError('forbidden', 'forbidden', 'metrics are served to the local host only'));
    }
    res.setHeader('Content-Type', 'text/plain; version=0.0.4; charset=utf-8');
    res.send(p.metrics.render());
  });

  for (const r of p.routers) app.use(r);
  app.use(notFoundHandler);
  app.use(errorHandler(p.log));
  return app;
}
