import { createHash } from 'node:crypto';
import { inspect } from 'node:util';
import * as pkcs11js from 'pkcs11js';
import { Hsm, HsmError, HsmHealth, KeyBackup, KeyInfo, Signer, TokenHealth } from '../hsm';
import { KeyAlgorithm, ecdsaRawToDer } from '../key-algorithm';
import { findObjects, getAttrs } from './attributes';
import { ClusterCeremony } from './cluster-ceremony';
import { ClusterKek } from './cluster-kek';
import { TokenKeyError, describe, quote } from './errors';
import { Failover, markDown, markUp } from './failover';
import { KeyMeta, metaOf, publicInfo, readKey } from './key-objects';
import { Lifecycle } from './lifecycle';
import { Mutex } from './locks';
import { Pkcs11KeyBackup } from './key-backup';
import { ModuleEntry, PKCS11, acquireModule, releaseModule, slotShared } from './module-registry';
import { SessionPool } from './session-pool';
import { Token, enumerateTokens } from './token';
import { Pkcs11HsmInfo, describeTokens } from './token-listing';
import { TokenSigning } from './token-signing';

/**
 * The PKCS#11 backend: CA keys live on one token, or on a cluster of tokens
 * that hold the same keys (same CKA_LABEL and CKA_ID). See
 * docs/hsm-pkcs11-design.md for the design (session pool, failover, key
 * cloning under a trusted cluster wrapping key, extractability policy).
 */

export interface Pkcs11Options {
  /** path of the PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so) */
  module: string;
  /** tokens by CKA label (token label), never by slot index; more than one makes a cluster */
  tokenLabels: string[];
  /** the user PIN, the same on every token of a cluster */
  pin: string;
  /** logged-in sessions kept per token; default 8 */
  sessionsPerToken?: number;
  /**
   * The security officer PIN (HSMCA_PKCS11_SO_PIN). Needed only to set up the
   * trusted cluster wrapping key on a token (first start of a cluster, addToken);
   * never needed for signing.
   */
  soPin?: string;
  /**
   * Generate keys clonable (CKA_EXTRACTABLE + CKA_WRAP_WITH_TRUSTED). Default:
   * true when more than one token label is configured. Set it on a single-token
   * HSM that will grow into a cluster with addToken.
   */
  cluster?: boolean;
  /**
   * Where signatures run. 0: C_SignInit on the event loop and C_Sign on the libuv
   * thread pool (pkcs11js' asynchronous C_Sign). n > 0: n worker threads that run
   * C_SignInit and C_Sign both, so nothing of a signature blocks the event loop
   * (modules whose C_SignInit is slow, e.g. SoftHSM2 decrypting the key, or a
   * network HSM's round trip). Default 2; falls back to 0 if a thread fails.
   */
  signThreads?: number;
  /**
   * Refuse to start when a configured token cannot be found or logged into.
   * Default true; false starts a cluster degraded as long as one token works.
   */
  requireAllTokens?: boolean;
}

// ------------------------------------------------------------------ the backend

export class Pkcs11Hsm implements Hsm {
  readonly kind = 'pkcs11' as const;
  /** the tokens in use, in order; shared with the collaborators below, which see tokens that join later */
  private readonly tokens: Token[] = [];
  private closing?: Promise<void>;
  private released = false;
  private admin = new Mutex();
  /** the keys signers have been made for */
  private metas = new Map<string, KeyMeta>();
  private readonly p11: PKCS11;
  private clusterMode: boolean;
  private readonly poolSize: number;
  /** the options without the PINs (the user PIN is kept by the session pool, the SO PIN by the cluster KEK, in #private fields) */
  private readonly opts: Omit<Pkcs11Options, 'pin' | 'soPin'>;
  private readonly life = new Lifecycle();
  private readonly pool: SessionPool;
  private readonly failover: Failover;
  private readonly signing: TokenSigning;
  private readonly kek: ClusterKek;
  private readonly ceremony: ClusterCeremony;

