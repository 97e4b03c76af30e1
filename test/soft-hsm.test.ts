import { createDecipheriv, createPrivateKey, createPublicKey, scryptSync, verify, createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HsmError } from '../src/hsm/hsm';
import { KEY_ALGORITHMS, keyAlgorithmInfo } from '../src/hsm/key-algorithm';
import { SoftHsm } from '../src/hsm/soft/soft-hsm';
import { tempDir } from './helpers/harness';

const PIN = 'correct horse battery staple';

/** Reads the private keys out of a store file the way only the PIN holder could: the test's own decryptor. */
function privateScalars(storePath: string, pin: string): Buffer[] {
  const file = JSON.parse(fs.readFileSync(storePath, 'utf8'));
  const kek = scryptSync(pin, Buffer.from(file.kdf.salt, 'base64'), 32, { N: file.kdf.N, r: file.kdf.r, p: file.kdf.p, maxmem: 256 * 1024 * 1024 });
  return file.keys.map((k: { label: string; algorithm: string; publicKey: string; iv: string; tag: string; wrapped: string }) => {
    const d = createDecipheriv('aes-256-gcm', kek, Buffer.from(k.iv, 'base64'));
    d.setAuthTag(Buffer.from(k.tag, 'base64'));
    d.setAAD(Buffer.from(JSON.stringify([k.label, k.algorithm, k.publicKey])));
    const pkcs8 = Buffer.concat([d.update(Buffer.from(k.wrapped, 'base64')), d.final()]);
    const jwk = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({ format: 'jwk' });
    return Buffer.from(jwk.d as string, 'base64url');
  });
}

/** Every string and buffer reachable from a value, as hex and text, to search for secrets. */
function flatten(v: unknown, out: string[] = [], seen = new Set<unknown>()): string[] {
  if (v === null || v === undefined || seen.has(v)) return out;
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) {
    out.push(Buffer.from(v).toString('hex'));
    return out;
  }
  if (typeof v === 'string') {
    out.push(v, Buffer.from(v).toString('hex'));
    return out;
  }
  if (typeof v === 'object') {
    seen.add(v);
    for (const k of Object.getOwnPropertyNames(v)) flatten((v as Record<string, unknown>)[k], out, seen);
  }
  return out;
}

