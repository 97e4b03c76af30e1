import { createHash, createPublicKey, createVerify, randomBytes } from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import { HsmError, KeyInfo } from '../hsm';
import { KeyAlgorithm, ecdsaRawToDer, isKeyAlgorithm, keyAlgorithmInfo } from '../key-algorithm';
import { bool, findObjects, getAttrs } from './attributes';
import { CLUSTER_KEK_LABEL, ClusterKek, WRAP_MECHANISM } from './cluster-kek';
import { describe, quote } from './errors';
import { Failover, markUp } from './failover';
import { KeyMeta, destroyQuietly, findPublic, keyMeta, metaOf, privateKeyTemplate, publicInfo, unwrappedSigningKeyTemplate } from './key-objects';
import type { Lifecycle } from './lifecycle';
import { Handle, ModuleEntry, PKCS11, slotShared } from './module-registry';
import { keepAlive } from './pkcs11js-buffers';
import { EC_PARAMS, readPublic } from './public-key';
import type { SessionPool } from './session-pool';
import { Token, findSlot } from './token';

/**
 * Key generation and cloning: a new key is generated on one token and, in a
 * cluster, cloned to every other token under the cluster wrapping key (all or
 * nothing); addToken brings a token into the cluster by cloning every key it
 * lacks. The backend runs one of these at a time (its admin mutex).
 */
export class ClusterCeremony {
  constructor(
    private readonly p11: PKCS11,
    private readonly mod: ModuleEntry,
    private readonly pool: SessionPool,
    private readonly failover: Failover,
    private readonly kek: ClusterKek,
    private readonly life: Lifecycle,
    /** the backend's tokens (its own array) */
    private readonly tokens: readonly Token[],
    private readonly poolSize: number,
  ) {}

