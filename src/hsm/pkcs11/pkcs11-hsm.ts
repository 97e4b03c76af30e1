import { createHash, createPublicKey, createVerify, randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import * as pkcs11js from 'pkcs11js';
import { Hsm, HsmError, HsmHealth, KeyInfo, Signer, TokenHealth } from '../hsm';
import { KeyAlgorithm, ecdsaRawToDer, isKeyAlgorithm, keyAlgorithmInfo } from '../key-algorithm';
import { TokenKeyError, ckrName, describe, isCkr, quote } from './errors';
import { bool, findObjects, getAttrs, hex, ulong } from './attributes';
import { KeyMeta, destroyQuietly, findPublic, keyHandle, keyMeta, metaOf, privateKeyTemplate, publicInfo, readKey } from './key-objects';
import { Mutex } from './locks';
import { CKS_RO_USER_FUNCTIONS, CKS_RW_SO_FUNCTIONS, CKS_RW_USER_FUNCTIONS, loginChecked, loginUser, logoutLast } from './login';
import { Handle, ModuleEntry, PKCS11, acquireModule, releaseModule, slotShared } from './module-registry';
import { EMPTY_INPUT, keepAlive } from './pkcs11js-buffers';
import { EC_PARAMS, ecPoint, readPublic } from './public-key';
import { SignThreads } from './sign-threads';
import { RW_SESSION, Token, enumerateTokens, findSlot, trimLabel } from './token';

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

/** Attributes of one private key object, as `hsmca hsm list` shows them. */
export interface Pkcs11KeyObject {
  label: string;
  /** CKA_ID, hex */
  id: string;
  /** undefined for key types hsmca does not use */
  algorithm?: KeyAlgorithm;
  keyType: 'ec' | 'rsa' | 'other';
  /** a public key object with the same CKA_ID and label exists */
  hasPublicKey: boolean;
  attributes: {
    token: boolean;
    private: boolean;
    sensitive: boolean;
    alwaysSensitive: boolean;
    extractable: boolean;
    neverExtractable: boolean;
    wrapWithTrusted: boolean;
    local: boolean;
    sign: boolean;
  };
}

export interface Pkcs11TokenInfo {
  label: string;
  status: 'ok' | 'down';
  error?: string;
  manufacturer?: string;
  model?: string;
  serialNumber?: string;
  /** private keys on the token (empty when it is down) */
  keys: Pkcs11KeyObject[];
  /** the cluster wrapping key (see docs/hsm-pkcs11-design.md); undefined when the token is down */
  clusterKek?: { present: boolean; id?: string; trusted?: boolean };
}

export interface Pkcs11HsmInfo {
  module: string;
  cluster: boolean;
  health: HsmHealth;
  tokens: Pkcs11TokenInfo[];
}

// ------------------------------------------------------------------ constants

/** the label of the AES key that wraps CA keys when they are cloned between tokens */
export const CLUSTER_KEK_LABEL = 'hsmca-cluster-kek';
const WRAP_MECHANISM: pkcs11js.Mechanism = { mechanism: pkcs11js.CKM_AES_KEY_WRAP_PAD };
/** errors that a fresh session (logged in again, handles looked up again) can cure */
const STALE_SESSION_ERRORS = [
  pkcs11js.CKR_SESSION_HANDLE_INVALID,
  pkcs11js.CKR_SESSION_CLOSED,
  pkcs11js.CKR_USER_NOT_LOGGED_IN,
  pkcs11js.CKR_OBJECT_HANDLE_INVALID,
  pkcs11js.CKR_KEY_HANDLE_INVALID,
  pkcs11js.CKR_OPERATION_ACTIVE,
];
/** seconds a token marked down is left alone before signing traffic re-probes it */
const REPROBE_MS = 5000;

// ------------------------------------------------------------------ the backend

export class Pkcs11Hsm implements Hsm {
  readonly kind = 'pkcs11' as const;
  private tokens: Token[] = [];
  private closed = false;
  private closing?: Promise<void>;
  private released = false;
  private inflight = 0;
  private idleWaiters: (() => void)[] = [];
  private rr = 0;
  private admin = new Mutex();
  private metas = new Map<string, KeyMeta>();
  private readonly p11: PKCS11;
  private clusterMode: boolean;
  private readonly poolSize: number;
  private threads?: SignThreads;
  private threadsFailed = false;
  /** the options without the PINs, which live in #private fields (not in JSON, not in inspect) */
  private readonly opts: Omit<Pkcs11Options, 'pin' | 'soPin'>;
  readonly #pin: string;
  readonly #soPin?: string;

  private constructor(
    opts: Pkcs11Options,
    private readonly mod: ModuleEntry,
  ) {
    const { pin, soPin, ...rest } = opts;
    this.opts = rest;
    this.#pin = pin;
    this.#soPin = soPin || undefined;
    this.p11 = mod.p11;
    this.clusterMode = opts.cluster ?? opts.tokenLabels.length > 1;
    this.poolSize = opts.sessionsPerToken ?? 8;
  }

  /** What logs and JSON see: no PINs, no handles. */
  toJSON(): { kind: 'pkcs11'; module: string; tokens: string[]; cluster: boolean; closed: boolean } {
    return { kind: this.kind, module: this.opts.module, tokens: this.tokenLabels, cluster: this.clusterMode, closed: this.closed };
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
        this.join(t);
      } catch (e) {
        if (e instanceof HsmError && e.code === 'wrongPin') throw e;
        if (requireAll) throw new HsmError('hsmUnavailable', `PKCS#11 token "${label}" cannot be opened: ${describe(e)}`);
        this.markDown(t, describe(e));
      }
    }
    if (this.tokens.length === 0 || this.tokens.every((t) => t.state === 'down')) {
      throw new HsmError('hsmConfig', `no configured PKCS#11 token can be used (${problems.join('; ') || 'all down'})`);
    }
    // A cluster's wrapping key is set up now when the SO PIN is at hand; without it
    // signing works and generateKey/addToken explain what is missing.
    if (this.clusterMode && this.tokens.length > 1 && this.#soPin) {
      await this.ensureClusterKek(this.tokens.filter((t) => t.state === 'up'));
    }
  }

  get isCluster(): boolean {
    return this.clusterMode;
  }

  /** The configured tokens in use, in order. */
  get tokenLabels(): string[] {
    return this.tokens.map((t) => t.label);
  }

  // -------------------------------------------------------------- lifecycle plumbing

  private ensureOpen(): void {
    if (this.closed) throw new HsmError('hsmUnavailable', 'the PKCS#11 HSM is closed');
  }

  /** Runs an operation that uses the module, so that close() can wait for it. */
  private async op<T>(fn: () => Promise<T>): Promise<T> {
    this.ensureOpen();
    this.inflight++;
    try {
      return await fn();
    } finally {
      this.inflight--;
      if (this.inflight === 0) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  async close(): Promise<void> {
    if (!this.closing) {
      this.closed = true;
      this.closing = (async () => {
        if (this.inflight > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
        await this.shutdown();
      })();
    }
    return this.closing;
  }

  /** Logs out (when no one else in the process needs the login), closes our sessions, releases the module. */
  private async shutdown(): Promise<void> {
    this.closed = true;
    // no thread may be inside the module when its sessions close and it is finalised
    await this.threads?.close();
    this.threads = undefined;
    for (const t of this.tokens) {
      const sessions = [...t.open.values()];
      if (t.loginRef) {
        t.loginRef = false;
        t.shared.loginRefs--;
        logoutLast(this.p11, sessions[0], t.shared);
      }
      for (const s of sessions) {
        try {
          this.p11.C_CloseSession(s);
        } catch {
          /* already closed */
        }
      }
      t.open.clear();
      t.idle = [];
      t.keyHandles.clear();
    }
    this.metas.clear();
    if (!this.released) {
      this.released = true;
      releaseModule(this.mod);
    }
  }

  /** This instance starts using token `t`: a first session, the login (with its PIN checked), a login reference. */
  private join(t: Token): void {
    const s = this.p11.C_OpenSession(t.slot, RW_SESSION);
    t.open.set(hex(s), s);
    try {
      loginChecked(this.p11, s, this.#pin, t.label, t.shared);
    } catch (e) {
      this.closeSession(t, s);
      throw e;
    }
    this.takeLoginRef(t);
    this.putIdle(t, s);
  }

  private takeLoginRef(t: Token): void {
    if (!t.loginRef) {
      t.loginRef = true;
      t.shared.loginRefs++;
    }
  }

  // -------------------------------------------------------------- sessions

  /** A new session, logged in as the user (the login is per token, so this is usually a no-op). */
  private openSession(t: Token): Handle {
    const s = this.p11.C_OpenSession(t.slot, RW_SESSION);
    t.open.set(hex(s), s);
    try {
      this.ensureLogin(t, s);
    } catch (e) {
      this.closeSession(t, s);
      throw e;
    }
    return s;
  }

  private ensureLogin(t: Token, s: Handle): void {
    const state = this.p11.C_GetSessionInfo(s).state;
    if (state === CKS_RW_USER_FUNCTIONS || state === CKS_RO_USER_FUNCTIONS) return;
    if (state === CKS_RW_SO_FUNCTIONS) {
      throw new HsmError('hsmUnavailable', `PKCS#11 token "${t.label}" has a security officer logged in`);
    }
    if (t.pinRejected) {
      throw new HsmError('wrongPin', `the user PIN was rejected by PKCS#11 token "${t.label}"; not retrying (restart with the right PIN)`);
    }
    try {
      loginUser(this.p11, s, this.#pin, t.label, t.shared);
    } catch (e) {
      if (e instanceof HsmError && e.code === 'wrongPin') t.pinRejected = true;
      throw e;
    }
  }

  private closeSession(t: Token, s: Handle): void {
    t.open.delete(hex(s));
    try {
      this.p11.C_CloseSession(s);
    } catch {
      /* the session is already gone */
    }
  }

  private takeIdle(t: Token): Handle | undefined {
    while (t.idle.length) {
      const s = t.idle.pop()!;
      if (s.epoch === t.epoch) return s.h;
      this.closeSession(t, s.h);
    }
    return undefined;
  }

  private putIdle(t: Token, s: Handle, epoch = t.epoch): void {
    if (this.closed || epoch !== t.epoch || !t.open.has(hex(s)) || t.idle.length >= t.poolSize) {
      if (!this.closed) this.closeSession(t, s);
      return;
    }
    t.idle.push({ h: s, epoch });
  }

  /** A session failed: close it and, when the fault is not specific to it, every idle one. */
  private discard(t: Token, s: Handle, e: unknown): void {
    this.closeSession(t, s);
    t.keyHandles.clear();
    t.kek = undefined;
    if (!isCkr(e, pkcs11js.CKR_OPERATION_ACTIVE, pkcs11js.CKR_BUFFER_TOO_SMALL)) {
      t.epoch++;
      for (const i of t.idle.splice(0)) this.closeSession(t, i.h);
    }
  }

  /**
   * Borrows a session of the pool for administration and probes. A pooled session
   * that turns out dead (closed or logged out under us) is replaced by a fresh one
   * and `fn` runs once more; `fn` must leave nothing behind when it fails.
   */
  private async withSession<T>(t: Token, fn: (s: Handle) => T | Promise<T>): Promise<T> {
    if (!t.shared.lock.tryRead()) await t.shared.lock.read();
    try {
      if (!t.permits.tryAcquire()) await t.permits.acquire();
      try {
        const pooled = this.takeIdle(t);
        let s = pooled ?? this.openSession(t);
        let epoch = t.epoch;
        try {
          const result = await fn(s);
          this.putIdle(t, s, epoch);
          return result;
        } catch (e) {
          if (e instanceof HsmError || e instanceof TokenKeyError) {
            this.putIdle(t, s, epoch);
            throw e;
          }
          this.discard(t, s, e);
          if (!pooled || !isCkr(e, ...STALE_SESSION_ERRORS) || this.closed) throw e;
        }
        s = this.openSession(t);
        epoch = t.epoch;
        try {
          const result = await fn(s);
          this.putIdle(t, s, epoch);
          return result;
        } catch (e) {
          if (e instanceof HsmError || e instanceof TokenKeyError) this.putIdle(t, s, epoch);
          else this.discard(t, s, e);
          throw e;
        }
      } finally {
        t.permits.release();
      }
    } finally {
      t.shared.lock.releaseRead();
    }
  }

  // -------------------------------------------------------------- health

  private markDown(t: Token, error: string): void {
    if (t.state !== 'down') t.nextProbeAt = Date.now() + REPROBE_MS;
    t.state = 'down';
    t.lastError = error;
  }

  private markUp(t: Token): void {
    t.state = 'up';
    t.lastError = undefined;
  }

  /** Cheap check that the token still answers under its label (C_GetTokenInfo). */
  private checkTokenInfo(t: Token): pkcs11js.TokenInfo {
    let info: pkcs11js.TokenInfo;
    try {
      info = this.p11.C_GetTokenInfo(t.slot);
    } catch (e) {
      // the token may have moved to another slot (re-inserted, HSM restarted)
      const moved = this.relocate(t);
      if (!moved) throw e;
      info = this.p11.C_GetTokenInfo(t.slot);
    }
    const label = trimLabel(info.label);
    if (label !== t.label) {
      if (!this.relocate(t)) throw new Error(`the slot now holds token "${label}"`);
      info = this.p11.C_GetTokenInfo(t.slot);
    }
    return info;
  }

  private relocate(t: Token): boolean {
    let slots: Handle[] | undefined;
    try {
      slots = enumerateTokens(this.p11).get(t.label);
    } catch {
      return false;
    }
    if (!slots || slots.length !== 1 || slots[0].equals(t.slot)) return false;
    t.slot = slots[0];
    const shared = slotShared(this.mod, t.slot);
    if (t.loginRef) {
      t.shared.loginRefs--;
      shared.loginRefs++;
    }
    t.shared = shared;
    t.epoch++;
    for (const i of t.idle.splice(0)) this.closeSession(t, i.h);
    t.keyHandles.clear();
    t.kek = undefined;
    return true;
  }

  /** Really asks the token: token info, a logged-in session, a search for the key objects. */
  private async probe(t: Token): Promise<void> {
    try {
      this.checkTokenInfo(t);
      await this.withSession(t, (s) => {
        this.ensureLogin(t, s);
        findObjects(this.p11, s, [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY }]);
        for (const label of this.metas.keys()) {
          if (findObjects(this.p11, s, privateKeyTemplate(label)).length === 0) {
            throw new TokenKeyError(`key "${label}" is missing on token "${t.label}"`);
          }
        }
      });
      this.takeLoginRef(t);
      this.markUp(t);
    } catch (e) {
      this.markDown(t, describe(e));
      throw e;
    }
  }

  async health(): Promise<HsmHealth> {
    if (this.closed) {
      return { status: 'down', tokens: this.opts.tokenLabels.map((label) => ({ label, status: 'down', error: 'closed' })) };
    }
    return this.op(async () => {
      const tokens: TokenHealth[] = [];
      for (const t of this.tokens) {
        try {
          await this.probe(t);
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

  /** Signing order: healthy tokens round-robin, then tokens marked down as a last resort. */
  private signOrder(): Token[] {
    if (this.tokens.length === 1 && this.tokens[0].state === 'up') return this.tokens;
    const up = this.tokens.filter((t) => t.state === 'up' && !t.shared.lock.exclusive);
    const busy = this.tokens.filter((t) => t.state === 'up' && t.shared.lock.exclusive);
    const down = this.tokens.filter((t) => t.state === 'down');
    const now = Date.now();
    for (const t of down) {
      if (now >= t.nextProbeAt && !t.probing) {
        t.probing = true;
        t.nextProbeAt = now + REPROBE_MS;
        this.op(() => this.probe(t))
          .catch(() => undefined)
          .finally(() => {
            t.probing = false;
          });
      }
    }
    if (up.length > 1) {
      const start = this.rr++ % up.length;
      if (this.rr > 1e9) this.rr = 0;
      up.push(...up.splice(0, start));
    }
    return [...up, ...busy, ...down];
  }

  // -------------------------------------------------------------- keys

  /** Runs `fn` on the first token that answers; tokens that fail are marked down. */
  private async onFirstHealthy<T>(what: string, fn: (t: Token, s: Handle) => T | Promise<T>): Promise<T> {
    const failures: string[] = [];
    const order = [...this.tokens.filter((t) => t.state === 'up'), ...this.tokens.filter((t) => t.state === 'down')];
    for (const t of order) {
      try {
        // a token whose store is gone still answers searches (with nothing): ask it first
        this.checkTokenInfo(t);
        const r = await this.withSession(t, (s) => fn(t, s));
        if (t.state === 'down') this.markUp(t);
        return r;
      } catch (e) {
        if (e instanceof HsmError && e.code !== 'hsmUnavailable' && e.code !== 'wrongPin') throw e;
        failures.push(`"${t.label}": ${describe(e)}`);
        this.markDown(t, describe(e));
      }
    }
    throw new HsmError('hsmUnavailable', `${what}: no PKCS#11 token answered (${failures.join('; ')})`);
  }

  async getKey(label: string): Promise<KeyInfo | undefined> {
    return this.op(async () => {
      const meta = await this.onFirstHealthy(`reading key "${label}"`, (_t, s) => readKey(this.p11, s, label));
      return meta && publicInfo(meta);
    });
  }

  async listKeys(): Promise<KeyInfo[]> {
    return this.op(() =>
      this.onFirstHealthy('listing keys', (_t, s) => {
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
    return this.op(async () => {
      const meta = await this.onFirstHealthy(`reading key "${label}"`, (_t, s) => readKey(this.p11, s, label));
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
    return this.op(async () => {
      const t = this.tokens.find((x) => x.label === tokenLabel);
      if (!t) throw new HsmError('hsmConfig', `PKCS#11 token "${tokenLabel}" is not part of this HSM`);
      const meta = this.metas.get(keyLabel) ?? (await this.withSession(t, (s) => readKey(this.p11, s, keyLabel)));
      if (!meta) throw new HsmError('keyNotFound', `no key labelled "${keyLabel}" on PKCS#11 token "${tokenLabel}"`);
      let raw: Buffer;
      try {
        raw = await this.signOnToken(t, meta, meta.kind === 'ec' ? createHash(meta.hash).update(data).digest() : data);
      } catch (e) {
        if (e instanceof HsmError) throw e;
        throw new HsmError('hsmUnavailable', `signing with key "${keyLabel}" on PKCS#11 token "${tokenLabel}" failed (${describe(e)})`);
      }
      return meta.kind === 'ec' ? ecdsaRawToDer(raw) : raw;
    });
  }

  /** The hot path: kept to one async frame per token tried (see bench/pkcs11-sign.ts). */
  private async sign(meta: KeyMeta, data: Buffer): Promise<Buffer> {
    this.ensureOpen();
    if (!Buffer.isBuffer(data)) throw new HsmError('hsmError', 'sign() needs a Buffer');
    this.inflight++;
    try {
      const input = meta.kind === 'ec' ? createHash(meta.hash).update(data).digest() : data;
      let failures: string[] | undefined;
      for (const t of this.signOrder()) {
        if (this.closed) break;
        try {
          const raw = await this.signOnToken(t, meta, input);
          if (t.state === 'down') this.markUp(t);
          return meta.kind === 'ec' ? ecdsaRawToDer(raw) : raw;
        } catch (e) {
          const why = describe(e);
          (failures ??= []).push(`"${t.label}": ${why}`);
          if (e instanceof TokenKeyError) {
            // The key is not usable there; is the token itself still answering?
            try {
              this.checkTokenInfo(t);
            } catch (e2) {
              this.markDown(t, describe(e2));
            }
          } else {
            this.markDown(t, why);
          }
        }
      }
      if (this.closed) throw new HsmError('hsmUnavailable', 'the PKCS#11 HSM was closed while signing');
      throw new HsmError(
        'hsmUnavailable',
        `signing with key "${meta.label}" failed on every PKCS#11 token (${failures?.join('; ') || 'no token configured'})`,
      );
    } finally {
      this.inflight--;
      if (this.inflight === 0 && this.idleWaiters.length) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  /** One token: a pooled session, and on failure one more try on a brand-new session. */
  private async signOnToken(t: Token, meta: KeyMeta, input: Buffer): Promise<Buffer> {
    if (!t.shared.lock.tryRead()) await t.shared.lock.read();
    try {
      if (!t.permits.tryAcquire()) await t.permits.acquire();
      try {
        let s: Handle;
        let epoch = t.epoch;
        try {
          s = this.takeIdle(t) ?? this.openSession(t);
        } catch (e) {
          if (e instanceof HsmError && e.code === 'wrongPin') throw e;
          s = this.openSession(t);
        }
        try {
          const sig = await this.signInSession(t, s, meta, input);
          this.putIdle(t, s, epoch);
          return sig;
        } catch (e) {
          // Even "key not found" gets the retry: a lost login hides private keys too.
          if (e instanceof TokenKeyError) this.putIdle(t, s, epoch);
          else this.discard(t, s, e);
          if (this.closed) throw e;
        }
        // the retry: a fresh session (logging in again if the login was lost)
        s = this.openSession(t);
        epoch = t.epoch;
        try {
          const sig = await this.signInSession(t, s, meta, input);
          this.putIdle(t, s, epoch);
          return sig;
        } catch (e) {
          if (e instanceof TokenKeyError) this.putIdle(t, s, epoch);
          else this.discard(t, s, e);
          throw e;
        }
      } finally {
        t.permits.release();
      }
    } finally {
      t.shared.lock.releaseRead();
    }
  }

  /**
   * On a signing thread: C_SignInit and C_Sign there. Otherwise C_SignInit here
   * and C_Sign on a libuv worker thread (pkcs11js' C_SignAsync).
   */
  private signInSession(t: Token, s: Handle, meta: KeyMeta, input: Buffer): Promise<Buffer> {
    const key = keyHandle(this.p11, t, s, meta);
    const threads = this.signThreads();
    if (threads && !threads.broken) return threads.sign(s, key, meta.mechanism.mechanism, input, meta.sigLen);
    this.p11.C_SignInit(s, meta.mechanism, key);
    const out = Buffer.allocUnsafe(meta.sigLen);
    const data = input.length ? input : EMPTY_INPUT;
    return keepAlive(this.p11.C_SignAsync(s, data, out), data);
  }

  /** The signing threads, started on first use (a `hsmca hsm list` never needs them). */
  private signThreads(): SignThreads | undefined {
    if (this.threads || this.threadsFailed || this.closed) return this.threads;
    const n = this.opts.signThreads ?? 2;
    if (n === 0) {
      this.threadsFailed = true;
      return undefined;
    }
    try {
      this.threads = new SignThreads(this.mod.path, n);
    } catch {
      this.threadsFailed = true; // the libuv path works everywhere
    }
    return this.threads;
  }

  // -------------------------------------------------------------- key generation and cloning

  async generateKey(label: string, algorithm: KeyAlgorithm): Promise<KeyInfo> {
    return this.op(() => this.admin.run(() => this.doGenerate(label, algorithm)));
  }

  private async doGenerate(label: string, algorithm: KeyAlgorithm): Promise<KeyInfo> {
    this.ensureOpen();
    if (typeof label !== 'string' || !label || Buffer.byteLength(label) > 128) {
      throw new HsmError('hsmError', 'a key label must be 1 to 128 bytes');
    }
    if (label === CLUSTER_KEK_LABEL) throw new HsmError('keyExists', `"${label}" is reserved for the cluster wrapping key`);
    if (!isKeyAlgorithm(algorithm)) throw new HsmError('hsmError', `unknown key algorithm ${String(algorithm)}`);
    const cloning = this.clusterMode && this.tokens.length > 1;
    // Every token must answer: a CA key that exists on only part of a cluster cannot fail over.
    const targets = cloning ? this.tokens : [this.tokens.find((t) => t.state === 'up') ?? this.tokens[0]];
    for (const t of targets) {
      await this.withSession(t, (s) => {
        const taken = findObjects(this.p11, s, [{ type: pkcs11js.CKA_LABEL, value: label }]);
        if (taken.length) throw new HsmError('keyExists', `a key labelled "${label}" already exists on PKCS#11 token "${t.label}"`);
      }).catch((e) => {
        if (e instanceof HsmError && e.code === 'keyExists') throw e;
        throw new HsmError('hsmUnavailable', `cannot generate key "${label}": PKCS#11 token "${t.label}" does not answer (${describe(e)})`);
      });
    }
    if (cloning) await this.ensureClusterKek(this.tokens);

    const [source, ...others] = targets;
    const info = keyAlgorithmInfo(algorithm);
    const id = randomBytes(16);
    const clonable = this.clusterMode;
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
      meta = await this.withSession(source, async (s) => {
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
    await this.withSession(t, (s) => {
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
    const existing = await this.withSession(dst, (s) => {
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
      const wrapped = await this.withSession(src, async (s) => {
        const kek = this.kekHandle(src, s);
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

    const privTemplate: pkcs11js.Template = [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: keyType },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: true },
      { type: pkcs11js.CKA_WRAP_WITH_TRUSTED, value: true },
      { type: pkcs11js.CKA_SIGN, value: true },
      { type: pkcs11js.CKA_LABEL, value: meta.label },
      { type: pkcs11js.CKA_ID, value: meta.id },
      ...(meta.kind === 'ec'
        ? [{ type: pkcs11js.CKA_DERIVE, value: false }]
        : [
            { type: pkcs11js.CKA_DECRYPT, value: false },
            { type: pkcs11js.CKA_UNWRAP, value: false },
          ]),
    ];
    const theBlob = blob;
    try {
      await this.withSession(dst, async (s) => {
        const kek = this.kekHandle(dst, s);
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

  /**
   * Brings another token into the cluster (or re-syncs a member): sets up the
   * cluster wrapping key on it (needs the SO PIN once) and clones every CA key
   * that it lacks from a healthy token. Affects this process only: add the label
   * to the configured token labels too.
   */
  async addToken(label: string): Promise<void> {
    return this.op(() => this.admin.run(() => this.doAddToken(label)));
  }

  private async doAddToken(label: string): Promise<void> {
    this.ensureOpen();
    label = typeof label === 'string' ? label.trim() : '';
    if (!label) throw new HsmError('hsmConfig', 'addToken needs a token label');
    let target = this.tokens.find((t) => t.label === label);
    const isNew = !target;
    if (!target) {
      const slot = findSlot(this.p11, label);
      if (this.tokens.some((t) => t.slot.equals(slot))) throw new HsmError('hsmConfig', `token "${label}" is already in use`);
      target = new Token(label, slot, slotShared(this.mod, slot), this.poolSize);
      try {
        this.join(target);
      } catch (e) {
        this.dropToken(target);
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
          await this.probe(t);
          source = t;
          break;
        } catch {
          /* try the next */
        }
      }
      if (!source) throw new HsmError('hsmUnavailable', `no healthy token to copy keys to "${label}" from`);
      const src = source;
      const keys = await this.withSession(src, (s) => {
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
      await this.ensureClusterKek([src, newToken]);
      for (const meta of keys) await this.cloneKey(src, newToken, meta);
      if (isNew) this.tokens.push(newToken);
      this.clusterMode = true;
      this.markUp(newToken);
    } catch (e) {
      if (isNew) this.dropToken(newToken);
      throw e;
    }
  }

  private dropToken(t: Token): void {
    if (t.loginRef) {
      t.loginRef = false;
      t.shared.loginRefs--;
      logoutLast(this.p11, [...t.open.values()][0], t.shared);
    }
    for (const s of [...t.open.values()]) this.closeSession(t, s);
    t.idle = [];
  }

  // -------------------------------------------------------------- the cluster wrapping key

  private kekTemplate(id: Buffer): pkcs11js.Template {
    return [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
      { type: pkcs11js.CKA_TOKEN, value: true },
      // the SO can only create public objects; CKA_SENSITIVE keeps its value unreadable
      { type: pkcs11js.CKA_PRIVATE, value: false },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      // extractable only to enrol another token, and only under a trusted key (which only the SO can make)
      { type: pkcs11js.CKA_EXTRACTABLE, value: true },
      { type: pkcs11js.CKA_WRAP_WITH_TRUSTED, value: true },
      { type: pkcs11js.CKA_TRUSTED, value: true },
      { type: pkcs11js.CKA_WRAP, value: true },
      { type: pkcs11js.CKA_UNWRAP, value: true },
      { type: pkcs11js.CKA_ENCRYPT, value: false },
      { type: pkcs11js.CKA_DECRYPT, value: false },
      { type: pkcs11js.CKA_SIGN, value: false },
      { type: pkcs11js.CKA_VERIFY, value: false },
      { type: pkcs11js.CKA_DERIVE, value: false },
      { type: pkcs11js.CKA_LABEL, value: CLUSTER_KEK_LABEL },
      { type: pkcs11js.CKA_ID, value: id },
      // last: SoftHSM2 applies the template in order, and refuses attributes after CKA_MODIFIABLE=false on unwrap
      { type: pkcs11js.CKA_MODIFIABLE, value: false },
    ];
  }

  private readKek(s: Handle): { handle: Handle; id: Buffer; trusted: boolean } | undefined {
    const found = findObjects(this.p11, s, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_LABEL, value: CLUSTER_KEK_LABEL },
    ]);
    if (found.length === 0) return undefined;
    if (found.length > 1) throw new HsmError('hsmConfig', `more than one "${CLUSTER_KEK_LABEL}" key on a token`);
    const a = getAttrs(this.p11, s, found[0], [pkcs11js.CKA_ID, pkcs11js.CKA_TRUSTED]);
    return { handle: found[0], id: a.get(pkcs11js.CKA_ID) ?? Buffer.alloc(0), trusted: bool(a.get(pkcs11js.CKA_TRUSTED)) };
  }

  private kekHandle(t: Token, s: Handle): Handle {
    if (t.kek) return t.kek.handle;
    const k = this.readKek(s);
    if (!k || !k.trusted) {
      throw new HsmError(
        'hsmConfig',
        `PKCS#11 token "${t.label}" has no trusted cluster wrapping key; open the HSM with the SO PIN (HSMCA_PKCS11_SO_PIN) to set it up`,
      );
    }
    t.kek = { handle: k.handle, id: k.id };
    return k.handle;
  }

  /**
   * Makes sure every token in `tokens` holds the same trusted cluster wrapping
   * key. A missing one is created (first token) or transported from a token that
   * has it, under a one-time AES key both tokens derive by ECDH: its plaintext
   * never leaves a token. Needs the SO PIN, and only then.
   */
  private async ensureClusterKek(tokens: Token[]): Promise<void> {
    const state: { t: Token; kek?: { id: Buffer; trusted: boolean } }[] = [];
    for (const t of tokens) {
      const kek = await this.withSession(t, (s) => this.readKek(s)).catch((e) => {
        if (e instanceof HsmError) throw e;
        throw new HsmError('hsmUnavailable', `PKCS#11 token "${t.label}" does not answer (${describe(e)})`);
      });
      state.push({ t, kek: kek && { id: kek.id, trusted: kek.trusted } });
    }
    const ids = new Set(state.filter((x) => x.kek).map((x) => hex(x.kek!.id)));
    if (ids.size > 1) {
      throw new HsmError(
        'hsmConfig',
        `the PKCS#11 tokens ${quote(state.filter((x) => x.kek).map((x) => x.t.label))} hold different cluster wrapping keys; they are not one cluster`,
      );
    }
    const untrusted = state.filter((x) => x.kek && !x.kek.trusted);
    if (untrusted.length) {
      throw new HsmError('hsmConfig', `the cluster wrapping key on ${quote(untrusted.map((x) => x.t.label))} is not marked CKA_TRUSTED`);
    }
    const missing = state.filter((x) => !x.kek).map((x) => x.t);
    if (missing.length === 0) return;
    if (!this.#soPin) {
      throw new HsmError(
        'hsmConfig',
        `the cluster wrapping key is missing on PKCS#11 token(s) ${quote(missing.map((t) => t.label))}; ` +
          'the security officer PIN (HSMCA_PKCS11_SO_PIN) is needed once to set it up',
      );
    }
    let source = state.find((x) => x.kek)?.t;
    if (!source) {
      source = missing.shift()!;
      const first = source;
      await this.withSo([first], (sessions) => {
        const s = sessions.get(first)!;
        this.p11.C_GenerateKey(s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
          ...this.kekTemplate(randomBytes(16)),
          { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
        ]);
      });
    }
    const src = source;
    for (const dst of missing) {
      await this.withSo([src, dst], (sessions) => this.transportKek(src, sessions.get(src)!, dst, sessions.get(dst)!));
    }
  }

  /** In SO sessions on both tokens: ECDH-agree a trusted transport key, wrap the KEK under it, unwrap it on `dst`. */
  private transportKek(src: Token, ss: Handle, dst: Token, ds: Handle): void {
    const kek = this.readKek(ss);
    if (!kek) throw new HsmError('hsmConfig', `PKCS#11 token "${src.label}" lost its cluster wrapping key`);
    const ephemeral = (s: Handle) =>
      this.p11.C_GenerateKeyPair(
        s,
        { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN },
        [
          { type: pkcs11js.CKA_TOKEN, value: false },
          { type: pkcs11js.CKA_PRIVATE, value: false },
          { type: pkcs11js.CKA_EC_PARAMS, value: EC_PARAMS['P-256'] },
          { type: pkcs11js.CKA_DERIVE, value: true },
        ],
        [
          { type: pkcs11js.CKA_TOKEN, value: false },
          { type: pkcs11js.CKA_PRIVATE, value: false },
          { type: pkcs11js.CKA_SENSITIVE, value: true },
          { type: pkcs11js.CKA_EXTRACTABLE, value: false },
          { type: pkcs11js.CKA_DERIVE, value: true },
        ],
      );
    const point = (s: Handle, pub: Handle) =>
      ecPoint(getAttrs(this.p11, s, pub, [pkcs11js.CKA_EC_POINT]).get(pkcs11js.CKA_EC_POINT)!, 'P-256');
    const transportTemplate = (use: 'wrap' | 'unwrap'): pkcs11js.Template => [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
      { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
      { type: pkcs11js.CKA_TOKEN, value: false },
      { type: pkcs11js.CKA_PRIVATE, value: false },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_TRUSTED, value: use === 'wrap' },
      { type: pkcs11js.CKA_WRAP, value: use === 'wrap' },
      { type: pkcs11js.CKA_UNWRAP, value: use === 'unwrap' },
      { type: pkcs11js.CKA_ENCRYPT, value: false },
      { type: pkcs11js.CKA_DECRYPT, value: false },
    ];
    const a = ephemeral(ss);
    const b = ephemeral(ds);
    const created: [Handle, Handle][] = [
      [ss, a.privateKey],
      [ss, a.publicKey],
      [ds, b.privateKey],
      [ds, b.publicKey],
    ];
    try {
      const ecdh = (publicData: Buffer): pkcs11js.Mechanism => ({
        mechanism: pkcs11js.CKM_ECDH1_DERIVE,
        parameter: { type: pkcs11js.CK_PARAMS_EC_DH, kdf: pkcs11js.CKD_NULL, publicData } as pkcs11js.ECDH1,
      });
      const ta = this.p11.C_DeriveKey(ss, ecdh(point(ds, b.publicKey)), a.privateKey, transportTemplate('wrap'));
      created.push([ss, ta]);
      const tb = this.p11.C_DeriveKey(ds, ecdh(point(ss, a.publicKey)), b.privateKey, transportTemplate('unwrap'));
      created.push([ds, tb]);
      const blob = this.p11.C_WrapKey(ss, WRAP_MECHANISM, ta, kek.handle, Buffer.alloc(1024));
      try {
        this.p11.C_UnwrapKey(ds, WRAP_MECHANISM, tb, blob, this.kekTemplate(kek.id));
      } finally {
        blob.fill(0);
      }
    } finally {
      for (const [s, h] of created) destroyQuietly(this.p11, s, [h]);
    }
    dst.kek = undefined;
  }

  /**
   * Runs `fn` with the security officer logged in on each token. The login state
   * is per application and token, so the user is logged out meanwhile: signing on
   * these tokens waits (the token lock is held exclusive) and resumes after.
   */
  private async withSo(tokens: Token[], fn: (sessions: Map<Token, Handle>) => void | Promise<void>): Promise<void> {
    const ordered = [...tokens].sort((x, y) => hex(x.slot).localeCompare(hex(y.slot)));
    const locked: Token[] = [];
    const sessions = new Map<Token, Handle>();
    try {
      for (const t of ordered) {
        await t.shared.lock.write();
        locked.push(t);
      }
      for (const t of ordered) {
        const s = this.p11.C_OpenSession(t.slot, RW_SESSION);
        t.open.set(hex(s), s);
        sessions.set(t, s);
        try {
          this.p11.C_Logout(s);
        } catch {
          /* nobody was logged in */
        }
        try {
          this.p11.C_Login(s, pkcs11js.CKU_SO, this.#soPin!);
        } catch (e) {
          if (isCkr(e, pkcs11js.CKR_PIN_INCORRECT, pkcs11js.CKR_PIN_INVALID, pkcs11js.CKR_PIN_LEN_RANGE, pkcs11js.CKR_PIN_LOCKED)) {
            throw new HsmError('wrongPin', `the SO PIN was rejected by PKCS#11 token "${t.label}" (${ckrName(e)})`);
          }
          throw new HsmError('hsmUnavailable', `the security officer cannot log in to PKCS#11 token "${t.label}" (${describe(e)})`);
        }
      }
      await fn(sessions);
    } catch (e) {
      if (e instanceof HsmError) throw e;
      throw new HsmError('hsmError', `setting up the cluster wrapping key failed on ${quote(tokens.map((t) => t.label))} (${describe(e)})`);
    } finally {
      for (const [t, s] of sessions) {
        try {
          this.p11.C_Logout(s);
        } catch {
          /* ignore */
        }
        // back to the user login for the pool (and for everyone else in the process)
        try {
          loginUser(this.p11, s, this.#pin, t.label, t.shared);
          this.putIdle(t, s);
        } catch {
          this.closeSession(t, s);
        }
      }
      for (const t of locked) t.shared.lock.releaseWrite();
    }
  }

  // -------------------------------------------------------------- `hsmca hsm list`

  /** Tokens, their private keys with the security attributes, the cluster wrapping key, and health. */
  async tokenInfo(): Promise<Pkcs11HsmInfo> {
    const health = await this.health();
    return this.op(async () => {
      const tokens: Pkcs11TokenInfo[] = [];
      for (const th of health.tokens) {
        const t = this.tokens.find((x) => x.label === th.label);
        const entry: Pkcs11TokenInfo = { label: th.label, status: th.status, error: th.error, keys: [] };
        tokens.push(entry);
        if (!t || th.status !== 'ok') continue;
        try {
          const ti = this.checkTokenInfo(t);
          entry.manufacturer = trimLabel(ti.manufacturerID);
          entry.model = trimLabel(ti.model);
          entry.serialNumber = trimLabel(ti.serialNumber);
          await this.withSession(t, (s) => {
            const kek = this.readKek(s);
            entry.clusterKek = kek ? { present: true, id: hex(kek.id), trusted: kek.trusted } : { present: false };
            for (const priv of findObjects(this.p11, s, [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY }])) {
              entry.keys.push(this.describeKey(s, priv));
            }
          });
          entry.keys.sort((a, b) => a.label.localeCompare(b.label));
        } catch (e) {
          entry.status = 'down';
          entry.error = describe(e);
        }
      }
      return { module: this.opts.module, cluster: this.clusterMode, health, tokens };
    });
  }

  private describeKey(s: Handle, priv: Handle): Pkcs11KeyObject {
    const A = pkcs11js;
    const a = getAttrs(this.p11, s, priv, [
      A.CKA_LABEL,
      A.CKA_ID,
      A.CKA_KEY_TYPE,
      A.CKA_TOKEN,
      A.CKA_PRIVATE,
      A.CKA_SENSITIVE,
      A.CKA_ALWAYS_SENSITIVE,
      A.CKA_EXTRACTABLE,
      A.CKA_NEVER_EXTRACTABLE,
      A.CKA_WRAP_WITH_TRUSTED,
      A.CKA_LOCAL,
      A.CKA_SIGN,
    ]);
    const label = a.get(A.CKA_LABEL)?.toString('utf8') ?? '';
    const id = a.get(A.CKA_ID) ?? Buffer.alloc(0);
    const keyType = ulong(a.get(A.CKA_KEY_TYPE)!);
    let algorithm: KeyAlgorithm | undefined;
    try {
      if (keyType === A.CKK_EC || keyType === A.CKK_RSA) algorithm = readPublic(this.p11, s, priv, keyType, false).algorithm;
    } catch {
      /* unreadable parameters: shown without an algorithm */
    }
    return {
      label,
      id: hex(id),
      algorithm,
      keyType: keyType === A.CKK_EC ? 'ec' : keyType === A.CKK_RSA ? 'rsa' : 'other',
      hasPublicKey: !!findPublic(this.p11, s, label, id),
      attributes: {
        token: bool(a.get(A.CKA_TOKEN)),
        private: bool(a.get(A.CKA_PRIVATE)),
        sensitive: bool(a.get(A.CKA_SENSITIVE)),
        alwaysSensitive: bool(a.get(A.CKA_ALWAYS_SENSITIVE)),
        extractable: bool(a.get(A.CKA_EXTRACTABLE)),
        neverExtractable: bool(a.get(A.CKA_NEVER_EXTRACTABLE)),
        wrapWithTrusted: bool(a.get(A.CKA_WRAP_WITH_TRUSTED)),
        local: bool(a.get(A.CKA_LOCAL)),
        sign: bool(a.get(A.CKA_SIGN)),
      },
    };
  }
}
