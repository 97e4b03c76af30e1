import { KeyObject, createPrivateKey, createPublicKey, webcrypto, scrypt as scryptCb, randomBytes, createCipheriv, createDecipheriv, createHmac, sign as cryptoSign, timingSafeEqual } from 'node:crypto';
import { promises as fs, constants as fsc } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { Hsm, HsmError, HsmHealth, KeyBackup, KeyInfo, Signer, WrappedKey } from '../hsm';
import { KeyAlgorithm, isKeyAlgorithm, keyAlgorithmInfo } from '../key-algorithm';

const scrypt = promisify(scryptCb) as (pw: string, salt: Buffer, len: number, opts: object) => Promise<Buffer>;
const subtle = webcrypto.subtle;
type CryptoKey = webcrypto.CryptoKey;

export interface SoftHsmOptions {
  /** the key store file; created on first use */
  storePath: string;
  /** unlocks the store: the key-encryption key is derived from it with scrypt */
  pin: string;
}

/** RFC 5649's alternative initial value, as OpenSSL's id-aes256-wrap-pad takes it. */
const KWP_IV = Buffer.from('A65959A6', 'hex');

/** scrypt cost: about 100 ms and 32 MiB on a current core, paid once per start. */
const KDF = { N: 1 << 15, r: 8, p: 1 };

interface StoreFile {
  format: 'hsmca-soft-hsm';
  version: 1;
  kdf: { name: 'scrypt'; salt: string; N: number; r: number; p: number };
  /** HMAC of a constant under the PIN-derived key: tells a wrong PIN from a tampered store */
  pinCheck: string;
  keys: SealedKey[];
  /** HMAC over the key list: catches a key removed, added or reordered */
  mac: string;
}

/** A key as persisted: its PKCS#8 encrypted with AES-256-GCM, bound to its label, type and public key. */
interface SealedKey {
  label: string;
  algorithm: KeyAlgorithm;
  publicKey: string;
  createdAt: string;
  iv: string;
  tag: string;
  wrapped: string;
}

interface LoadedKey extends KeyInfo {
  privateKey: CryptoKey;
}

