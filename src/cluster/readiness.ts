import { sendJson } from '../http/errors';
import { PUBLIC, Route } from '../http/route';

/** How long /readyz waits for the database's answer before it says 503 (a busy host answers slowly, a down database at once). */
const PING_TIMEOUT_MS = 2000;

/**
 * Whether this instance takes traffic (contract section 8): not from the
 * start of a graceful stop, and not while its database does not answer.
 * A load balancer polls /readyz and sends requests elsewhere on 503;
 * /healthz stays the liveness probe (database and HSM).
 */
export class Readiness {
  private stopping = false;

  constructor(private readonly ping: () => Promise<void>) {}

  /** A graceful stop began: /readyz says 503 from now on. */
  beginStop(): void {
    this.stopping = true;
  }

  get isStopping(): boolean {
    return this.stopping;
  }

  async check(): Promise<{ ready: boolean; status: 'ready' | 'stopping' | 'databaseUnavailable' }> {
    if (this.stopping) return { ready: false, status: 'stopping' };
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([this.ping(), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('timeout')), PING_TIMEOUT_MS)))]);
    } catch {
      return { ready: false, status: 'databaseUnavailable' };
    } finally {
      clearTimeout(timer);
    }
    // a stop may have begun while the database answered
    return this.stopping ? { ready: false, status: 'stopping' } : { ready: true, status: 'ready' };
  }
}

/** GET /readyz: 200 {"status":"ready"}, or 503 {"status":"stopping"|"databaseUnavailable"}. */
export function readinessRoutes(readiness: Readiness): Route[] {
  return [
    {
      method: 'GET',
      path: '/readyz',
      access: PUBLIC,
      async handle({ res }) {
        const r = await readiness.check();
        res.setHeader('Cache-Control', 'no-store');
        if (!r.ready) res.setHeader('Retry-After', '2');
        sendJson(res, r.ready ? 200 : 503, { status: r.status });
      },
    },
  ];
}
