import { clusterDescribe, crlFrom, HsmcaCluster, Instance, startCluster, within } from './helpers/cluster';
import { makeCsr } from './helpers/csr';

/**
 * One leader at a time (src/cluster/leader-election.ts): killing it
 * (SIGKILL, no goodbye) hands leadership to another instance within seconds,
 * and that one builds the next CRL; a graceful stop hands it over at once.
 */
clusterDescribe()('leadership of three instances', () => {
  let cluster: HsmcaCluster;
  beforeAll(async () => {
    cluster = await startCluster({ instances: 3 });
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  const leaderRows = () => cluster.query<{ instance_id: string }>('SELECT instance_id FROM cluster_leader');

  it('has exactly one leader', async () => {
    expect(await cluster.leader()).toBeDefined();
    expect(await leaderRows()).toHaveLength(1);
    // exactly one session holds the leader lock
    const locks = await cluster.query<{ n: string }>(`SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND granted`);
    expect(Number(locks[0].n)).toBe(1);
  });

  it('SIGKILL the leader: another takes over within seconds and builds the next CRL', async () => {
    const old = (await cluster.leader())!;
    const crlBefore = await crlFrom(cluster.url, cluster.root);
    await cluster.stopInstance(old, 'SIGKILL');
    let next: Instance | undefined;
    const took = await within(8_000, 'a new leader', async () => {
      next = await cluster.leader();
      return !!next && next !== old;
    });
    console.log(`leader ${old.name} killed: ${next!.name} leads after ${took} ms`);
    expect(took).toBeLessThan(6_000);
    const issued = await cluster.api('POST', '/api/v1/certificates', { body: { csr: makeCsr({ sans: 'DNS:lead.cluster.example' }).csr } });
    expect(issued.status).toBe(201);
    const serial = issued.body.serialNumber;
    expect((await cluster.api('POST', `/api/v1/certificates/${serial}/revoke`, { body: {} })).status).toBe(200);
    await within(10_000, 'the next CRL lists the revocation', async () => (await crlFrom(cluster.url, cluster.root)).serials.includes(serial));
    const built = await cluster.query<{ crl_number: number }>(`SELECT crl_number FROM crls WHERE kind = 'full' AND shard IS NULL ORDER BY crl_number DESC LIMIT 1`);
    expect(Number(built[0].crl_number)).toBeGreaterThan(crlBefore.number);
    // the killed one comes back as a follower
    await cluster.startInstance(old);
    expect(await cluster.leader()).toBe(next);
  }, 60_000);

  it('a graceful stop of the leader hands over without waiting for the lease', async () => {
    const old = (await cluster.leader())!;
    const t0 = Date.now();
    await cluster.stopInstance(old, 'SIGTERM');
    let next: Instance | undefined;
    await within(5_000, 'a new leader', async () => {
      next = await cluster.leader();
      return !!next && next !== old;
    });
    console.log(`leader ${old.name} stopped: ${next!.name} leads ${Date.now() - t0} ms after SIGTERM`);
    await cluster.startInstance(old);
  }, 60_000);
});
