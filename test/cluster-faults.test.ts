import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { clusterDescribe, HsmcaCluster, ocspRequestDer, startCluster } from './helpers/cluster';
import { makeCsr } from './helpers/csr';
import { BIN } from './helpers/server-process';

const run = promisify(execFile);

/**
 * Faults under load through the balancer (issue 15): clients issue, revoke
 * and ask OCSP through HAProxy while an instance is SIGKILLed, while every
 * instance is restarted in turn, and while PostgreSQL restarts. Each case
 * prints its counts: requests sent, failed, writes acknowledged, and
 * acknowledged writes found stored afterwards; the audit chain verifies
 * after each (`hsmca audit verify`).
 */
clusterDescribe()('faults under load on three instances behind HAProxy', () => {
  let cluster: HsmcaCluster;
  let issuerPem: string;
  const csrs = [0, 1, 2].map((slot) => makeCsr({ slot, sans: `DNS:load-${slot}.cluster.example` }).csr);
  beforeAll(async () => {
    cluster = await startCluster({ instances: 3 });
    issuerPem = (await cluster.api('GET', '/api/v1/ca', { token: null })).body.issuer;
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  /** set while PostgreSQL is down or not yet answering again: failures then are the expected gap */
  let gap = false;
  let gapFailures = 0;

  interface Counts {
    sent: number;
    failed: number;
    failedStatuses: Record<string, number>;
    issued: string[];
    revoked: string[];
  }

  /** `clients` loops through the balancer until `during` resolves: issue, OCSP for a recent serial, now and then a revocation. */
  async function underLoad(during: () => Promise<void>, clients = 6): Promise<Counts> {
    const counts: Counts = { sent: 0, failed: 0, failedStatuses: {}, issued: [], revoked: [] };
    let stop = false;
    const claimed = new Set<string>();
    const fail = (what: string) => {
      counts.failed++;
      counts.failedStatuses[what] = (counts.failedStatuses[what] ?? 0) + 1;
    };
    const request = async (method: string, p: string, body?: unknown): Promise<{ status: number; json?: any } | undefined> => {
      counts.sent++;
      try {
        const res = await fetch(cluster.url + p, {
          method,
          headers: { authorization: `Bearer ${cluster.adminToken}`, ...(body ? { 'content-type': 'application/json' } : {}) },
          body: body ? JSON.stringify(body) : undefined,
        });
        const buf = Buffer.from(await res.arrayBuffer());
        if (res.status >= 300) {
          // hsmca's errors are JSON with a code; the balancer's own are HTML
          const code = res.headers.get('content-type')?.includes('json') ? (JSON.parse(buf.toString()).error?.code ?? 'json') : 'balancer';
          fail(`${res.status} ${code}`);
          if (gap) gapFailures++;
          return undefined;
        }
        return { status: res.status, json: res.headers.get('content-type')?.includes('json') ? JSON.parse(buf.toString()) : undefined };
      } catch (e) {
        fail(`network: ${((e as Error).cause as Error)?.message ?? (e as Error).message}`);
        if (gap) gapFailures++;
        return undefined;
      }
    };
    const client = async (w: number) => {
      for (let k = 0; !stop; k++) {
        const issued = await request('POST', '/api/v1/certificates', { csr: csrs[(w + k) % csrs.length] });
        if (issued) counts.issued.push(issued.json.serialNumber);
        const serial = counts.issued[counts.issued.length - 1 - (k % 5)];
        if (serial) {
          const ok = await request('GET', `/ocsp/${encodeURIComponent(ocspRequestDer(issuerPem, serial).toString('base64'))}`);
          // each serial is revoked by one client only (a second revocation is a 409 by contract)
          if (k % 4 === 3 && ok && !claimed.has(serial)) {
            claimed.add(serial);
            const r = await request('POST', `/api/v1/certificates/${serial}/revoke`, { reason: 'superseded' });
            if (r) counts.revoked.push(serial);
          }
        }
        if (!issued) await new Promise((r) => setTimeout(r, 50));
      }
    };
    const running = Array.from({ length: clients }, (_, w) => client(w));
    await new Promise((r) => setTimeout(r, 1000));
    try {
      await during();
      await new Promise((r) => setTimeout(r, 1000));
    } finally {
      stop = true;
      await Promise.all(running);
    }
    return counts;
  }

  /** Every acknowledged write is in the database; returns how many were checked. */
  async function verifyStored(c: Counts): Promise<number> {
    const issued = await cluster.query<{ serial: string; state: string }>('SELECT serial, state FROM certificates WHERE serial = ANY($1)', [c.issued]);
    expect(issued.filter((r) => r.state === 'issued')).toHaveLength(new Set(c.issued).size);
    const revoked = await cluster.query<{ serial: string }>('SELECT serial FROM certificates WHERE serial = ANY($1) AND revoked_at IS NOT NULL', [c.revoked]);
    expect(revoked).toHaveLength(c.revoked.length);
    return issued.length + revoked.length;
  }

  async function auditVerifies(): Promise<string> {
    const { stdout, stderr } = await run(process.execPath, [BIN, 'audit', 'verify'], {
      env: { ...cluster.env, HSMCA_DATA_DIR: path.join(cluster.root, 'cli'), HSMCA_LOG_LEVEL: 'error' },
    });
    return (stdout + stderr).trim();
  }

  function report(what: string, c: Counts, verified: number): void {
    console.log(
      `${what}: sent ${c.sent}, failed ${c.failed} ${JSON.stringify(c.failedStatuses)}, acknowledged ${c.issued.length} issuances + ${c.revoked.length} revocations, verified stored ${verified}`,
    );
  }

  it('SIGKILL one instance under load: only requests in flight on it fail; every acknowledged write is stored; the audit chain verifies', async () => {
    const victim = cluster.instances[1];
    const c = await underLoad(async () => {
      await cluster.stopInstance(victim, 'SIGKILL');
      await new Promise((r) => setTimeout(r, 1500));
    });
    const verified = await verifyStored(c);
    report('SIGKILL one instance', c, verified);
    // at most the requests in flight on it when it died: one per client
    expect(c.failed).toBeLessThanOrEqual(6);
    expect(c.issued.length).toBeGreaterThan(10);
    expect(await auditVerifies()).toMatch(/audit chain ok|verified|OK/i);
    await cluster.startInstance(victim);
  }, 60_000);

  it('rolling restart under load (SIGTERM, start, each in turn): zero failed through the balancer', async () => {
    const c = await underLoad(async () => {
      for (const i of cluster.instances) {
        await cluster.stopInstance(i, 'SIGTERM');
        await cluster.startInstance(i);
        // the balancer's checks see it up (rise 2 at 250 ms) before the next one goes
        await new Promise((r) => setTimeout(r, 1000));
      }
    });
    const verified = await verifyStored(c);
    report('rolling restart', c, verified);
    expect(c.failedStatuses).toEqual({});
    expect(c.failed).toBe(0);
    expect(await auditVerifies()).toMatch(/audit chain ok|verified|OK/i);
  }, 120_000);

  it('PostgreSQL restart under load: 503 in the gap, recovery without restarting hsmca, no acknowledged write lost', async () => {
    const pids = cluster.instances.map((i) => i.child!.pid);
    const c = await underLoad(async () => {
      gap = true;
      await cluster.pg.stop();
      await new Promise((r) => setTimeout(r, 2000));
      await cluster.pg.start();
      // recovered: a request through the balancer succeeds again
      const t0 = Date.now();
      while ((await cluster.api('GET', '/api/v1/certificates?limit=1').then((r) => r.status, () => 0)) !== 200) {
        if (Date.now() - t0 > 20_000) throw new Error('no recovery within 20 s');
        await new Promise((r) => setTimeout(r, 100));
      }
      console.log(`PostgreSQL back: requests succeed ${Date.now() - t0} ms after its start`);
      // the balancer's checks (rise 2) see the instances ready again
      await new Promise((r) => setTimeout(r, 1000));
      gap = false;
    });
    const verified = await verifyStored(c);
    report('PostgreSQL restart', c, verified);
    // every failure fell in the gap: 503 databaseUnavailable from hsmca, the balancer's 503 when every
    // instance's /readyz said so, or the balancer closing a connection after its own 503
    expect(gapFailures).toBe(c.failed);
    expect(Object.keys(c.failedStatuses).filter((s) => !/^503 |^network/.test(s))).toEqual([]);
    expect(cluster.instances.map((i) => i.child!.pid)).toEqual(pids);
    expect(cluster.instances.every((i) => i.child!.exitCode === null)).toBe(true);
    expect(await auditVerifies()).toMatch(/audit chain ok|verified|OK/i);
  }, 120_000);
});