  private constructor(
    opts: Pkcs11Options,
    private readonly mod: ModuleEntry,
  ) {
    const { pin, soPin, ...rest } = opts;
    this.opts = rest;
    this.p11 = mod.p11;
    this.clusterMode = opts.cluster ?? opts.tokenLabels.length > 1;
    this.poolSize = opts.sessionsPerToken ?? 8;
    this.pool = new SessionPool(this.p11, pin, this.life);
    this.failover = new Failover(this.p11, mod, this.pool, this.tokens, this.metas, this.life);
    this.signing = new TokenSigning(this.p11, mod.path, opts.signThreads ?? 2, this.pool, this.life);
    this.kek = new ClusterKek(this.p11, this.pool, soPin || undefined, mod.path);
    this.ceremony = new ClusterCeremony(this.p11, mod, this.pool, this.failover, this.kek, this.life, this.tokens, this.poolSize);
  }

  /** What logs and JSON see: no PINs, no handles. */
  toJSON(): { kind: 'pkcs11'; module: string; tokens: string[]; cluster: boolean; closed: boolean } {
    return { kind: this.kind, module: this.opts.module, tokens: this.tokenLabels, cluster: this.clusterMode, closed: this.life.closed };
  }

  [inspect.custom](): string {
    return `Pkcs11Hsm ${JSON.stringify(this.toJSON())}`;
  }

  /** Opens the tokens, logs in once per token and, with the SO PIN, sets up the cluster wrapping key. */
  static async open(opts: Pkcs11Options): Promise<Pkcs11Hsm> {
    if (!opts || typeof opts.module !== 'string' || !opts.module) {
      throw new HsmError('hsmConfig', 'the PKCS#11 backend needs a module path');
    }
    const labels = opts.tokenLabels ?? [];
    if (labels.length === 0 || labels.some((l) => typeof l !== 'string' || !l.trim())) {
      throw new HsmError('hsmConfig', 'the PKCS#11 backend needs at least one token label');
    }
    if (new Set(labels).size !== labels.length) throw new HsmError('hsmConfig', 'a PKCS#11 token label is listed twice');
    if (!opts.pin) throw new HsmError('hsmConfig', 'the PKCS#11 backend needs the user PIN');
    const size = opts.sessionsPerToken ?? 8;
    if (!Number.isInteger(size) || size < 1 || size > 1024) {
      throw new HsmError('hsmConfig', 'sessionsPerToken must be an integer from 1 to 1024');
    }
    const threads = opts.signThreads ?? 2;
    if (!Number.isInteger(threads) || threads < 0 || threads > 64) {
      throw new HsmError('hsmConfig', 'signThreads must be an integer from 0 to 64');
    }
    const mod = acquireModule(opts.module);
    const hsm = new Pkcs11Hsm({ ...opts, tokenLabels: labels.map((l) => l.trim()) }, mod);
    try {
      await hsm.start();
    } catch (e) {
      await hsm.shutdown();
      throw e;
    }
    return hsm;
  }

  private async start(): Promise<void> {
    const requireAll = this.opts.requireAllTokens ?? true;
    const found = enumerateTokens(this.p11);
    const problems: string[] = [];
    for (const label of this.opts.tokenLabels) {
      const slots = found.get(label);
      if (!slots || slots.length !== 1) {
        const msg = !slots
          ? `no PKCS#11 token labelled "${label}" was found`
          : `more than one PKCS#11 token is labelled "${label}"`;
        if (requireAll) {
          const seen = [...found.keys()];
          throw new HsmError('hsmConfig', `${msg} (tokens present: ${seen.length ? quote(seen) : 'none'})`);
        }
        problems.push(msg);
        continue;
      }
      const t = new Token(label, slots[0], slotShared(this.mod, slots[0]), this.poolSize);
      this.tokens.push(t);
      try {
        this.pool.join(t);
      } catch (e) {
        if (e instanceof HsmError && e.code === 'wrongPin') throw e;
        if (requireAll) throw new HsmError('hsmUnavailable', `PKCS#11 token "${label}" cannot be opened: ${describe(e)}`);
        markDown(t, describe(e));
      }
    }
    if (this.tokens.length === 0 || this.tokens.every((t) => t.state === 'down')) {
      throw new HsmError('hsmConfig', `no configured PKCS#11 token can be used (${problems.join('; ') || 'all down'})`);
    }
    // A cluster's wrapping key is set up now when the SO PIN is at hand; without it
    // signing works and generateKey/addToken explain what is missing.
    if (this.clusterMode && this.tokens.length > 1 && this.kek.hasSoPin) {
      await this.kek.ensure(this.tokens.filter((t) => t.state === 'up'));
    }
  }

