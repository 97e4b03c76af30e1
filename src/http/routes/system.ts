import { Metrics } from '../../metrics';
import { sendJson } from '../errors';
import { LOCALHOST, PUBLIC, Route } from '../route';

export interface Health {
  ok: boolean;
  body: Record<string, unknown>;
}

/** /healthz for load balancers and orchestrators; /metrics (Prometheus text) for the local host only. */
export function systemRoutes(d: { health: () => Promise<Health>; metrics: Metrics }): Route[] {
  return [
    {
      method: 'GET',
      path: '/healthz',
      access: PUBLIC,
      async handle({ res }) {
        let h: Health;
        try {
          h = await d.health();
        } catch {
          h = { ok: false, body: { status: 'unavailable' } };
        }
        res.setHeader('Cache-Control', 'no-store');
        sendJson(res, h.ok ? 200 : 503, h.body);
      },
    },
    {
      method: 'GET',
      path: '/metrics',
      access: LOCALHOST,
      handle({ res }) {
        const text = Buffer.from(d.metrics.render(), 'utf8');
        res.setHeader('Content-Type', 'text/plain; version=0.0.4; charset=utf-8');
        res.setHeader('Content-Length', text.length);
        res.end(text);
      },
    },
  ];
}
