import { Pkcs11Hsm } from '../src/hsm/pkcs11/pkcs11-hsm';
import { createSoftHsmTokens, pkcs11Describe, SoftHsmTokens } from './helpers/softhsm';

const d = pkcs11Describe();

/**
 * SoftHSM2 reads SOFTHSM2_CONF at C_Initialize. The backend finalises the module
 * when its last instance closes, so the next open reads the configuration again;
 * while an instance is open, the module stays initialised with the old one.
 */
d('PKCS#11 backend and SOFTHSM2_CONF', () => {
  const fixtures: SoftHsmTokens[] = [];

  afterAll(async () => {
    for (const f of fixtures.reverse()) await f.cleanup();
  });

  test('a configuration change takes effect at the next C_Initialize, after the last close', async () => {
    const a = await createSoftHsmTokens(['conf-a']);
    fixtures.push(a);
    const first = await Pkcs11Hsm.open({ module: a.module, tokenLabels: ['conf-a'], pin: a.pin });
    await first.generateKey('k', 'ecdsa-p256');

    const b = await createSoftHsmTokens(['conf-b'], { pin: a.pin });
    fixtures.push(b);
    // still initialised with configuration A: conf-b is not visible yet
    await expect(Pkcs11Hsm.open({ module: b.module, tokenLabels: ['conf-b'], pin: b.pin })).rejects.toMatchObject({
      code: 'hsmConfig',
    });
    await first.close(); // last instance: C_Finalize

    const second = await Pkcs11Hsm.open({ module: b.module, tokenLabels: ['conf-b'], pin: b.pin });
    expect(await second.listKeys()).toEqual([]);
    await expect(Pkcs11Hsm.open({ module: a.module, tokenLabels: ['conf-a'], pin: a.pin })).rejects.toMatchObject({
      code: 'hsmConfig',
      message: expect.stringContaining('"conf-b"'),
    });
    await second.close();
  });
});