  /** Generates a key on one token; in cluster mode on the first token and cloned to every other one, all or nothing. */
  async generateKey(label: string, algorithm: KeyAlgorithm, clusterMode: boolean): Promise<KeyInfo> {
    this.life.ensureOpen();
    if (typeof label !== 'string' || !label || Buffer.byteLength(label) > 128) {
      throw new HsmError('hsmError', 'a key label must be 1 to 128 bytes');
    }
    if (label === CLUSTER_KEK_LABEL) throw new HsmError('keyExists', `"${label}" is reserved for the cluster wrapping key`);
    if (!isKeyAlgorithm(algorithm)) throw new HsmError('hsmError', `unknown key algorithm ${String(algorithm)}`);
    const cloning = clusterMode && this.tokens.length > 1;
    // Every token must answer: a CA key that exists on only part of a cluster cannot fail over.
    const targets = cloning ? this.tokens : [this.tokens.find((t) => t.state === 'up') ?? this.tokens[0]];
    for (const t of targets) {
      await this.pool.withSession(t, (s) => {
        const taken = findObjects(this.p11, s, [{ type: pkcs11js.CKA_LABEL, value: label }]);
        if (taken.length) throw new HsmError('keyExists', `a key labelled "${label}" already exists on PKCS#11 token "${t.label}"`);
      }).catch((e) => {
        if (e instanceof HsmError && e.code === 'keyExists') throw e;
        throw new HsmError('hsmUnavailable', `cannot generate key "${label}": PKCS#11 token "${t.label}" does not answer (${describe(e)})`);
      });
    }
    if (cloning) await this.kek.ensure(this.tokens);

    const [source, ...others] = targets;
    const info = keyAlgorithmInfo(algorithm);
    const id = randomBytes(16);
    const clonable = clusterMode;
    const common = [
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_LABEL, value: label },
      { type: pkcs11js.CKA_ID, value: id },
    ];
    const pubT: pkcs11js.Template = [...common, { type: pkcs11js.CKA_PRIVATE, value: false }, { type: pkcs11js.CKA_VERIFY, value: true }];
    const privT: pkcs11js.Template = [
      ...common,
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: clonable },
      { type: pkcs11js.CKA_WRAP_WITH_TRUSTED, value: clonable },
      { type: pkcs11js.CKA_SIGN, value: true },
    ];
    let mechanism: pkcs11js.Mechanism;
    if (info.kind === 'ec') {
      mechanism = { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN };
      pubT.push({ type: pkcs11js.CKA_EC_PARAMS, value: EC_PARAMS[info.namedCurve!] });
      privT.push({ type: pkcs11js.CKA_DERIVE, value: false });
    } else {
      mechanism = { mechanism: pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN };
      pubT.push(
        { type: pkcs11js.CKA_MODULUS_BITS, value: info.modulusLength! },
        { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
        { type: pkcs11js.CKA_ENCRYPT, value: false },
        { type: pkcs11js.CKA_WRAP, value: false },
      );
      privT.push({ type: pkcs11js.CKA_DECRYPT, value: false }, { type: pkcs11js.CKA_UNWRAP, value: false });
    }

    let meta: KeyMeta;
    try {
      meta = await this.pool.withSession(source, async (s) => {
        const pair = await this.p11.C_GenerateKeyPairAsync(s, mechanism, pubT, privT);
        try {
          const parts = readPublic(this.p11, s, pair.publicKey, info.kind === 'ec' ? pkcs11js.CKK_EC : pkcs11js.CKK_RSA, true);
          if (parts.algorithm !== algorithm || !parts.spki) throw new HsmError('hsmError', `the token generated a different key type for "${label}"`);
          createPublicKey({ key: parts.spki, format: 'der', type: 'spki' });
          return keyMeta(label, algorithm, parts.spki, id);
        } catch (e) {
          destroyQuietly(this.p11, s, [pair.privateKey, pair.publicKey]);
          throw e;
        }
      });
    } catch (e) {
      if (e instanceof HsmError) throw e;
      throw new HsmError('hsmError', `PKCS#11 token "${source.label}" could not generate key "${label}" (${describe(e)})`);
    }

    const done: Token[] = [];
    try {
      for (const t of others) {
        await this.cloneKey(source, t, meta);
        done.push(t);
      }
    } catch (e) {
      // all or nothing: take the key off every token again
      for (const t of [source, ...done]) await this.destroyKey(t, meta).catch(() => undefined);
      throw e;
    }
    return publicInfo(meta);
  }

  private async destroyKey(t: Token, meta: KeyMeta): Promise<void> {
    await this.pool.withSession(t, (s) => {
      const objs = findObjects(this.p11, s, [
        { type: pkcs11js.CKA_LABEL, value: meta.label },
        { type: pkcs11js.CKA_ID, value: meta.id },
      ]);
      destroyQuietly(this.p11, s, objs);
    });
    t.keyHandles.delete(meta.label);
  }

  /**
   * Copies one key from `src` to `dst`: the private key is wrapped with the
   * trusted cluster key (CKM_AES_KEY_WRAP_PAD) inside `src` and unwrapped inside
   * `dst`; the public key object is copied attribute by attribute. The copy is
   * then test-signed on `dst` and verified against the public key.
   */
  private async cloneKey(src: Token, dst: Token, meta: KeyMeta): Promise<'cloned' | 'present'> {
    const existing = await this.pool.withSession(dst, (s) => {
      const privs = findObjects(this.p11, s, privateKeyTemplate(meta.label));
      if (privs.length === 0) return undefined;
      const here = metaOf(this.p11, s, privs[0], meta.label);
      return here && here.id.equals(meta.id) && here.publicKey.equals(meta.publicKey) ? 'same' : 'different';
    });
    if (existing === 'same') return 'present';
    if (existing === 'different') {
      throw new HsmError('keyExists', `PKCS#11 token "${dst.label}" already holds a different key labelled "${meta.label}"`);
    }

    const keyType = meta.kind === 'ec' ? pkcs11js.CKK_EC : pkcs11js.CKK_RSA;
    let blob: Buffer | undefined;
    let pubTemplate: pkcs11js.Template;
    try {
      const wrapped = await this.pool.withSession(src, async (s) => {
        const kek = this.kek.handle(src, s);
        const privs = findObjects(this.p11, s, privateKeyTemplate(meta.label));
        const priv = privs.find((h) => (getAttrs(this.p11, s, h, [pkcs11js.CKA_ID]).get(pkcs11js.CKA_ID) ?? Buffer.alloc(0)).equals(meta.id));
        if (!priv) throw new HsmError('keyNotFound', `key "${meta.label}" is not on PKCS#11 token "${src.label}"`);
        const a = getAttrs(this.p11, s, priv, [pkcs11js.CKA_EXTRACTABLE, pkcs11js.CKA_WRAP_WITH_TRUSTED]);
        if (!bool(a.get(pkcs11js.CKA_EXTRACTABLE))) {
          throw new HsmError(
            'hsmConfig',
            `key "${meta.label}" on PKCS#11 token "${src.label}" was generated non-extractable (outside cluster mode) and cannot be cloned`,
          );
        }
        const pub = findPublic(this.p11, s, meta.label, meta.id);
        const pubAttrTypes =
          meta.kind === 'ec' ? [pkcs11js.CKA_EC_PARAMS, pkcs11js.CKA_EC_POINT] : [pkcs11js.CKA_MODULUS, pkcs11js.CKA_PUBLIC_EXPONENT];
        const pa = getAttrs(this.p11, s, pub ?? priv, pubAttrTypes);
        const out = Buffer.alloc(16384);
        const blob = await keepAlive(this.p11.C_WrapKeyAsync(s, WRAP_MECHANISM, kek, priv, out), out);
        return { blob, pubAttrs: pubAttrTypes.map((type) => ({ type, value: pa.get(type)! })) };
      });
      blob = wrapped.blob;
      pubTemplate = [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
        { type: pkcs11js.CKA_KEY_TYPE, value: keyType },
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_PRIVATE, value: false },
        { type: pkcs11js.CKA_LABEL, value: meta.label },
        { type: pkcs11js.CKA_ID, value: meta.id },
        { type: pkcs11js.CKA_VERIFY, value: true },
        ...wrapped.pubAttrs,
      ];
    } catch (e) {
      if (e instanceof HsmError) throw e;
      throw new HsmError('hsmUnavailable', `cannot wrap key "${meta.label}" on PKCS#11 token "${src.label}" for cloning (${describe(e)})`);
    }

    const privTemplate = unwrappedSigningKeyTemplate(meta.kind, meta.label, meta.id);
    const theBlob = blob;
    try {
      await this.pool.withSession(dst, async (s) => {
        const kek = this.kek.handle(dst, s);
        const pub = this.p11.C_CreateObject(s, pubTemplate);
        let priv: Handle | undefined;
        try {
          priv = await keepAlive(this.p11.C_UnwrapKeyAsync(s, WRAP_MECHANISM, kek, theBlob, privTemplate), theBlob);
          // prove the copy: sign on the target, verify against the cluster's public key
          const probe = randomBytes(32);
          const digest = meta.kind === 'ec' ? createHash(meta.hash).update(probe).digest() : probe;
          this.p11.C_SignInit(s, meta.mechanism, priv);
          const raw = await keepAlive(this.p11.C_SignAsync(s, digest, Buffer.alloc(meta.sigLen)), digest);
          const sig = meta.kind === 'ec' ? ecdsaRawToDer(raw) : raw;
          const ok = createVerify(meta.hash).update(probe).verify(createPublicKey({ key: meta.publicKey, format: 'der', type: 'spki' }), sig);
          if (!ok) throw new HsmError('hsmError', `the copy of key "${meta.label}" on PKCS#11 token "${dst.label}" does not match its public key`);
        } catch (e) {
          destroyQuietly(this.p11, s, priv ? [priv, pub] : [pub]);
          throw e;
        }
      });
    } catch (e) {
      if (e instanceof HsmError) throw e;
      throw new HsmError('hsmUnavailable', `cannot clone key "${meta.label}" to PKCS#11 token "${dst.label}" (${describe(e)})`);
    } finally {
      theBlob.fill(0);
    }
    return 'cloned';
  }

  /** Pkcs11Hsm.addToken; `joined` runs once the token holds every key (the backend adds it to its tokens). */
  async addToken(label: string, joined: (t: Token, isNew: boolean) => void): Promise<void> {
    this.life.ensureOpen();
    label = typeof label === 'string' ? label.trim() : '';
    if (!label) throw new HsmError('hsmConfig', 'addToken needs a token label');
    let target = this.tokens.find((t) => t.label === label);
    const isNew = !target;
    if (!target) {
      const slot = findSlot(this.p11, label);
      if (this.tokens.some((t) => t.slot.equals(slot))) throw new HsmError('hsmConfig', `token "${label}" is already in use`);
      target = new Token(label, slot, slotShared(this.mod, slot), this.poolSize);
      try {
        this.pool.join(target);
      } catch (e) {
        this.pool.dropToken(target);
        if (e instanceof HsmError) throw e;
        throw new HsmError('hsmUnavailable', `PKCS#11 token "${label}" cannot be opened (${describe(e)})`);
      }
    }
    const newToken = target;
    try {
      const others = this.tokens.filter((t) => t !== newToken);
      if (others.length === 0) throw new HsmError('hsmConfig', `no other token to copy keys to "${label}" from`);
      // the source: the first other token that answers
      let source: Token | undefined;
      for (const t of others) {
        try {
          await this.failover.probe(t);
          source = t;
          break;
        } catch {
          /* try the next */
        }
      }
      if (!source) throw new HsmError('hsmUnavailable', `no healthy token to copy keys to "${label}" from`);
      const src = source;
      const keys = await this.pool.withSession(src, (s) => {
        const out: KeyMeta[] = [];
        const unclonable: string[] = [];
        for (const priv of findObjects(this.p11, s, [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY }])) {
          const a = getAttrs(this.p11, s, priv, [pkcs11js.CKA_LABEL, pkcs11js.CKA_EXTRACTABLE]);
          const keyLabel = a.get(pkcs11js.CKA_LABEL)?.toString('utf8') ?? '';
          if (!keyLabel) continue;
          const meta = metaOf(this.p11, s, priv, keyLabel);
          if (!meta) continue;
          if (!bool(a.get(pkcs11js.CKA_EXTRACTABLE))) unclonable.push(keyLabel);
          else out.push(meta);
        }
        if (unclonable.length) {
          throw new HsmError(
            'hsmConfig',
            `key(s) ${quote(unclonable)} on PKCS#11 token "${src.label}" were generated non-extractable (outside cluster mode) and cannot be cloned to "${label}"`,
          );
        }
        return out;
      });
      await this.kek.ensure([src, newToken]);
      for (const meta of keys) await this.cloneKey(src, newToken, meta);
      // the backend adds a new token to its list and becomes a cluster
      joined(newToken, isNew);
      markUp(newToken);
    } catch (e) {
      if (isNew) this.pool.dropToken(newToken);
      throw e;
    }
  }
}