describe('software HSM', () => {
  let dir: string;
  let store: string;
  beforeEach(() => {
    dir = tempDir();
    store = path.join(dir, 'soft-hsm.json');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it.each(KEY_ALGORITHMS.map((a) => [a]))('generates a %s key inside and signs with it', async (alg) => {
    const hsm = await SoftHsm.open({ storePath: store, pin: PIN });
    const info = await hsm.generateKey('ca-key', alg);
    expect(info.algorithm).toBe(alg);
    const pub = createPublicKey({ key: info.publicKey, format: 'der', type: 'spki' });
    const signer = await hsm.signer('ca-key');
    const data = Buffer.from('to be signed');
    const sig = await signer.sign(data);
    expect(verify(keyAlgorithmInfo(alg).hash, data, { key: pub, dsaEncoding: 'der' }, sig)).toBe(true);
    expect(verify(keyAlgorithmInfo(alg).hash, Buffer.from('other'), { key: pub, dsaEncoding: 'der' }, sig)).toBe(false);
    await hsm.close();
  });

  it('persists keys encrypted, reopens them with the PIN, and never shows private key material', async () => {
    const logs: string[] = [];
    const hsm = await SoftHsm.open({ storePath: store, pin: PIN });
    const outputs: unknown[] = [];
    outputs.push(await hsm.generateKey('a', 'ecdsa-p256'));
    outputs.push(await hsm.generateKey('b', 'rsa-2048'));
    outputs.push(await hsm.listKeys(), await hsm.getKey('a'), await hsm.signer('a'), await hsm.signer('b'), await hsm.health());
    for (const call of [() => hsm.generateKey('a', 'ecdsa-p256'), () => hsm.signer('missing'), () => hsm.generateKey('', 'ecdsa-p256')]) {
      await call().then(
        () => logs.push('no error'),
        (e) => outputs.push(e, (e as Error).message, (e as Error).stack),
      );
    }
    expect(logs).toEqual([]);
    await hsm.close();
    const secrets = privateScalars(store, PIN);
    expect(secrets).toHaveLength(2);
    const fileText = fs.readFileSync(store, 'utf8');
    const seen = flatten(outputs).join('\n') + '\n' + fileText + Buffer.from(fileText).toString('hex');
    for (const s of secrets) {
      expect(seen).not.toContain(s.toString('hex'));
      expect(seen).not.toContain(s.toString('base64'));
      expect(seen).not.toContain(s.toString('base64url'));
    }
    expect((fs.statSync(store).mode & 0o777).toString(8)).toBe('600');

    const again = await SoftHsm.open({ storePath: store, pin: PIN });
    expect((await again.listKeys()).map((k) => k.label).sort()).toEqual(['a', 'b']);
    const s = await again.signer('a');
    const sig = await s.sign(Buffer.from('x'));
    expect(verify('sha256', Buffer.from('x'), { key: createPublicKey({ key: s.publicKey, format: 'der', type: 'spki' }), dsaEncoding: 'der' }, sig)).toBe(true);
    await again.close();
  });

  it('refuses a wrong PIN with a clear error', async () => {
    const hsm = await SoftHsm.open({ storePath: store, pin: PIN });
    await hsm.generateKey('a', 'ecdsa-p256');
    await hsm.close();
    await expect(SoftHsm.open({ storePath: store, pin: 'not the pin at all' })).rejects.toMatchObject({ code: 'wrongPin' });
  });

  it.each([
    ['a changed ciphertext', (f: any) => (f.keys[0].wrapped = Buffer.from('x'.repeat(40)).toString('base64'))],
    ['a changed public key', (f: any) => (f.keys[0].publicKey = f.keys[1].publicKey)],
    ['a removed key', (f: any) => f.keys.pop()],
    ['reordered keys', (f: any) => f.keys.reverse()],
    ['a relabelled key', (f: any) => (f.keys[0].label = 'evil')],
  ])('refuses a store with %s and regenerates nothing', async (_what, mutate) => {
    const hsm = await SoftHsm.open({ storePath: store, pin: PIN });
    await hsm.generateKey('a', 'ecdsa-p256');
    await hsm.generateKey('b', 'ecdsa-p256');
    await hsm.close();
    const f = JSON.parse(fs.readFileSync(store, 'utf8'));
    mutate(f);
    fs.writeFileSync(store, JSON.stringify(f));
    const before = fs.readFileSync(store);
    const err = await SoftHsm.open({ storePath: store, pin: PIN }).catch((e) => e);
    expect(err).toBeInstanceOf(HsmError);
    expect(err.code).toBe('storeTampered');
    expect(fs.readFileSync(store).equals(before)).toBe(true);
  });

  it('refuses a store that is not JSON', async () => {
    fs.writeFileSync(store, 'garbage');
    await expect(SoftHsm.open({ storePath: store, pin: PIN })).rejects.toMatchObject({ code: 'storeTampered' });
  });

  it('signs concurrently and fails cleanly once closed', async () => {
    const hsm = await SoftHsm.open({ storePath: store, pin: PIN });
    await hsm.generateKey('k', 'ecdsa-p384');
    const signer = await hsm.signer('k');
    const sigs = await Promise.all(Array.from({ length: 64 }, (_, i) => signer.sign(Buffer.from(`m${i}`))));
    expect(new Set(sigs.map((s) => createHash('sha1').update(s).digest('hex'))).size).toBe(64);
    await hsm.close();
    await expect(signer.sign(Buffer.from('late'))).rejects.toMatchObject({ code: 'hsmUnavailable' });
    expect((await hsm.health()).status).toBe('down');
  });
});
