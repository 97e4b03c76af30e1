import { createPublicKey } from 'node:crypto';
import { inspect } from 'node:util';
import * as pkcs11js from 'pkcs11js';
import { KeyInfo } from '../src/hsm/hsm';
import { KEY_ALGORITHMS, KeyAlgorithm, keyAlgorithmInfo } from '../src/hsm/key-algorithm';
import { bareSignLoop } from '../src/hsm/pkcs11/bare-sign-loop';
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

/** A test that needs OpenSC's pkcs11-tool: without it, a loud warning (or a failure when pkcs11 is required). */
const toolTest = pkcs11ToolAvailable()
  ? test
  : (name: string, _fn: () => Promise<void>) =>
      test(name, () => {
        const msg = `pkcs11-tool (OpenSC) not found: "${name}" did NOT run`;
        if (pkcs11Required()) throw new Error(msg);
        console.warn(`*** ${msg} ***`);
      });




d('PKCS#11 backend on one SoftHSM2 token', () => {
  let t: SoftHsmTokens;
  let hsm: Pkcs11Hsm;
  let p11: pkcs11js.PKCS11;
  const keys = new Map<KeyAlgorithm, KeyInfo>();

  beforeAll(async () => {
    t = await createSoftHsmTokens(['hsmca-a', 'hsmca-b']);
    hsm = await Pkcs11Hsm.open({ module: t.module, tokenLabels: ['hsmca-a'], pin: t.pin });
    // a test's own view of the module, opened after the backend so the backend owns C_Initialize/C_Finalize
    p11 = rawModule(t.module);
  });

  afterAll(async () => {
    await hsm?.close();
    await t?.cleanup();
  });

  test('is a single-token, non-cluster PKCS#11 HSM', async () => {
    expect(hsm.kind).toBe('pkcs11');
    expect(hsm.isCluster).toBe(false);
    expect(await hsm.health()).toEqual({ status: 'ok', tokens: [{ label: 'hsmca-a', status: 'ok' }] });
    expect(await hsm.listKeys()).toEqual([]);
  });

  test.each(KEY_ALGORITHMS)('generates %s on the token and signs with it', async (alg) => {
    const label = `ca-${alg}`;
    const info = await hsm.generateKey(label, alg);
    keys.set(alg, info);
    expect(info.label).toBe(label);
    expect(info.algorithm).toBe(alg);
    // the SPKI we build from CKA_EC_POINT / CKA_MODULUS is one node accepts
    const pub = createPublicKey({ key: info.publicKey, format: 'der', type: 'spki' });
    const ai = keyAlgorithmInfo(alg);
    if (ai.kind === 'ec') {
      expect(pub.asymmetricKeyType).toBe('ec');
      expect(pub.asymmetricKeyDetails?.namedCurve).toBe(ai.namedCurve === 'P-256' ? 'prime256v1' : 'secp384r1');
    } else {
      expect(pub.asymmetricKeyType).toBe('rsa');
      expect(pub.asymmetricKeyDetails?.modulusLength).toBe(ai.modulusLength);
      expect(pub.asymmetricKeyDetails?.publicExponent).toBe(65537n);
    }
    expect(pub.export({ format: 'der', type: 'spki' }).equals(info.publicKey)).toBe(true);

    const signer = await hsm.signer(label);
    expect(signer.publicKey.equals(info.publicKey)).toBe(true);
    for (const msg of ['', 'hello', 'x'.repeat(100000)]) {
      const data = Buffer.from(msg);
      const sig = await signer.sign(data);
      expect(verify(info, data, sig)).toBe(true);
      expect(verify(info, Buffer.concat([data, Buffer.from('!')]), sig)).toBe(false);
    }
  });

  test('getKey, listKeys, keyExists, keyNotFound', async () => {
    const p256 = keys.get('ecdsa-p256')!;
    expect(await hsm.getKey('ca-ecdsa-p256')).toEqual(p256);
    expect(await hsm.getKey('nope')).toBeUndefined();
    const list = await hsm.listKeys();
    expect(list.map((k) => k.label)).toEqual([...KEY_ALGORITHMS].map((a) => `ca-${a}`).sort());
    for (const k of list) expect(k).toEqual(keys.get(k.algorithm));
    expect((await errorOf(hsm.generateKey('ca-ecdsa-p256', 'ecdsa-p384'))).code).toBe('keyExists');
    const nf = await errorOf(hsm.signer('missing-key'));
    expect(nf.code).toBe('keyNotFound');
    expect(nf.message).toContain('missing-key');
  });

  test('keys carry the required attributes (read with C_GetAttributeValue)', () => {
    const slot = slotOf(p11, 'hsmca-a');
    const s = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
    try {
      // the backend logged the application in; this session shares the login
      expect(p11.C_GetSessionInfo(s).state).toBe(1 /* CKS_RO_USER_FUNCTIONS */);
      for (const alg of KEY_ALGORITHMS) {
        const label = `ca-${alg}`;
        const find = (cls: number) => {
          p11.C_FindObjectsInit(s, [
            { type: pkcs11js.CKA_CLASS, value: cls },
            { type: pkcs11js.CKA_LABEL, value: label },
          ]);
          const r = p11.C_FindObjects(s, 10);
          p11.C_FindObjectsFinal(s);
          return r;
        };
        const [priv, ...morePriv] = find(pkcs11js.CKO_PRIVATE_KEY);
        const [pub, ...morePub] = find(pkcs11js.CKO_PUBLIC_KEY);
        expect(priv).toBeDefined();
        expect(pub).toBeDefined();
        expect(morePriv).toHaveLength(0);
        expect(morePub).toHaveLength(0);
        const A = pkcs11js;
        const types = [
          A.CKA_TOKEN,
          A.CKA_PRIVATE,
          A.CKA_SENSITIVE,
          A.CKA_EXTRACTABLE,
          A.CKA_NEVER_EXTRACTABLE,
          A.CKA_ALWAYS_SENSITIVE,
          A.CKA_SIGN,
          A.CKA_WRAP_WITH_TRUSTED,
          A.CKA_LABEL,
          A.CKA_ID,
        ];
        const a = new Map(p11.C_GetAttributeValue(s, priv, types.map((type) => ({ type }))).map((x) => [x.type, x.value]));
        const b = (type: number) => a.get(type)![0] === 1;
        expect(b(A.CKA_TOKEN)).toBe(true);
        expect(b(A.CKA_PRIVATE)).toBe(true);
        expect(b(A.CKA_SENSITIVE)).toBe(true);
        expect(b(A.CKA_EXTRACTABLE)).toBe(false);
        expect(b(A.CKA_NEVER_EXTRACTABLE)).toBe(true);
        expect(b(A.CKA_ALWAYS_SENSITIVE)).toBe(true);
        expect(b(A.CKA_SIGN)).toBe(true);
        expect(b(A.CKA_WRAP_WITH_TRUSTED)).toBe(false);
        expect(a.get(A.CKA_LABEL)!.toString()).toBe(label);
        const id = a.get(A.CKA_ID)!;
        expect(id).toHaveLength(16);
        const pubId = p11.C_GetAttributeValue(s, pub, [{ type: A.CKA_ID }])[0].value;
        expect(pubId.equals(id)).toBe(true);
        // the private value cannot be read
        const valueAttr = keyAlgorithmInfo(alg).kind === 'ec' ? A.CKA_VALUE : A.CKA_PRIVATE_EXPONENT;
        expect(() => p11.C_GetAttributeValue(s, priv, [{ type: valueAttr }])).toThrow(/CKR_ATTRIBUTE_SENSITIVE/);
      }
    } finally {
      p11.C_CloseSession(s);
    }
  });

  toolTest('pkcs11-tool sees sensitive, never-extractable private keys', async () => {
    const out = await pkcs11ToolListObjects(t, 'hsmca-a', 'privkey');
    const blocks = out.split(/(?=Private Key Object)/).filter((b) => b.startsWith('Private Key Object'));
    expect(blocks).toHaveLength(KEY_ALGORITHMS.length);
    for (const alg of KEY_ALGORITHMS) {
      const block = blocks.find((b) => new RegExp(`label:\\s+ca-${alg}\\s`).test(b));
      expect(block).toBeDefined();
      const access = block!.match(/Access:\s*(.*)/)![1];
      expect(access).toMatch(/\bsensitive\b/);
      expect(access).toMatch(/never extractable/);
      expect(access).not.toMatch(/(^|, )extractable/);
      expect(block).toMatch(keyAlgorithmInfo(alg).kind === 'ec' ? /Private Key Object; EC/ : /Private Key Object; RSA/);
    }
  });

  test('tokenInfo lists the token, its keys and their attributes', async () => {
    const info = await hsm.tokenInfo();
    expect(info.cluster).toBe(false);
    expect(info.health.status).toBe('ok');
    expect(info.tokens).toHaveLength(1);
    const tok = info.tokens[0];
    expect(tok.label).toBe('hsmca-a');
    expect(tok.status).toBe('ok');
    expect(tok.manufacturer).toMatch(/SoftHSM/);
    expect(tok.keys.map((k) => k.label)).toEqual([...KEY_ALGORITHMS].map((a) => `ca-${a}`).sort());
    for (const k of tok.keys) {
      expect(k.algorithm).toBe(k.label.slice(3));
      expect(k.hasPublicKey).toBe(true);
      expect(k.attributes).toEqual({
        token: true,
        private: true,
        sensitive: true,
        alwaysSensitive: true,
        extractable: false,
        neverExtractable: true,
        wrapWithTrusted: false,
        local: true,
        sign: true,
      });
    }
    assertNoSecrets(JSON.stringify(info), t);
  });

  test('64 concurrent signatures all succeed (no CKR_OPERATION_ACTIVE)', async () => {
    for (const alg of ['ecdsa-p256', 'rsa-2048'] as const) {
      const signer = await hsm.signer(`ca-${alg}`);
      const data = Array.from({ length: 64 }, (_, i) => Buffer.from(`message ${i}`));
      const sigs = await Promise.all(data.map((m) => signer.sign(m)));
      sigs.forEach((sig, i) => expect(verify(signer, data[i], sig)).toBe(true));
    }
  });

  test('survives C_CloseAllSessions under the pool (retry on a fresh session, re-login)', async () => {
    const signer = await hsm.signer('ca-ecdsa-p256');
    await Promise.all(Array.from({ length: 16 }, () => signer.sign(Buffer.from('warm the pool'))));
    // closing every session of the application also logs it out of the token
    p11.C_CloseAllSessions(slotOf(p11, 'hsmca-a'));
    const data = Buffer.from('after the sessions were closed');
    expect(verify(signer, data, await signer.sign(data))).toBe(true);
    // and 64 concurrent signatures on a pool whose every session is dead. (The fault is
    // injected between calls: SoftHSM2 itself crashes when a session is closed while
    // another thread is inside C_Sign on it, which the backend never does.)
    await Promise.all(Array.from({ length: 16 }, () => signer.sign(Buffer.from('warm the pool again'))));
    p11.C_CloseAllSessions(slotOf(p11, 'hsmca-a'));
    const sigs = await Promise.all(Array.from({ length: 64 }, (_, i) => signer.sign(Buffer.from(`burst ${i}`))));
    sigs.forEach((sig, i) => expect(verify(signer, Buffer.from(`burst ${i}`), sig)).toBe(true));
    expect((await hsm.health()).status).toBe('ok');
  });

  test('the libuv path (signThreads: 0: C_SignInit + C_SignAsync) signs concurrently and survives faults too', async () => {
    const uv = await Pkcs11Hsm.open({ module: t.module, tokenLabels: ['hsmca-a'], pin: t.pin, signThreads: 0, sessionsPerToken: 4 });
    try {
      for (const alg of ['ecdsa-p384', 'rsa-3072'] as const) {
        const signer = await uv.signer(`ca-${alg}`);
        const data = Array.from({ length: 64 }, (_, i) => Buffer.from(`uv ${i}`));
        await Promise.all(data.map((m) => signer.sign(m)));
        p11.C_CloseAllSessions(slotOf(p11, 'hsmca-a')); // between calls, see above
        const sigs = await Promise.all(data.map((m) => signer.sign(m)));
        sigs.forEach((sig, i) => expect(verify(signer, data[i], sig)).toBe(true));
        expect(verify(signer, Buffer.alloc(0), await signer.sign(Buffer.alloc(0)))).toBe(true);
      }
    } finally {
      await uv.close();
    }
  });

  test('survives C_Logout by someone else in the process', async () => {
    const signer = await hsm.signer('ca-rsa-2048');
    const s = p11.C_OpenSession(slotOf(p11, 'hsmca-a'), pkcs11js.CKF_SERIAL_SESSION);
    try {
      p11.C_Logout(s);
      expect(p11.C_GetSessionInfo(s).state).toBe(0 /* CKS_RO_PUBLIC_SESSION */);
      const data = Buffer.from('after a logout');
      expect(verify(signer, data, await signer.sign(data))).toBe(true);
      expect(p11.C_GetSessionInfo(s).state).toBe(1 /* logged in again */);
      // health() logs in again too
      p11.C_Logout(s);
      expect((await hsm.health()).status).toBe('ok');
      expect(p11.C_GetSessionInfo(s).state).toBe(1);
    } finally {
      p11.C_CloseSession(s);
    }
  });

  test('two instances in one process share the module and its login', async () => {
    const other = await Pkcs11Hsm.open({ module: t.module, tokenLabels: ['hsmca-a'], pin: t.pin, sessionsPerToken: 2 });
    const signer = await other.signer('ca-ecdsa-p384');
    const data = Buffer.from('second instance');
    expect(verify(signer, data, await signer.sign(data))).toBe(true);
    await other.close();
    // closing it neither logged out nor finalised the module for the first instance
    const mine = await hsm.signer('ca-ecdsa-p384');
    expect(verify(mine, data, await mine.sign(data))).toBe(true);
    await expect(signer.sign(data)).rejects.toMatchObject({ code: 'hsmUnavailable' });
  });

  test('a wrong PIN is wrongPin, naming the token, and never shows the PIN', async () => {
    const bad = `${t.pin}-wrong`;
    const e = await errorOf(Pkcs11Hsm.open({ module: t.module, tokenLabels: ['hsmca-b'], pin: bad }));
    expect(e.code).toBe('wrongPin');
    expect(e.message).toContain('"hsmca-b"');
    expect(e.message).not.toContain(bad);
    assertNoSecrets(e.message, t);
    // hsmca-a is already logged in by `hsm` (the login is shared by the process and
    // C_Login then ignores the PIN): a second instance's PIN is still checked
    const e2 = await errorOf(Pkcs11Hsm.open({ module: t.module, tokenLabels: ['hsmca-a'], pin: bad }));
    expect(e2.code).toBe('wrongPin');
    expect(e2.message).toContain('"hsmca-a"');
    assertNoSecrets(e2.message, t);
    // and the first instance was not disturbed
    const signer = await hsm.signer('ca-ecdsa-p256');
    expect(verify(signer, Buffer.from('still here'), await signer.sign(Buffer.from('still here')))).toBe(true);
  });

  test('the instance itself shows no PIN (JSON, util.inspect)', async () => {
    const withSo = await Pkcs11Hsm.open({ module: t.module, tokenLabels: ['hsmca-a'], pin: t.pin, soPin: t.soPin });
    try {
      for (const text of [JSON.stringify(withSo), inspect(withSo, { depth: 10, showHidden: true }), String(withSo)]) {
        expect(text).not.toContain(t.pin);
        expect(text).not.toContain(t.soPin);
      }
      expect(JSON.parse(JSON.stringify(withSo))).toEqual({
        kind: 'pkcs11',
        module: t.module,
        tokens: ['hsmca-a'],
        cluster: false,
        closed: false,
      });
    } finally {
      await withSo.close();
    }
  });

  test('an unknown token label is a clear hsmConfig error', async () => {
    const e = await errorOf(Pkcs11Hsm.open({ module: t.module, tokenLabels: ['no-such-token'], pin: t.pin }));
    expect(e.code).toBe('hsmConfig');
    expect(e.message).toContain('"no-such-token"');
    expect(e.message).toContain('"hsmca-a"'); // what is there
    assertNoSecrets(e.message, t);
    const m = await errorOf(Pkcs11Hsm.open({ module: '/nonexistent/libpkcs11.so', tokenLabels: ['x'], pin: t.pin }));
    expect(m.code).toBe('hsmConfig');
    expect(m.message).toContain('/nonexistent/libpkcs11.so');
  });

  test('nothing the backend returns or throws carries PINs or key bytes', async () => {
    const texts: string[] = [];
    const collect = async (p: Promise<unknown>) => {
      try {
        const r = await p;
        texts.push(JSON.stringify(r, (_k, v) => (v && v.type === 'Buffer' ? '<public key>' : v)));
      } catch (e) {
        texts.push(String((e as Error).message));
      }
    };
    await collect(hsm.generateKey('ca-ecdsa-p256', 'ecdsa-p256'));
    await collect(hsm.generateKey('', 'ecdsa-p256'));
    await collect(hsm.generateKey('x', 'dsa-1024' as KeyAlgorithm));
    await collect(hsm.signer('missing'));
    await collect(hsm.tokenInfo());
    await collect(hsm.health());
    await collect(hsm.listKeys());
    await collect(hsm.addToken('hsmca-b'));
    await collect(Pkcs11Hsm.open({ module: t.module, tokenLabels: ['hsmca-a'], pin: 'not-the-pin' }));
    await collect(Pkcs11Hsm.open({ module: t.module, tokenLabels: ['hsmca-a', 'hsmca-b'], pin: t.pin, soPin: 'bad-so-pin' }));
    for (const text of texts) assertNoSecrets(text, t);
    expect(texts.join('\n')).toMatch(/keyExists|already exists/);
  });

  test('addToken refuses to clone keys generated outside cluster mode', async () => {
    const e = await errorOf(hsm.addToken('hsmca-b'));
    expect(e.code).toBe('hsmConfig');
    expect(e.message).toMatch(/non-extractable/);
    expect(hsm.tokenLabels).toEqual(['hsmca-a']);
  });

  test('bareSignLoop measures a plain C_Sign loop', async () => {
    const rate = await bareSignLoop({ module: t.module, tokenLabel: 'hsmca-a', pin: t.pin, keyLabel: 'ca-ecdsa-p256', seconds: 0.2 });
    expect(rate).toBeGreaterThan(10);
    // the backend's login survived the loop
    const signer = await hsm.signer('ca-ecdsa-p256');
    const data = Buffer.from('after the bare loop');
    expect(verify(signer, data, await signer.sign(data))).toBe(true);
  });

  test('close() ends signing cleanly', async () => {
    const local = await Pkcs11Hsm.open({ module: t.module, tokenLabels: ['hsmca-a'], pin: t.pin });
    const signer = await local.signer('ca-ecdsa-p256');
    const pending = Array.from({ length: 32 }, () => signer.sign(Buffer.from('x')));
    await local.close();
    // what was in flight finished before the sessions closed
    const settled = await Promise.allSettled(pending);
    expect(settled.every((r) => r.status === 'fulfilled')).toBe(true);
    await expect(signer.sign(Buffer.from('y'))).rejects.toMatchObject({ code: 'hsmUnavailable' });
    expect((await local.health()).status).toBe('down');
    await local.close(); // twice is fine
  });
});
