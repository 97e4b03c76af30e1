import { clusterDescribe, HsmcaCluster, startCluster } from './helpers/cluster';

/**
 * /readyz on a cluster (contract section 8): 200 while an instance takes
 * traffic, 503 from the start of a graceful stop (HSMCA_SHUTDOWN_DELAY_SECONDS
 * of it before the listener closes) and while its database is down; every
 * instance is in cluster_instances while it runs, and leaves at a stop.
 */
clusterDescribe()('readiness of several instances', () => {
  let cluster: HsmcaCluster;
  beforeAll(async () => {
    cluster = await startCluster({ instances: 2, env: { HSMCA_SHUTDOWN_DELAY_SECONDS: '2' } });
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it('answers 200 on every instance, each registered in cluster_instances, one leader', async () => {
    for (const i of cluster.instances) {
      const r = await cluster.api('GET', '/readyz', { base: i.url, token: null });
      expect(r).toEqual({ status: 200, body: { status: 'ready' } });
    }
    const rows = await cluster.query<{ port: number }>('SELECT port FROM cluster_instances ORDER BY port');
    expect(rows.map((r) => Number(r.port)).sort()).toEqual(cluster.instances.map((i) => i.port).sort());
    expect(await cluster.leader()).toBeDefined();
  });

  it('says 503 from the start of a graceful stop while still answering, then leaves the registry', async () => {
    const [a] = cluster.instances;
    const exited = cluster.stopInstance(a, 'SIGTERM');
    // within the shutdown delay: the listener still answers, /readyz says stopping, requests still work
    await new Promise((r) => setTimeout(r, 500));
    const ready = await cluster.api('GET', '/readyz', { base: a.url, token: null });
    expect(ready).toEqual({ status: 503, body: { status: 'stopping' } });
    expect((await cluster.api('GET', '/api/v1/ca', { base: a.url, token: null })).status).toBe(200);
    await exited;
    const rows = await cluster.query<{ port: number }>('SELECT port FROM cluster_instances');
    expect(rows.map((r) => Number(r.port))).not.toContain(a.port);
    // the balancer sends everything to the other
    for (let k = 0; k < 6; k++) expect((await cluster.api('GET', '/api/v1/ca', { token: null })).status).toBe(200);
    await cluster.startInstance(a);
  }, 60_000);

  it('says 503 databaseUnavailable while PostgreSQL is down, and an API call gets 503 with Retry-After, no stack trace; both recover by themselves', async () => {
    const [a] = cluster.instances;
    await cluster.pg.stop();
    try {
      const ready = await cluster.api('GET', '/readyz', { base: a.url, token: null });
      expect(ready).toEqual({ status: 503, body: { status: 'databaseUnavailable' } });
      const res = await fetch(`${a.url}/api/v1/certificates?limit=1`, { headers: { authorization: `Bearer ${cluster.adminToken}` } });
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('2');
      const body = await res.json();
      expect(body).toEqual({ error: { code: 'databaseUnavailable', message: expect.any(String) } });
      expect(JSON.stringify(body)).not.toMatch(/at .*\.js|ECONNREFUSED/);
    } finally {
      await cluster.pg.start();
    }
    const deadline = Date.now() + 15_000;
    let status = 0;
    while (Date.now() < deadline && status !== 200) {
      status = (await cluster.api('GET', '/api/v1/certificates?limit=1', { base: a.url })).status;
      if (status !== 200) await new Promise((r) => setTimeout(r, 200));
    }
    expect(status).toBe(200);
    expect((await cluster.api('GET', '/readyz', { base: a.url, token: null })).status).toBe(200);
  }, 60_000);
});