  /** Backups (src/backup/): keys wrapped under a trusted key made by the security officer; see key-backup.ts. */
  keyBackup(): KeyBackup {
    return new Pkcs11KeyBackup(this.p11, this.pool, this.kek, this.tokens, this.life);
  }

  get isCluster(): boolean {
    return this.clusterMode;
  }

  /** The configured tokens in use, in order. */
  get tokenLabels(): string[] {
    return this.tokens.map((t) => t.label);
  }

  // -------------------------------------------------------------- lifecycle

  async close(): Promise<void> {
    if (!this.closing) {
      this.life.closed = true;
      this.closing = (async () => {
        if (this.life.inflight > 0) await this.life.idle();
        await this.shutdown();
      })();
    }
    return this.closing;
  }

  /** Logs out (when no one else in the process needs the login), closes our sessions, releases the module. */
  private async shutdown(): Promise<void> {
    this.life.closed = true;
    // no thread may be inside the module when its sessions close and it is finalised
    await this.signing.close();
    for (const t of this.tokens) this.pool.shutdown(t);
    this.metas.clear();
    if (!this.released) {
      this.released = true;
      releaseModule(this.mod);
    }
  }

  // -------------------------------------------------------------- health and keys

  async health(): Promise<HsmHealth> {
    if (this.life.closed) {
      return { status: 'down', tokens: this.opts.tokenLabels.map((label) => ({ label, status: 'down', error: 'closed' })) };
    }
    return this.life.op(async () => {
      const tokens: TokenHealth[] = [];
      for (const t of this.tokens) {
        try {
          await this.failover.probe(t);
          tokens.push({ label: t.label, status: 'ok' });
        } catch (e) {
          tokens.push({ label: t.label, status: 'down', error: describe(e) });
        }
      }
      for (const label of this.opts.tokenLabels) {
        if (!this.tokens.some((t) => t.label === label)) tokens.push({ label, status: 'down', error: 'token not found at start' });
      }
      const ok = tokens.filter((t) => t.status === 'ok').length;
      return { status: ok === tokens.length ? 'ok' : ok === 0 ? 'down' : 'degraded', tokens };
    });
  }

  async getKey(label: string): Promise<KeyInfo | undefined> {
    return this.life.op(async () => {
      const meta = await this.failover.onFirstHealthy(`reading key "${label}"`, (_t, s) => readKey(this.p11, s, label));
      return meta && publicInfo(meta);
    });
  }

