import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FakeClock } from '../src/clock';
import { loadConfig } from '../src/config';
import { SoftHsm } from '../src/hsm/soft/soft-hsm';
import { silentLogger } from '../src/log';
import { RunningService, startService } from '../src/service';
import { freshPostgres, postgresUrl, required, tempDir } from './helpers/harness';
import { clusterDescribe, ocspStatusByOpenssl, ocspRequestDer, within } from './helpers/cluster';
import { makeCsr } from './helpers/csr';

const PIN = 'cluster-soft-hsm-pin-0123456789';
const ADMIN = createHash('sha256').update('soft hsm cluster admin').digest('hex');
const DAY = 86400_000;

/**
 * The software HSM shared by several hosts (docs/hsm.md): the key store made
 * at init is copied to each host and made read-only (chmod a-w). Both
 * instances sign with the same keys; the store never changes; when the OCSP
 * responder certificate is due, the leader renews it for the same key (no
 * new key can enter a read-only store), and the follower adopts it through
 * the database (NOTIFY).
 */
(postgresUrl() || required('postgres') ? clusterDescribe() : describe.skip)('a software HSM store shared read-only by two instances', () => {
  const root = tempDir('hsmca-soft-cluster-');
  const dirs = [path.join(root, 'host-a'), path.join(root, 'host-b')];
  const clocks = [new FakeClock(), new FakeClock()];
  let pg: { url: string; drop(): Promise<void> };
  const services: RunningService[] = [];
  const env = (dataDir: string) => ({
    HSMCA_DATA_DIR: dataDir,
    HSMCA_DATABASE_URL: pg.url,
    HSMCA_HSM: 'soft',
    HSMCA_HSM_PIN: PIN,
    HSMCA_ADMIN_TOKEN: ADMIN,
    HSMCA_PORT: '0',
    HSMCA_HTTPS_PORT: '0',
    HSMCA_INSTANCES: '2',
    HSMCA_LOG_LEVEL: 'silent',
  });
  const storeHash = (dir: string) => createHash('sha256').update(fs.readFileSync(path.join(dir, 'soft-hsm.json'))).digest('hex');

  beforeAll(async () => {
    pg = await freshPostgres();
    // init on host A, then the store is copied to host B and made read-only on both
    const init = await startService(loadConfig(env(dirs[0])), { log: silentLogger, announce: () => undefined });
    await init.stop();
    fs.mkdirSync(dirs[1], { recursive: true, mode: 0o700 });
    fs.copyFileSync(path.join(dirs[0], 'soft-hsm.json'), path.join(dirs[1], 'soft-hsm.json'));
    for (const d of dirs) fs.chmodSync(path.join(d, 'soft-hsm.json'), 0o444);
    for (let i = 0; i < 2; i++) services.push(await startService(loadConfig(env(dirs[i])), { log: silentLogger, announce: () => undefined, clock: clocks[i] }));
  }, 60_000);
  afterAll(async () => {
    for (const s of services) await s.stop();
    await pg?.drop();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('refuses a new key in the read-only store, and says so', async () => {
    const hsm = await SoftHsm.open({ storePath: path.join(dirs[1], 'soft-hsm.json'), pin: PIN });
    await expect(hsm.generateKey('another', 'ecdsa-p256')).rejects.toMatchObject({ code: 'readOnly' });
    await hsm.close();
  });

  it('issues on A and answers OCSP on B with the same keys; the stores never change', async () => {
    const before = dirs.map(storeHash);
    const [a, b] = services;
    const issued = await fetch(`${a.url}/api/v1/certificates`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ csr: makeCsr({ sans: 'DNS:soft.cluster.example' }).csr }),
    });
    expect(issued.status).toBe(201);
    const { serialNumber, chain } = (await issued.json()) as { serialNumber: string; chain: string[] };
    const res = await fetch(`${b.url}/ocsp/${encodeURIComponent(ocspRequestDer(chain[0], serialNumber).toString('base64'))}`);
    expect(ocspStatusByOpenssl(Buffer.from(await res.arrayBuffer()), root)).toBe('good');
    expect(dirs.map(storeHash)).toEqual(before);
    expect(before[0]).toBe(before[1]);
  });

  it('renews the OCSP responder certificate on the leader for the same key; the follower adopts it through the database', async () => {
    const before = dirs.map(storeHash);
    const leader = services.find((s) => s.cluster.leadership.isLeader())!;
    const follower = services.find((s) => s !== leader)!;
    expect(leader).toBeDefined();
    const old = leader.core.responders.current();
    // 25 days on: the 30-day responder certificate is in its last third
    for (const c of clocks) c.advance(25 * DAY);
    await follower.core.responders.ensureFresh();
    expect(follower.core.responders.current().certificate).toEqual(old.certificate);
    await leader.core.responders.ensureFresh();
    const renewed = leader.core.responders.current();
    expect(renewed.certificate).not.toEqual(old.certificate);
    expect(renewed.label).toBe(old.label);
    await within(5_000, 'the follower adopts the renewed certificate', async () => Buffer.from(follower.core.responders.current().certificate).equals(Buffer.from(renewed.certificate)));
    expect(dirs.map(storeHash)).toEqual(before);
  }, 30_000);
});
