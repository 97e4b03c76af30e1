import { createHash, createPublicKey, createVerify, randomBytes } from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import { HsmError, KeyBackup, WrappedKey } from '../hsm';
import { ecdsaRawToDer, keyAlgorithmInfo } from '../key-algorithm';
import { bool, findObjects, getAttrs } from './attributes';
import { CLUSTER_KEK_LABEL, ClusterKek, WRAP_MECHANISM } from './cluster-kek';
import { describe } from './errors';
import { KeyMeta, destroyQuietly, keyMeta, metaOf, unwrappedSigningKeyTemplate } from './key-objects';
import type { Lifecycle } from './lifecycle';
import { Handle, PKCS11 } from './module-registry';
import { keepAlive } from './pkcs11js-buffers';
import { EC_PARAMS } from './public-key';
import type { SessionPool } from './session-pool';
import type { Token } from './token';

const BACKUP_KEY_PREFIX = 'hsmca-backup-wrap-';

/**
 * Backups on PKCS#11: CA keys leave the token only wrapped, with
 * CKM_AES_KEY_WRAP_PAD (RFC 5649), under an AES-256 key given by the backup
 * ceremony. CA keys are CKA_WRAP_WITH_TRUSTED (cluster mode), so the wrapping
 * key is made CKA_TRUSTED, which only the security officer can do: a backup
 * needs HSMCA_PKCS11_SO_PIN, like setting up a cluster. The key object lives
 * only for the backup and is destroyed after it.
 */
export class Pkcs11KeyBackup implements KeyBackup {
  constructor(
    private readonly p11: PKCS11,
    private readonly pool: SessionPool,
    private readonly kek: ClusterKek,
    private readonly tokens: readonly Token[],
    private readonly life: Lifecycle,
  ) {}

  private source(): Token {
    const t = this.tokens.find((x) => x.state === 'up') ?? this.tokens[0];
    if (!t) throw new HsmError('hsmUnavailable', 'no PKCS#11 token is up');
    return t;
  }

