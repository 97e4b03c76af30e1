import * as pkcs11js from 'pkcs11js';
import { CLUSTER_KEK_LABEL } from '../src/hsm/pkcs11/cluster-kek';
import { Pkcs11Hsm } from '../src/hsm/pkcs11/pkcs11-hsm';
import { createSoftHsmTokens, pkcs11Describe, rawModule, slotOf, SoftHsmTokens, verifyWith as verify } from './helpers/softhsm';

/**
 * The cluster-mode weakness docs/hsm.md used to describe: the cluster wrapping
 * key (KEK) must be usable by the user, so a holder of the user PIN could wrap
 * a CA key under it and unwrap the blob as a non-sensitive object, then read
 * the private key. The KEK now carries CKA_UNWRAP_TEMPLATE (sensitive,
 * private, wrap-with-trusted) and CKA_WRAP_TEMPLATE (wrap-with-trusted keys
 * only), and SoftHSM2 refuses the attack. A control KEK made the old way,
 * without templates, shows that the same attack would succeed.
 */
const EC_P256 = Buffer.from('06082a8648ce3d030107', 'hex');

pkcs11Describe()('PKCS#11 cluster wrapping key: the unwrap template stops a user-PIN holder', () => {
  let t: SoftHsmTokens;
  let p11: pkcs11js.PKCS11;
  let hsm: Pkcs11Hsm;

  beforeAll(async () => {
    t = await createSoftHsmTokens(['u1', 'u2']);
    hsm = await Pkcs11Hsm.open({ module: t.module, tokenLabels: ['u1', 'u2'], pin: t.pin, soPin: t.soPin });
    p11 = rawModule(t.module);
  });
  afterAll(async () => {
    await hsm?.close();
    await t?.cleanup();
  });

  /** A session of the attacker: the user PIN only (the backend's login is shared by the process). */
  function userSession(label: string): Buffer {
    return p11.C_OpenSession(slotOf(p11, label), pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
  }
  function find(s: Buffer, template: pkcs11js.Template): Buffer {
    p11.C_FindObjectsInit(s, template);
    const [h] = p11.C_FindObjects(s, 1);
    p11.C_FindObjectsFinal(s);
    if (!h) throw new Error('object not found');
    return h;
  }
  /** The attack: wrap the CA key under `kek`, unwrap it as a non-sensitive, extractable session object, read CKA_VALUE. */
  function attack(s: Buffer, kek: Buffer, caKey: Buffer): Buffer {
    const blob = p11.C_WrapKey(s, { mechanism: pkcs11js.CKM_AES_KEY_WRAP_PAD }, kek, caKey, Buffer.alloc(4096));
    const clear = p11.C_UnwrapKey(s, { mechanism: pkcs11js.CKM_AES_KEY_WRAP_PAD }, kek, blob, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_EC },
      { type: pkcs11js.CKA_TOKEN, value: false },
      { type: pkcs11js.CKA_SENSITIVE, value: false },
      { type: pkcs11js.CKA_EXTRACTABLE, value: true },
    ]);
    return p11.C_GetAttributeValue(s, clear, [{ type: pkcs11js.CKA_VALUE }])[0].value!;
  }
  const ckr = (fn: () => unknown): string => {
    try {
      fn();
      return 'CKR_OK';
    } catch (e) {
      return (e as Error).message;
    }
  };

  it('refuses to unwrap a CA key as non-sensitive on every token of the cluster', async () => {
    const ca = await hsm.generateKey('hsmca-issuing-ca', 'ecdsa-p256');
    // cloning to u2 still works under the templates, and the key signs there
    expect(verify(ca, Buffer.from('probe'), await (await hsm.signer(ca.label)).sign(Buffer.from('probe')))).toBe(true);
    for (const label of ['u1', 'u2']) {
      const s = userSession(label);
      try {
        const kek = find(s, [{ type: pkcs11js.CKA_LABEL, value: CLUSTER_KEK_LABEL }]);
        const caKey = find(s, [
          { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
          { type: pkcs11js.CKA_LABEL, value: ca.label },
        ]);
        expect(ckr(() => attack(s, kek, caKey))).toMatch(/CKR_TEMPLATE_INCONSISTENT/);
        // a key that is not wrap-with-trusted cannot be wrapped under the KEK at all
        const pair = p11.C_GenerateKeyPair(
          s,
          { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN },
          [
            { type: pkcs11js.CKA_TOKEN, value: false },
            { type: pkcs11js.CKA_EC_PARAMS, value: EC_P256 },
          ],
          [
            { type: pkcs11js.CKA_TOKEN, value: false },
            { type: pkcs11js.CKA_SENSITIVE, value: true },
            { type: pkcs11js.CKA_EXTRACTABLE, value: true },
            { type: pkcs11js.CKA_WRAP_WITH_TRUSTED, value: false },
          ],
        );
        expect(ckr(() => p11.C_WrapKey(s, { mechanism: pkcs11js.CKM_AES_KEY_WRAP_PAD }, kek, pair.privateKey, Buffer.alloc(4096)))).toMatch(/CKR_KEY_NOT_WRAPPABLE|CKR_TEMPLATE/);
      } finally {
        p11.C_CloseSession(s);
      }
    }
  });

  it('(control) the same attack reads the key through a wrapping key made without the templates', () => {
    // one session on u2: the login state is per token and process, so the user logs in again afterwards
    const s = userSession('u2');
    const so = s;
    try {
      // as the SO made the KEK before: trusted, usable by the user, no templates
      p11.C_Logout(so);
      p11.C_Login(so, pkcs11js.CKU_SO, t.soPin);
      const label = 'old-style-kek';
      p11.C_GenerateKey(so, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
        { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
        { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_PRIVATE, value: false },
        { type: pkcs11js.CKA_SENSITIVE, value: true },
        { type: pkcs11js.CKA_TRUSTED, value: true },
        { type: pkcs11js.CKA_WRAP, value: true },
        { type: pkcs11js.CKA_UNWRAP, value: true },
        { type: pkcs11js.CKA_LABEL, value: label },
      ]);
      p11.C_Logout(so);
      p11.C_Login(so, pkcs11js.CKU_USER, t.pin);
      const kek = find(s, [{ type: pkcs11js.CKA_LABEL, value: label }]);
      const caKey = find(s, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
        { type: pkcs11js.CKA_LABEL, value: 'hsmca-issuing-ca' },
      ]);
      expect(attack(s, kek, caKey)).toHaveLength(32); // the P-256 private scalar, in the clear
    } finally {
      p11.C_CloseSession(s);
    }
  });
});