function importParams(alg: KeyAlgorithm): webcrypto.EcKeyImportParams | webcrypto.RsaHashedImportParams {
  const info = keyAlgorithmInfo(alg);
  return info.kind === 'ec'
    ? { name: 'ECDSA', namedCurve: info.namedCurve! }
    : { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
}

/**
 * The embedded software HSM. Keys are generated inside it, held in memory only as
 * non-extractable WebCrypto keys, and persisted in one file encrypted with
 * AES-256-GCM under a key derived from the PIN. A wrong PIN or a changed file
 * stops it from opening; nothing is ever regenerated silently.
 */
export class SoftHsm implements Hsm, KeyBackup {
  readonly kind = 'soft' as const;
  private keys = new Map<string, LoadedKey>();
  /** the encrypted form of every key, re-sealed on each change */
  private sealed: SealedKey[] = [];
  private kek!: Buffer;
  private salt!: Buffer;
  private closed = false;
  private writing: Promise<void> = Promise.resolve();
  /**
   * The store file has no write permission for anyone (chmod a-w): the copy
   * several instances' hosts share, read-only after init (docs/hsm.md). Keys
   * are used, never added; checked by mode bits, so it holds for root too.
   */
  private readOnly = false;

  private constructor(private readonly opts: SoftHsmOptions) {}

  static async open(opts: SoftHsmOptions): Promise<SoftHsm> {
    if (!opts.pin) throw new HsmError('hsmConfig', 'the software HSM needs a PIN');
    const hsm = new SoftHsm(opts);
    await hsm.load();
    return hsm;
  }

  private async load(): Promise<void> {
    let text: string | undefined;
    try {
      text = await fs.readFile(this.opts.storePath, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new HsmError('hsmUnavailable', `cannot read the software HSM store ${this.opts.storePath}: ${(e as Error).message}`);
      }
    }
    if (text === undefined) {
      this.salt = randomBytes(16);
      this.kek = await this.deriveKek(this.salt, KDF);
      await this.persist();
      return;
    }
    let file: StoreFile;
    try {
      file = JSON.parse(text);
      if (file.format !== 'hsmca-soft-hsm' || file.version !== 1 || file.kdf?.name !== 'scrypt') throw new Error('format');
    } catch {
      throw new HsmError('storeTampered', `the software HSM store ${this.opts.storePath} is not a valid key store (changed or damaged)`);
    }
    this.readOnly = ((await fs.stat(this.opts.storePath)).mode & 0o222) === 0;
    this.salt = Buffer.from(file.kdf.salt, 'base64');
    this.kek = await this.deriveKek(this.salt, file.kdf);
    const check = createHmac('sha256', this.kek).update('hsmca pin check').digest();
    const stored = Buffer.from(file.pinCheck ?? '', 'base64');
    if (stored.length !== check.length || !timingSafeEqual(stored, check)) {
      throw new HsmError('wrongPin', 'the HSM PIN does not unlock the software HSM store (wrong HSMCA_HSM_PIN?)');
    }
    const keys = Array.isArray(file.keys) ? file.keys : [];
    const mac = Buffer.from(String(file.mac ?? ''), 'base64');
    const expected = this.macOf(keys);
    if (mac.length !== expected.length || !timingSafeEqual(mac, expected)) {
      throw new HsmError('storeTampered', `the software HSM store ${this.opts.storePath} fails its integrity check (changed or damaged)`);
    }
    for (const k of keys) {
      if (!isKeyAlgorithm(k.algorithm)) throw new HsmError('storeTampered', 'the software HSM store holds an unknown key type');
      await this.adopt(k);
    }
  }

  private async deriveKek(salt: Buffer, p: { N: number; r: number; p: number }): Promise<Buffer> {
    return scrypt(this.opts.pin, salt, 32, { N: p.N, r: p.r, p: p.p, maxmem: 256 * p.N * p.r + 1024 * 1024 });
  }

  private macOf(keys: SealedKey[]): Buffer {
    return createHmac('sha256', this.kek).update('hsmca key list\0').update(JSON.stringify(keys)).digest();
  }

  private static aad(k: Pick<SealedKey, 'label' | 'algorithm' | 'publicKey'>): Buffer {
    return Buffer.from(JSON.stringify([k.label, k.algorithm, k.publicKey]), 'utf8');
  }

  private seal(label: string, algorithm: KeyAlgorithm, publicKey: Buffer, pkcs8: Buffer): SealedKey {
    const iv = randomBytes(12);
    const meta = { label, algorithm, publicKey: publicKey.toString('base64') };
    const cipher = createCipheriv('aes-256-gcm', this.kek, iv);
    cipher.setAAD(SoftHsm.aad(meta));
    const wrapped = Buffer.concat([cipher.update(pkcs8), cipher.final()]);
    return { ...meta, createdAt: new Date().toISOString(), iv: iv.toString('base64'), tag: cipher.getAuthTag().toString('base64'), wrapped: wrapped.toString('base64') };
  }

  private unseal(k: SealedKey): Buffer {
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.kek, Buffer.from(k.iv, 'base64'));
      decipher.setAuthTag(Buffer.from(k.tag, 'base64'));
      decipher.setAAD(SoftHsm.aad(k));
      return Buffer.concat([decipher.update(Buffer.from(k.wrapped, 'base64')), decipher.final()]);
    } catch {
      throw new HsmError('storeTampered', `key "${k.label}" in the software HSM store fails its integrity check (changed or damaged)`);
    }
  }

  /** Unseals a stored key straight into a non-extractable WebCrypto key. */
  private async adopt(k: SealedKey): Promise<LoadedKey> {
    const pkcs8 = this.unseal(k);
    try {
      const privateKey = await subtle.importKey('pkcs8', pkcs8, importParams(k.algorithm), false, ['sign']);
      const loaded: LoadedKey = { label: k.label, algorithm: k.algorithm, publicKey: Buffer.from(k.publicKey, 'base64'), privateKey };
      this.keys.set(k.label, loaded);
      this.sealed.push(k);
      return loaded;
    } finally {
      pkcs8.fill(0);
    }
  }

  /** Writes the store atomically: a temporary file, fsync, rename, fsync of the folder. */
  private persist(): Promise<void> {
    const run = async () => {
      const file: StoreFile = {
        format: 'hsmca-soft-hsm',
        version: 1,
        kdf: { name: 'scrypt', salt: this.salt.toString('base64'), ...KDF },
        pinCheck: createHmac('sha256', this.kek).update('hsmca pin check').digest('base64'),
        keys: this.sealed,
        mac: this.macOf(this.sealed).toString('base64'),
      };
      const tmp = `${this.opts.storePath}.${process.pid}.tmp`;
      const fh = await fs.open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC, 0o600);
      try {
        await fh.writeFile(JSON.stringify(file, null, 1));
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fs.rename(tmp, this.opts.storePath);
      const dir = await fs.open(path.dirname(this.opts.storePath), 'r');
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    };
    this.writing = this.writing.then(run, run);
    return this.writing;
  }

  private ensureOpen(): void {
    if (this.closed) throw new HsmError('hsmUnavailable', 'the software HSM is closed');
  }

  async generateKey(label: string, algorithm: KeyAlgorithm): Promise<KeyInfo> {
    this.ensureOpen();
    if (!label || label.length > 128) throw new HsmError('hsmError', 'a key label must be 1 to 128 characters');
    // Keys another process stored since (a ceremony run by the hsmca command beside the service):
    // adopted first, so the store written below keeps them and a label they took is seen as taken.
    await this.refresh();
    if (this.keys.has(label)) throw new HsmError('keyExists', `a key labelled "${label}" already exists`);
    if (this.readOnly) throw new HsmError('readOnly', `the software HSM store ${this.opts.storePath} is read-only: no new key "${label}"`);
    const info = keyAlgorithmInfo(algorithm);
    const params =
      info.kind === 'ec'
        ? { name: 'ECDSA', namedCurve: info.namedCurve! }
        : { name: 'RSASSA-PKCS1-v1_5', modulusLength: info.modulusLength!, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' };
    // Extractable only for the moment it takes to seal the key into the store;
    // from then on only the non-extractable import is used.
    const pair = (await subtle.generateKey(params, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const pkcs8 = Buffer.from(await subtle.exportKey('pkcs8', pair.privateKey));
    const spki = Buffer.from(await subtle.exportKey('spki', pair.publicKey));
    const sealed = this.seal(label, algorithm, spki, pkcs8);
    pkcs8.fill(0);
    const loaded = await this.adopt(sealed);
    try {
      await this.persist();
    } catch (e) {
      this.keys.delete(label);
      this.sealed = this.sealed.filter((k) => k !== sealed);
      throw new HsmError('hsmUnavailable', `the software HSM could not save key "${label}": ${(e as Error).message}`);
    }
    return publicInfo(loaded);
  }

  async getKey(label: string): Promise<KeyInfo | undefined> {
    this.ensureOpen();
    const k = this.keys.get(label);
    return k && publicInfo(k);
  }

  async listKeys(): Promise<KeyInfo[]> {
    this.ensureOpen();
    return [...this.keys.values()].map(publicInfo);
  }

  /**
   * Adopts keys another process of the same service added to the store since
   * it was opened (several workers share one store; only the leader writes).
   */
  private async refresh(): Promise<void> {
    let file: StoreFile;
    try {
      file = JSON.parse(await fs.readFile(this.opts.storePath, 'utf8'));
    } catch {
      return;
    }
    if (file.kdf?.salt !== this.salt.toString('base64')) return;
    const keys = Array.isArray(file.keys) ? file.keys : [];
    const mac = Buffer.from(String(file.mac ?? ''), 'base64');
    const expected = this.macOf(keys);
    if (mac.length !== expected.length || !timingSafeEqual(mac, expected)) {
      throw new HsmError('storeTampered', `the software HSM store ${this.opts.storePath} fails its integrity check (changed or damaged)`);
    }
    for (const k of keys) if (!this.keys.has(k.label) && isKeyAlgorithm(k.algorithm)) await this.adopt(k);
  }

  async signer(label: string): Promise<Signer> {
    this.ensureOpen();
    if (!this.keys.has(label)) await this.refresh();
    const k = this.keys.get(label);
    if (!k) throw new HsmError('keyNotFound', `no key labelled "${label}" in the software HSM`);
    const info = keyAlgorithmInfo(k.algorithm);
    // node:crypto signs with the non-extractable CryptoKey itself (no key
    // material is handed out). An ECDSA signature costs about 30 µs: done in
    // place, it is cheaper than a trip to the thread pool and back. An RSA
    // signature costs a millisecond and more, so it runs on the thread pool.
    // (node:crypto takes a CryptoKey where its types say KeyObject)
    const key = { key: k.privateKey as unknown as KeyObject, dsaEncoding: 'der' as const };
    return {
      ...publicInfo(k),
      sign: async (data: Buffer) => {
        if (this.closed) throw new HsmError('hsmUnavailable', 'the software HSM is closed');
        if (info.kind === 'ec') return cryptoSign(info.hash, data, key);
        return new Promise<Buffer>((resolve, reject) => cryptoSign(info.hash, data, key, (err, sig) => (err ? reject(new HsmError('hsmUnavailable', `the software HSM could not sign: ${err.message}`)) : resolve(sig))));
      },
    };
  }

  keyBackup(): KeyBackup {
    return this;
  }

  /**
   * Every key, its PKCS#8 wrapped with AES key wrap with padding (RFC 5649)
   * under `wrappingKey`: unsealed and wrapped here, the clear form zeroed at once.
   */
  async wrapKeys(wrappingKey: Buffer): Promise<WrappedKey[]> {
    this.ensureOpen();
    await this.refresh();
    return this.sealed.map((k) => {
      const pkcs8 = this.unseal(k);
      try {
        const c = createCipheriv('id-aes256-wrap-pad', wrappingKey, KWP_IV);
        const wrapped = Buffer.concat([c.update(pkcs8), c.final()]);
        return { label: k.label, algorithm: k.algorithm, publicKey: Buffer.from(k.publicKey, 'base64'), mechanism: 'aes-kwp' as const, wrapped };
      } finally {
        pkcs8.fill(0);
      }
    });
  }

  /** Unwraps each key, checks it against its public key, and seals it into this store (which holds none of the labels). */
  async unwrapKeys(wrappingKey: Buffer, keys: WrappedKey[]): Promise<void> {
    this.ensureOpen();
    for (const k of keys) if (this.keys.has(k.label)) throw new HsmError('keyExists', `a key labelled "${k.label}" already exists`);
    const added: SealedKey[] = [];
    try {
      for (const k of keys) {
        if (!isKeyAlgorithm(k.algorithm) || k.mechanism !== 'aes-kwp') throw new HsmError('hsmError', `key "${k.label}" in the backup has an unknown type or wrapping`);
        let pkcs8: Buffer;
        try {
          const d = createDecipheriv('id-aes256-wrap-pad', wrappingKey, KWP_IV);
          pkcs8 = Buffer.concat([d.update(k.wrapped), d.final()]);
        } catch {
          throw new HsmError('hsmError', `key "${k.label}" does not unwrap under the backup key`);
        }
        try {
          const spki = createPublicKey(createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' })).export({ format: 'der', type: 'spki' });
          if (!spki.equals(k.publicKey)) throw new HsmError('hsmError', `key "${k.label}" in the backup does not match its public key`);
          const sealed = this.seal(k.label, k.algorithm, k.publicKey, pkcs8);
          await this.adopt(sealed);
          added.push(sealed);
        } finally {
          pkcs8.fill(0);
        }
      }
      await this.persist();
    } catch (e) {
      for (const a of added) this.keys.delete(a.label);
      this.sealed = this.sealed.filter((x) => !added.includes(x));
      throw e instanceof HsmError ? e : new HsmError('hsmError', `the backup's keys could not be restored: ${(e as Error).message}`);
    }
  }

  async health(): Promise<HsmHealth> {
    const status = this.closed ? 'down' : 'ok';
    return { status, tokens: [{ label: 'soft', status }] };
  }

  async close(): Promise<void> {
    await this.writing.catch(() => undefined);
    this.closed = true;
    this.keys.clear();
    this.kek?.fill(0);
  }
}

function publicInfo(k: KeyInfo): KeyInfo {
  return { label: k.label, algorithm: k.algorithm, publicKey: k.publicKey };
}
