import { rm } from 'node:fs/promises';
import { runAsync, startTestCa, TestCa } from './helpers/harness';
import { makeCsr, writeTemp } from './helpers/csr';
import { createSoftHsmTokens, pkcs11Describe, SoftHsmTokens } from './helpers/softhsm';

/**
 * The whole CA on a two-token PKCS#11 cluster: one token is destroyed while
 * the service is under issuance and OCSP load, and both keep answering from
 * the other token; /healthz says degraded and names the lost token.
 */
pkcs11Describe()('a two-token HSM cluster losing one token', () => {
  let tokens: SoftHsmTokens;
  let ca: TestCa;
  beforeAll(async () => {
    tokens = await createSoftHsmTokens(['node-a', 'node-b']);
    ca = await startTestCa(
      { name: 'sqlite+pkcs11-cluster', database: 'sqlite', hsm: 'pkcs11' },
      {
        env: {
          HSMCA_HSM: 'pkcs11',
          HSMCA_PKCS11_MODULE: tokens.module,
          HSMCA_PKCS11_TOKEN_LABEL: 'node-a,node-b',
          HSMCA_PKCS11_PIN: tokens.pin,
          HSMCA_PKCS11_SO_PIN: tokens.soPin,
          HSMCA_ISSUE_RATE_PER_TOKEN: '0',
          HSMCA_ISSUE_RATE_PER_ADDRESS: '0',
        },
      },
    );
  });
  afterAll(async () => {
    await ca?.stop();
    await tokens?.cleanup();
  });

  it('keeps issuing and answering OCSP while a token is lost mid-load', async () => {
    const chain = (await ca.api('GET', '/api/v1/ca', { token: null })).body;
    const issuerFile = writeTemp('issuer.pem', chain.issuer);
    const rootFile = writeTemp('root.pem', chain.root);
    expect((await ca.api('GET', '/healthz', { token: null })).body.hsm.status).toBe('ok');
    const csrs = [0, 1, 2].map((i) => makeCsr({ slot: i, sans: `DNS:cluster-${i}.example` }).csr);
    let stop = false;
    const statuses: number[] = [];
    const issued: string[] = [];
    const load = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const r = await ca.api('POST', '/api/v1/certificates', { body: { csr: csrs[(w + i) % csrs.length] } });
        statuses.push(r.status);
        if (r.status === 201) issued.push(r.body.certificate);
      }
    };
    const workers = [0, 1, 2, 3].map(load);
    await new Promise((r) => setTimeout(r, 400));
    // the token's store disappears under the running service
    await rm(await tokens.tokenDir('node-b'), { recursive: true, force: true });
    const before = statuses.length;
    await new Promise((r) => setTimeout(r, 1500));
    stop = true;
    await Promise.all(workers);
    expect(statuses.length - before).toBeGreaterThan(20);
    expect(statuses.filter((s) => s !== 201)).toEqual([]);

    // certificates issued after the loss verify, and OCSP signs from the surviving token
    const last = writeTemp('after-loss.pem', issued[issued.length - 1]);
    const v = await runAsync('openssl', ['verify', '-CAfile', rootFile, '-untrusted', issuerFile, last]);
    expect(v.out).toMatch(/: OK/);
    for (let i = 0; i < 3; i++) {
      const o = await runAsync('openssl', ['ocsp', '-issuer', issuerFile, '-cert', last, '-CAfile', rootFile, '-url', `${ca.url}/ocsp`]);
      expect(o.out).toMatch(/Response verify OK/);
      expect(o.out).toMatch(/: good/);
    }
    const h = await ca.api('GET', '/healthz', { token: null });
    expect(h.status).toBe(200);
    expect(h.body.status).toBe('degraded');
    expect(h.body.hsm.tokens).toEqual(expect.arrayContaining([expect.objectContaining({ label: 'node-b', status: 'down' }), expect.objectContaining({ label: 'node-a', status: 'ok' })]));
  });
});