  async wrapKeys(wrappingKey: Buffer): Promise<WrappedKey[]> {
    return this.life.op(async () => {
      if (!this.kek.hasSoPin) throw new HsmError('hsmConfig', 'a PKCS#11 backup needs the security officer PIN (HSMCA_PKCS11_SO_PIN) to make its trusted wrapping key');
      const t = this.source();
      const label = BACKUP_KEY_PREFIX + randomBytes(6).toString('hex');
      await this.kek.withSo([t], (sessions) => {
        this.p11.C_CreateObject(sessions.get(t)!, [
          { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
          { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
          { type: pkcs11js.CKA_TOKEN, value: true },
          { type: pkcs11js.CKA_PRIVATE, value: false },
          { type: pkcs11js.CKA_SENSITIVE, value: true },
          { type: pkcs11js.CKA_EXTRACTABLE, value: false },
          { type: pkcs11js.CKA_TRUSTED, value: true },
          { type: pkcs11js.CKA_WRAP, value: true },
          { type: pkcs11js.CKA_UNWRAP, value: false },
          { type: pkcs11js.CKA_ENCRYPT, value: false },
          { type: pkcs11js.CKA_DECRYPT, value: false },
          { type: pkcs11js.CKA_LABEL, value: label },
          { type: pkcs11js.CKA_VALUE, value: wrappingKey },
        ]);
      });
      try {
        return await this.pool.withSession(t, async (s) => {
          const [wk] = findObjects(this.p11, s, [
            { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
            { type: pkcs11js.CKA_LABEL, value: label },
          ]);
          if (!wk) throw new HsmError('hsmError', `the backup wrapping key vanished from PKCS#11 token "${t.label}"`);
          const out: WrappedKey[] = [];
          const refused: string[] = [];
          for (const priv of findObjects(this.p11, s, [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY }])) {
            const a = getAttrs(this.p11, s, priv, [pkcs11js.CKA_LABEL, pkcs11js.CKA_EXTRACTABLE]);
            const keyLabel = a.get(pkcs11js.CKA_LABEL)?.toString('utf8') ?? '';
            const meta = keyLabel ? metaOf(this.p11, s, priv, keyLabel) : undefined;
            if (!meta) continue;
            if (!bool(a.get(pkcs11js.CKA_EXTRACTABLE))) {
              refused.push(keyLabel);
              continue;
            }
            const buf = Buffer.alloc(16384);
            const wrapped = await keepAlive(this.p11.C_WrapKeyAsync(s, WRAP_MECHANISM, wk, priv, buf), buf);
            out.push({ label: meta.label, algorithm: meta.algorithm, publicKey: meta.publicKey, id: meta.id.toString('hex'), mechanism: 'aes-kwp', wrapped: Buffer.from(wrapped) });
          }
          if (refused.length) {
            throw new HsmError(
              'hsmConfig',
              `key(s) ${refused.join(', ')} on PKCS#11 token "${t.label}" were generated non-extractable (outside cluster mode) and cannot be backed up; see docs/hsm.md`,
            );
          }
          return out;
        });
      } catch (e) {
        if (e instanceof HsmError) throw e;
        throw new HsmError('hsmError', `wrapping the keys for a backup failed on PKCS#11 token "${t.label}" (${describe(e)})`);
      } finally {
        await this.kek.withSo([t], (sessions) => {
          const s = sessions.get(t)!;
          destroyQuietly(this.p11, s, findObjects(this.p11, s, [{ type: pkcs11js.CKA_LABEL, value: label }]));
        }).catch(() => undefined);
      }
    });
  }

  async unwrapKeys(wrappingKey: Buffer, keys: WrappedKey[]): Promise<void> {
    return this.life.op(async () => {
      const t = this.source();
      try {
        await this.pool.withSession(t, async (s) => {
          for (const k of keys) {
            if (k.label === CLUSTER_KEK_LABEL || findObjects(this.p11, s, [{ type: pkcs11js.CKA_LABEL, value: k.label }]).length) {
              throw new HsmError('keyExists', `PKCS#11 token "${t.label}" already holds a key labelled "${k.label}"`);
            }
          }
          // a session object: gone with the session at the latest
          const uk = this.p11.C_CreateObject(s, [
            { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
            { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
            { type: pkcs11js.CKA_TOKEN, value: false },
            { type: pkcs11js.CKA_PRIVATE, value: true },
            { type: pkcs11js.CKA_SENSITIVE, value: true },
            { type: pkcs11js.CKA_EXTRACTABLE, value: false },
            { type: pkcs11js.CKA_WRAP, value: false },
            { type: pkcs11js.CKA_UNWRAP, value: true },
            { type: pkcs11js.CKA_ENCRYPT, value: false },
            { type: pkcs11js.CKA_DECRYPT, value: false },
            { type: pkcs11js.CKA_VALUE, value: wrappingKey },
          ]);
          const made: Handle[] = [];
          try {
            for (const k of keys) made.push(...(await this.unwrapOne(s, uk, k)));
          } catch (e) {
            destroyQuietly(this.p11, s, made);
            throw e;
          } finally {
            destroyQuietly(this.p11, s, [uk]);
          }
        });
      } catch (e) {
        if (e instanceof HsmError) throw e;
        throw new HsmError('hsmError', `unwrapping the backup's keys failed on PKCS#11 token "${t.label}" (${describe(e)})`);
      }
    });
  }

  /** One key: its public object from the SPKI, its private key unwrapped, then a test signature checked against the public key. */
  private async unwrapOne(s: Handle, uk: Handle, k: WrappedKey): Promise<Handle[]> {
    const id = Buffer.from(k.id ?? randomBytes(16).toString('hex'), 'hex');
    const meta: KeyMeta = keyMeta(k.label, k.algorithm, k.publicKey, id);
    const info = keyAlgorithmInfo(k.algorithm);
    const pub = createPublicKey({ key: k.publicKey, format: 'der', type: 'spki' });
    const keyType = info.kind === 'ec' ? pkcs11js.CKK_EC : pkcs11js.CKK_RSA;
    let pubAttrs: pkcs11js.Template;
    if (info.kind === 'ec') {
      const curve = info.namedCurve as 'P-256' | 'P-384';
      const pointLen = curve === 'P-256' ? 65 : 97;
      const point = k.publicKey.subarray(k.publicKey.length - pointLen);
      pubAttrs = [
        { type: pkcs11js.CKA_EC_PARAMS, value: EC_PARAMS[curve] },
        { type: pkcs11js.CKA_EC_POINT, value: Buffer.concat([Buffer.from([0x04, pointLen]), point]) },
      ];
    } else {
      const jwk = pub.export({ format: 'jwk' }) as { n: string; e: string };
      pubAttrs = [
        { type: pkcs11js.CKA_MODULUS, value: Buffer.from(jwk.n, 'base64url') },
        { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from(jwk.e, 'base64url') },
      ];
    }
    const common = [
      { type: pkcs11js.CKA_KEY_TYPE, value: keyType },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_LABEL, value: k.label },
      { type: pkcs11js.CKA_ID, value: id },
    ];
    const pubHandle = this.p11.C_CreateObject(s, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
      ...common,
      { type: pkcs11js.CKA_PRIVATE, value: false },
      { type: pkcs11js.CKA_VERIFY, value: true },
      ...pubAttrs,
    ]);
    let priv: Handle | undefined;
    try {
      priv = await keepAlive(
        this.p11.C_UnwrapKeyAsync(s, WRAP_MECHANISM, uk, k.wrapped, unwrappedSigningKeyTemplate(info.kind, k.label, id)),
        k.wrapped,
      );
      const probe = randomBytes(32);
      const digest = meta.kind === 'ec' ? createHash(meta.hash).update(probe).digest() : probe;
      this.p11.C_SignInit(s, meta.mechanism, priv);
      const raw = await keepAlive(this.p11.C_SignAsync(s, digest, Buffer.alloc(meta.sigLen)), digest);
      const sig = meta.kind === 'ec' ? ecdsaRawToDer(raw) : raw;
      if (!createVerify(meta.hash).update(probe).verify(pub, sig)) {
        throw new HsmError('hsmError', `key "${k.label}" restored from the backup does not match its public key`);
      }
      return [priv, pubHandle];
    } catch (e) {
      destroyQuietly(this.p11, s, priv ? [priv, pubHandle] : [pubHandle]);
      if (e instanceof HsmError) throw e;
      throw new HsmError('hsmError', `key "${k.label}" does not unwrap under the backup key (${describe(e)})`);
    }
  }
}