  async listKeys(): Promise<KeyInfo[]> {
    return this.life.op(() =>
      this.failover.onFirstHealthy('listing keys', (_t, s) => {
        const out: KeyInfo[] = [];
        const seen = new Set<string>();
        for (const priv of findObjects(this.p11, s, [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY }])) {
          const label = getAttrs(this.p11, s, priv, [pkcs11js.CKA_LABEL]).get(pkcs11js.CKA_LABEL)?.toString('utf8') ?? '';
          if (!label || seen.has(label)) continue;
          seen.add(label);
          const meta = metaOf(this.p11, s, priv, label);
          if (meta) out.push(publicInfo(meta));
        }
        return out.sort((a, b) => a.label.localeCompare(b.label));
      }),
    );
  }

  async signer(label: string): Promise<Signer> {
    return this.life.op(async () => {
      const meta = await this.failover.onFirstHealthy(`reading key "${label}"`, (_t, s) => readKey(this.p11, s, label));
      if (!meta) throw new HsmError('keyNotFound', `no key labelled "${label}" on the PKCS#11 token(s) ${quote(this.tokenLabels)}`);
      this.metas.set(label, meta);
      return { ...publicInfo(meta), sign: (data: Buffer) => this.sign(meta, data) };
    });
  }

  /**
   * Signs with a key on one given token, with no failover: a diagnostic for
   * operators (and tests) to check that every token of a cluster holds the key.
   */
  async signOn(tokenLabel: string, keyLabel: string, data: Buffer): Promise<Buffer> {
    return this.life.op(async () => {
      const t = this.tokens.find((x) => x.label === tokenLabel);
      if (!t) throw new HsmError('hsmConfig', `PKCS#11 token "${tokenLabel}" is not part of this HSM`);
      const meta = this.metas.get(keyLabel) ?? (await this.pool.withSession(t, (s) => readKey(this.p11, s, keyLabel)));
      if (!meta) throw new HsmError('keyNotFound', `no key labelled "${keyLabel}" on PKCS#11 token "${tokenLabel}"`);
      let raw: Buffer;
      try {
        raw = await this.signing.signOnToken(t, meta, meta.kind === 'ec' ? createHash(meta.hash).update(data).digest() : data);
      } catch (e) {
        if (e instanceof HsmError) throw e;
        throw new HsmError('hsmUnavailable', `signing with key "${keyLabel}" on PKCS#11 token "${tokenLabel}" failed (${describe(e)})`);
      }
      return meta.kind === 'ec' ? ecdsaRawToDer(raw) : raw;
    });
  }

  /** The hot path: kept to one async frame per token tried (see bench/pkcs11-sign.ts). */
  private async sign(meta: KeyMeta, data: Buffer): Promise<Buffer> {
    this.life.ensureOpen();
    if (!Buffer.isBuffer(data)) throw new HsmError('hsmError', 'sign() needs a Buffer');
    this.life.inflight++;
    try {
      const input = meta.kind === 'ec' ? createHash(meta.hash).update(data).digest() : data;
      let failures: string[] | undefined;
      for (const t of this.failover.signOrder()) {
        if (this.life.closed) break;
        try {
          const raw = await this.signing.signOnToken(t, meta, input);
          if (t.state === 'down') markUp(t);
          return meta.kind === 'ec' ? ecdsaRawToDer(raw) : raw;
        } catch (e) {
          const why = describe(e);
          (failures ??= []).push(`"${t.label}": ${why}`);
          if (e instanceof TokenKeyError) {
            // The key is not usable there; is the token itself still answering?
            try {
              this.failover.checkTokenInfo(t);
            } catch (e2) {
              markDown(t, describe(e2));
            }
          } else {
            markDown(t, why);
          }
        }
      }
      if (this.life.closed) throw new HsmError('hsmUnavailable', 'the PKCS#11 HSM was closed while signing');
      throw new HsmError(
        'hsmUnavailable',
        `signing with key "${meta.label}" failed on every PKCS#11 token (${failures?.join('; ') || 'no token configured'})`,
      );
    } finally {
      this.life.leave();
    }
  }

  // -------------------------------------------------------------- key generation, cloning, `hsmca hsm list`

  async generateKey(label: string, algorithm: KeyAlgorithm): Promise<KeyInfo> {
    return this.life.op(() => this.admin.run(() => this.ceremony.generateKey(label, algorithm, this.clusterMode)));
  }

  /**
   * Brings another token into the cluster (or re-syncs a member): sets up the
   * cluster wrapping key on it (needs the SO PIN once) and clones every CA key
   * that it lacks from a healthy token. Affects this process only: add the label
   * to the configured token labels too.
   */
  async addToken(label: string): Promise<void> {
    return this.life.op(() =>
      this.admin.run(() =>
        this.ceremony.addToken(label, (t, isNew) => {
          if (isNew) this.tokens.push(t);
          this.clusterMode = true;
        }),
      ),
    );
  }

  /** Tokens, their private keys with the security attributes, the cluster wrapping key, and health. */
  async tokenInfo(): Promise<Pkcs11HsmInfo> {
    const health = await this.health();
    return this.life.op(async () => {
      const tokens = await describeTokens(this.p11, this.pool, this.failover, this.tokens, health);
      return { module: this.opts.module, cluster: this.clusterMode, health, tokens };
    });
  }
}
