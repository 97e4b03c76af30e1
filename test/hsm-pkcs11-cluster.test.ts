import { rm } from 'node:fs/promises';
import * as pkcs11js from 'pkcs11js';
import { KeyInfo } from '../src/hsm/hsm';
import { CLUSTER_KEK_LABEL } from '../src/hsm/pkcs11/cluster-kek';
import { Pkcs11Hsm } from '../src/hsm/pkcs11/pkcs11-hsm';
import {
  assertNoSecrets,
  createSoftHsmTokens,
  hsmErrorOf as errorOf,
  pkcs11Describe,
  pkcs11Required,
  pkcs11ToolAvailable,
  pkcs11ToolListObjects,
  rawModule,
  slotOf,
  SoftHsmTokens,
  verifyWith as verify,
} from './helpers/softhsm';

const d = pkcs11Describe();




/** Objects with a label on one token, read through a test session (shares the backend's login). */
function objectsOn(p11: pkcs11js.PKCS11, token: string, label: string): { cls: number; id: string; attrs: Record<string, boolean> }[] {
  const s = p11.C_OpenSession(slotOf(p11, token), pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
  try {
    p11.C_FindObjectsInit(s, [{ type: pkcs11js.CKA_LABEL, value: label }]);
    const hs = p11.C_FindObjects(s, 20);
    p11.C_FindObjectsFinal(s);
    return hs.map((h) => {
      const [cls, id] = p11.C_GetAttributeValue(s, h, [{ type: pkcs11js.CKA_CLASS }, { type: pkcs11js.CKA_ID }]);
      const c = cls.value.readUInt32LE(0);
      const attrs: Record<string, boolean> = {};
      if (c === pkcs11js.CKO_PRIVATE_KEY || c === pkcs11js.CKO_SECRET_KEY) {
        const names = ['SENSITIVE', 'EXTRACTABLE', 'NEVER_EXTRACTABLE', 'WRAP_WITH_TRUSTED', 'PRIVATE', 'TOKEN'] as string[];
        if (c === pkcs11js.CKO_SECRET_KEY) names.push('TRUSTED'); // CKA_TRUSTED is no private key attribute
        const vals = p11.C_GetAttributeValue(
          s,
          h,
          names.map((n) => ({ type: (pkcs11js as unknown as Record<string, number>)[`CKA_${n}`] })),
        );
        names.forEach((n, i) => (attrs[n] = vals[i].value[0] === 1));
      }
      return { cls: c, id: id.value.toString('hex'), attrs };
    });
  } finally {
    p11.C_CloseSession(s);
  }
}

d('PKCS#11 backend: a cluster of SoftHSM2 tokens', () => {
  let t: SoftHsmTokens;
  let p11: pkcs11js.PKCS11;
  let hsm: Pkcs11Hsm;
  let ca: KeyInfo;

  beforeAll(async () => {
    // every token this file needs, in one configuration (SoftHSM2 reads it once per C_Initialize)
    t = await createSoftHsmTokens(['c1', 'c2', 'c3', 'n1', 'n2', 's1', 's2']);
  });

  afterAll(async () => {
    await hsm?.close();
    await t?.cleanup();
  });

  test('without the SO PIN a cluster opens and signs, but cannot clone keys', async () => {
    const noSo = await Pkcs11Hsm.open({ module: t.module, tokenLabels: ['n1', 'n2'], pin: t.pin });
    try {
      expect(noSo.isCluster).toBe(true);
      const e = await errorOf(noSo.generateKey('k', 'ecdsa-p256'));
      expect(e.code).toBe('hsmConfig');
      expect(e.message).toMatch(/SO PIN|security officer/);
      expect(e.message).toContain('"n1"');
      assertNoSecrets(e.message, t);
      expect(await noSo.listKeys()).toEqual([]); // nothing half-made
    } finally {
      await noSo.close();
    }
  });

  test('a wrong SO PIN is wrongPin naming the token', async () => {
    const e = await errorOf(Pkcs11Hsm.open({ module: t.module, tokenLabels: ['n1', 'n2'], pin: t.pin, soPin: 'not-the-so-pin' }));
    expect(e.code).toBe('wrongPin');
    expect(e.message).toMatch(/SO PIN/);
    expect(e.message).toMatch(/"n[12]"/);
    expect(e.message).not.toContain('not-the-so-pin');
  });

  test('with the SO PIN the cluster wrapping key is set up on every token, trusted and unreadable', async () => {
    p11 = rawModule(t.module);
    hsm = await Pkcs11Hsm.open({ module: t.module, tokenLabels: ['c1', 'c2'], pin: t.pin, soPin: t.soPin });
    expect(hsm.isCluster).toBe(true);
    const k1 = objectsOn(p11, 'c1', CLUSTER_KEK_LABEL);
    const k2 = objectsOn(p11, 'c2', CLUSTER_KEK_LABEL);
    expect(k1).toHaveLength(1);
    expect(k2).toHaveLength(1);
    expect(k1[0].cls).toBe(pkcs11js.CKO_SECRET_KEY);
    expect(k1[0].id).toBe(k2[0].id);
    for (const k of [k1[0], k2[0]]) {
      expect(k.attrs).toMatchObject({ TRUSTED: true, SENSITIVE: true, WRAP_WITH_TRUSTED: true, TOKEN: true });
    }
    // its value cannot be read
    const s = p11.C_OpenSession(slotOf(p11, 'c1'), pkcs11js.CKF_SERIAL_SESSION);
    try {
      p11.C_FindObjectsInit(s, [{ type: pkcs11js.CKA_LABEL, value: CLUSTER_KEK_LABEL }]);
      const [kek] = p11.C_FindObjects(s, 1);
      p11.C_FindObjectsFinal(s);
      expect(() => p11.C_GetAttributeValue(s, kek, [{ type: pkcs11js.CKA_VALUE }])).toThrow(/CKR_ATTRIBUTE_SENSITIVE/);
    } finally {
      p11.C_CloseSession(s);
    }
    // a second open finds it in place (no SO PIN needed any more)
    const again = await Pkcs11Hsm.open({ module: t.module, tokenLabels: ['c1', 'c2'], pin: t.pin });
    await again.close();
  });

  test('generateKey creates the key on both tokens with the same CKA_ID', async () => {
    ca = await hsm.generateKey('cluster-ca', 'ecdsa-p256');
    const rsa = await hsm.generateKey('cluster-rsa', 'rsa-2048');
    for (const [label, info] of [
      ['cluster-ca', ca],
      ['cluster-rsa', rsa],
    ] as const) {
      const on1 = objectsOn(p11, 'c1', label);
      const on2 = objectsOn(p11, 'c2', label);
      expect(on1).toHaveLength(2); // private and public key
      expect(on2).toHaveLength(2);
      const ids = new Set([...on1, ...on2].map((o) => o.id));
      expect(ids.size).toBe(1);
      expect([...ids][0]).toHaveLength(32);
      const priv1 = on1.find((o) => o.cls === pkcs11js.CKO_PRIVATE_KEY)!;
      const priv2 = on2.find((o) => o.cls === pkcs11js.CKO_PRIVATE_KEY)!;
      // clonable only under a trusted key, never readable
      expect(priv1.attrs).toMatchObject({ SENSITIVE: true, EXTRACTABLE: true, WRAP_WITH_TRUSTED: true, PRIVATE: true, TOKEN: true });
      expect(priv2.attrs).toMatchObject({ SENSITIVE: true, EXTRACTABLE: true, WRAP_WITH_TRUSTED: true, PRIVATE: true, TOKEN: true });
      // every token signs, and every signature verifies with the one public key
      for (const tok of ['c1', 'c2']) {
        const data = Buffer.from(`signed on ${tok}`);
        expect(verify(info, data, await hsm.signOn(tok, label, data))).toBe(true);
      }
    }
    expect((await hsm.getKey('cluster-ca'))!.publicKey.equals(ca.publicKey)).toBe(true);
  });

  test('a cluster key cannot be wrapped by an ordinary (untrusted) key', () => {
    const s = p11.C_OpenSession(slotOf(p11, 'c1'), pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    try {
      p11.C_FindObjectsInit(s, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
        { type: pkcs11js.CKA_LABEL, value: 'cluster-ca' },
      ]);
      const [priv] = p11.C_FindObjects(s, 1);
      p11.C_FindObjectsFinal(s);
      const userKey = p11.C_GenerateKey(s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
        { type: pkcs11js.CKA_TOKEN, value: false },
        { type: pkcs11js.CKA_WRAP, value: true },
        { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
      ]);
      expect(() => p11.C_WrapKey(s, { mechanism: pkcs11js.CKM_AES_KEY_WRAP_PAD }, userKey, priv, Buffer.alloc(4096))).toThrow(
        /CKR_KEY_NOT_WRAPPABLE/,
      );
      // and a user cannot make a key trusted
      expect(() => p11.C_SetAttributeValue(s, userKey, [{ type: pkcs11js.CKA_TRUSTED, value: true }])).toThrow(/CKR_ATTRIBUTE_READ_ONLY/);
    } finally {
      p11.C_CloseSession(s);
    }
  });

  test('keyExists is checked on every token', async () => {
    expect((await errorOf(hsm.generateKey('cluster-ca', 'ecdsa-p384'))).code).toBe('keyExists');
  });

  test('signing round-robins over the tokens, 64 in flight', async () => {
    const signer = await hsm.signer('cluster-ca');
    const data = Array.from({ length: 64 }, (_, i) => Buffer.from(`m${i}`));
    const sigs = await Promise.all(data.map((m) => signer.sign(m)));
    sigs.forEach((sig, i) => expect(verify(ca, data[i], sig)).toBe(true));
  });

  test('addToken clones every CA key to a new token', async () => {
    await hsm.addToken('c3');
    expect(hsm.tokenLabels).toEqual(['c1', 'c2', 'c3']);
    for (const label of ['cluster-ca', 'cluster-rsa']) {
      const on3 = objectsOn(p11, 'c3', label);
      expect(on3).toHaveLength(2);
      expect(on3[0].id).toBe(objectsOn(p11, 'c1', label)[0].id);
      const info = (await hsm.getKey(label))!;
      const data = Buffer.from('signed on c3');
      expect(verify(info, data, await hsm.signOn('c3', label, data))).toBe(true);
    }
    expect(objectsOn(p11, 'c3', CLUSTER_KEK_LABEL)[0].id).toBe(objectsOn(p11, 'c1', CLUSTER_KEK_LABEL)[0].id);
    // a second call finds the keys already there
    await hsm.addToken('c3');
    expect(objectsOn(p11, 'c3', 'cluster-ca')).toHaveLength(2);
  });

  test('tokenInfo shows every token, the cluster key and the key attributes', async () => {
    const info = await hsm.tokenInfo();
    expect(info.cluster).toBe(true);
    expect(info.health.status).toBe('ok');
    expect(info.tokens.map((x) => x.label)).toEqual(['c1', 'c2', 'c3']);
    const kekIds = new Set(info.tokens.map((x) => x.clusterKek?.id));
    expect(kekIds.size).toBe(1);
    for (const tok of info.tokens) {
      expect(tok.clusterKek).toMatchObject({ present: true, trusted: true });
      expect(tok.keys.map((k) => k.label)).toEqual(['cluster-ca', 'cluster-rsa']);
      for (const k of tok.keys) {
        expect(k.attributes).toMatchObject({ token: true, private: true, sensitive: true, extractable: true, wrapWithTrusted: true, sign: true });
      }
    }
    // generated on c1, unwrapped on c2/c3
    expect(info.tokens[0].keys[0].attributes.local).toBe(true);
    expect(info.tokens[1].keys[0].attributes.local).toBe(false);
    assertNoSecrets(JSON.stringify(info), t);
  });

  test('a missing cluster token fails the start, unless requireAllTokens is false', async () => {
    const e = await errorOf(Pkcs11Hsm.open({ module: t.module, tokenLabels: ['c2', 'c-missing'], pin: t.pin }));
    expect(e.code).toBe('hsmConfig');
    expect(e.message).toContain('"c-missing"');
    const degraded = await Pkcs11Hsm.open({ module: t.module, tokenLabels: ['c2', 'c-missing'], pin: t.pin, requireAllTokens: false });
    try {
      const health = await degraded.health();
      expect(health.status).toBe('degraded');
      expect(health.tokens).toEqual([
        { label: 'c2', status: 'ok' },
        { label: 'c-missing', status: 'down', error: expect.any(String) },
      ]);
      const signer = await degraded.signer('cluster-ca');
      const data = Buffer.from('degraded start');
      expect(verify(ca, data, await signer.sign(data))).toBe(true);
    } finally {
      await degraded.close();
    }
  });

  test('pkcs11-tool shows the cloned private keys sensitive', async () => {
    if (!pkcs11ToolAvailable()) {
      if (pkcs11Required()) throw new Error('pkcs11-tool (OpenSC) not found');
      console.warn('*** pkcs11-tool (OpenSC) not found: the pkcs11-tool check did NOT run ***');
      return;
    }
    for (const tok of ['c1', 'c2']) {
      const out = await pkcs11ToolListObjects(t, tok, 'privkey');
      const block = out.split(/(?=Private Key Object)/).find((b) => /label:\s+cluster-ca\s/.test(b))!;
      expect(block).toBeDefined();
      expect(block.match(/Access:\s*(.*)/)![1]).toMatch(/\bsensitive\b/);
    }
  });

  test('addToken refuses keys generated outside cluster mode, and non-clusters refuse nothing else', async () => {
    const solo = await Pkcs11Hsm.open({ module: t.module, tokenLabels: ['s1'], pin: t.pin, soPin: t.soPin });
    try {
      await solo.generateKey('solo-ca', 'ecdsa-p384');
      const e = await errorOf(solo.addToken('s2'));
      expect(e.code).toBe('hsmConfig');
      expect(e.message).toContain('solo-ca');
      expect(e.message).toMatch(/non-extractable/);
      expect(objectsOn(p11, 's2', 'solo-ca')).toHaveLength(0);
    } finally {
      await solo.close();
    }
  });

  test('failover: a token whose store disappears while signing; health() reports it', async () => {
    const signer = await hsm.signer('cluster-ca');
    const c1Dir = await t.tokenDir('c1');
    let ok = 0;
    let failed = 0;
    let removed = false;
    const deadline = Date.now() + 1500;
    const worker = async (n: number) => {
      while (Date.now() < deadline) {
        const data = Buffer.from(`loop ${n} ${ok}`);
        try {
          const sig = await signer.sign(data);
          if (verify(ca, data, sig)) ok++;
          else failed++;
        } catch {
          failed++;
        }
      }
    };
    const killer = (async () => {
      await new Promise((r) => setTimeout(r, 300));
      await rm(c1Dir, { recursive: true, force: true });
      removed = true;
    })();
    await Promise.all([...Array.from({ length: 8 }, (_, i) => worker(i)), killer]);
    expect(removed).toBe(true);
    expect(failed).toBe(0);
    expect(ok).toBeGreaterThan(100);

    const health = await hsm.health();
    expect(health.status).toBe('degraded');
    const c1 = health.tokens.find((x) => x.label === 'c1')!;
    expect(c1.status).toBe('down');
    expect(c1.error).toBeTruthy();
    expect(health.tokens.filter((x) => x.status === 'ok').map((x) => x.label)).toEqual(['c2', 'c3']);

    // reads go to the first healthy token
    expect((await hsm.getKey('cluster-ca'))!.publicKey.equals(ca.publicKey)).toBe(true);
    expect((await hsm.listKeys()).map((k) => k.label)).toEqual(['cluster-ca', 'cluster-rsa']);
    const info = await hsm.tokenInfo();
    expect(info.tokens.find((x) => x.label === 'c1')!.status).toBe('down');
    assertNoSecrets(JSON.stringify(info), t);

    // signOn the dead token is an error naming it, not a crash
    const e = await errorOf(hsm.signOn('c1', 'cluster-ca', Buffer.from('x')));
    expect(e.message).toContain('c1');
  });

  test('when every token fails: hsmUnavailable naming them', async () => {
    const signer = await hsm.signer('cluster-ca');
    await rm(await t.tokenDir('c2'), { recursive: true, force: true });
    await rm(await t.tokenDir('c3'), { recursive: true, force: true });
    const e = await errorOf(signer.sign(Buffer.from('nobody left')));
    expect(e.code).toBe('hsmUnavailable');
    for (const tok of ['c1', 'c2', 'c3']) expect(e.message).toContain(`"${tok}"`);
    assertNoSecrets(e.message, t);
    const health = await hsm.health();
    expect(health.status).toBe('down');
    expect((await errorOf(hsm.listKeys())).code).toBe('hsmUnavailable');
  });
});
