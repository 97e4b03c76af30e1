import { clusterDescribe, crlFrom, HsmcaCluster, ocspStatusAt, startCluster, within } from './helpers/cluster';
import { makeCsr } from './helpers/csr';

/**
 * Three instances serve as one CA (contract section 8): a certificate issued
 * through one is known to the others, a revocation through instance A is
 * answered `revoked` by OCSP on B and C at once (judged by openssl), and is
 * in the next CRL whichever instance serves it.
 */
clusterDescribe()('three instances as one CA', () => {
  let cluster: HsmcaCluster;
  let issuer: string;
  beforeAll(async () => {
    cluster = await startCluster({ instances: 3 });
    issuer = (await cluster.api('GET', '/api/v1/ca', { token: null })).body.issuer;
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it('issues on A; B and C know the certificate and answer good', async () => {
    const [a, b, c] = cluster.instances;
    const r = await cluster.api('POST', '/api/v1/certificates', { base: a.url, body: { csr: makeCsr({ sans: 'DNS:one.cluster.example' }).csr } });
    expect(r.status).toBe(201);
    for (const i of [b, c]) {
      expect((await cluster.api('GET', `/api/v1/certificates/${r.body.serialNumber}`, { base: i.url })).body.status).toBe('good');
      expect(await ocspStatusAt(i.url, issuer, r.body.serialNumber, cluster.root)).toBe('good');
    }
  });

  it('revoked on A: OCSP on B and C says revoked at once; the next CRL on every instance lists it', async () => {
    const [a, b, c] = cluster.instances;
    const issued = await cluster.api('POST', '/api/v1/certificates', { base: b.url, body: { csr: makeCsr({ slot: 1, sans: 'DNS:two.cluster.example' }).csr } });
    const serial: string = issued.body.serialNumber;
    const before = await crlFrom(c.url, cluster.root);
    const revoked = await cluster.api('POST', `/api/v1/certificates/${serial}/revoke`, { base: a.url, body: { reason: 'keyCompromise' } });
    expect(revoked.status).toBe(200);
    // no waiting: the very next OCSP request on each other instance
    expect(await ocspStatusAt(b.url, issuer, serial, cluster.root)).toBe('revoked');
    expect(await ocspStatusAt(c.url, issuer, serial, cluster.root)).toBe('revoked');
    // the leader builds the next CRL (a few seconds after the revocation); every instance serves it
    const took: number[] = [];
    for (const i of cluster.instances) {
      took.push(await within(10_000, `the CRL on ${i.name} lists ${serial}`, async () => (await crlFrom(i.url, cluster.root)).serials.includes(serial)));
    }
    const crls = await Promise.all(cluster.instances.map((i) => crlFrom(i.url, cluster.root)));
    expect(new Set(crls.map((x) => x.number)).size).toBe(1);
    expect(crls[0].number).toBeGreaterThan(before.number);
    console.log(`revocation on A: OCSP revoked on B and C at once; the CRL listing it served by A, B, C after ${took.join(', ')} ms`);
  }, 30_000);

  it('keeps serials unique across instances issuing at once', async () => {
    const csr = makeCsr({ slot: 2, sans: 'DNS:many.cluster.example' }).csr;
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, k) => cluster.api('POST', '/api/v1/certificates', { base: cluster.instances[k % 3].url, body: { csr } })),
    );
    expect(results.map((r) => r.status)).toEqual(Array(30).fill(201));
    expect(new Set(results.map((r) => r.body.serialNumber)).size).toBe(30);
  }, 30_000);
});
