import { randomBytes } from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import { HsmError } from '../hsm';
import { bool, getAttrs, findObjects, hex } from './attributes';
import { ckrName, describe, isCkr, quote } from './errors';
import { destroyQuietly } from './key-objects';
import { Handle, PKCS11 } from './module-registry';
import { EC_PARAMS, ecPoint } from './public-key';
import { NestedAttribute, generateKeyNested, unwrapKeyNested } from './nested-templates';
import type { SessionPool } from './session-pool';
import { RW_SESSION, Token } from './token';

/**
 * The cluster wrapping key (KEK): one trusted AES key, the same on every token
 * of a cluster, under which CA keys are cloned. The security officer creates it
 * on the first token and transports it to the others under a one-time ECDH key.
 */

/** the label of the AES key that wraps CA keys when they are cloned between tokens */
export const CLUSTER_KEK_LABEL = 'hsmca-cluster-kek';
/** how CA keys are wrapped under the KEK, and the KEK under a transport key */
export const WRAP_MECHANISM: pkcs11js.Mechanism = { mechanism: pkcs11js.CKM_AES_KEY_WRAP_PAD };

/**
 * What the cluster wrapping key may wrap and unwrap (CKA_WRAP_TEMPLATE,
 * CKA_UNWRAP_TEMPLATE): only keys that may leave a token under a trusted key,
 * and a key unwrapped under it is always sensitive, private and still
 * wrap-with-trusted. Without them, a holder of the user PIN could wrap a CA
 * key under the KEK and unwrap it again as a non-sensitive object, then read
 * it (test/hsm-pkcs11-unwrap-template.test.ts shows it, and that it now fails).
 */
export const KEK_WRAP_TEMPLATE: NestedAttribute[] = [{ type: pkcs11js.CKA_WRAP_WITH_TRUSTED, value: true }];
export const KEK_UNWRAP_TEMPLATE: NestedAttribute[] = [
  { type: pkcs11js.CKA_SENSITIVE, value: true },
  { type: pkcs11js.CKA_PRIVATE, value: true },
  { type: pkcs11js.CKA_WRAP_WITH_TRUSTED, value: true },
];

export function kekTemplate(id: Buffer): NestedAttribute[] {
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
    { type: pkcs11js.CKA_WRAP_TEMPLATE, value: KEK_WRAP_TEMPLATE },
    { type: pkcs11js.CKA_UNWRAP_TEMPLATE, value: KEK_UNWRAP_TEMPLATE },
    // last: SoftHSM2 applies the template in order, and refuses attributes after CKA_MODIFIABLE=false on unwrap
    { type: pkcs11js.CKA_MODIFIABLE, value: false },
  ];
}

export function readKek(p11: PKCS11, s: Handle): { handle: Handle; id: Buffer; trusted: boolean } | undefined {
  const found = findObjects(p11, s, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_LABEL, value: CLUSTER_KEK_LABEL },
  ]);
  if (found.length === 0) return undefined;
  if (found.length > 1) throw new HsmError('hsmConfig', `more than one "${CLUSTER_KEK_LABEL}" key on a token`);
  const a = getAttrs(p11, s, found[0], [pkcs11js.CKA_ID, pkcs11js.CKA_TRUSTED]);
  return { handle: found[0], id: a.get(pkcs11js.CKA_ID) ?? Buffer.alloc(0), trusted: bool(a.get(pkcs11js.CKA_TRUSTED)) };
}

export class ClusterKek {
  /** the security officer PIN, in a #private field (not in JSON, not in inspect) */
  readonly #soPin?: string;

  constructor(
    private readonly p11: PKCS11,
    private readonly pool: SessionPool,
    soPin: string | undefined,
    /** the module's path: the KEK's nested templates are set through nested-templates.ts */
    private readonly modulePath: string,
  ) {
    this.#soPin = soPin;
  }

  /** The SO PIN was given: the KEK can be set up. */
  get hasSoPin(): boolean {
    return !!this.#soPin;
  }

  /** The KEK on token `t` (its handle cached on the token); it must be there and trusted. */
  handle(t: Token, s: Handle): Handle {
    if (t.kek) return t.kek.handle;
    const k = readKek(this.p11, s);
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
  async ensure(tokens: readonly Token[]): Promise<void> {
    const state: { t: Token; kek?: { id: Buffer; trusted: boolean } }[] = [];
    for (const t of tokens) {
      const kek = await this.pool.withSession(t, (s) => readKek(this.p11, s)).catch((e) => {
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
        generateKeyNested(this.modulePath, s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
          { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
          ...kekTemplate(randomBytes(16)),
        ]);
      });
    }
    const src = source;
    for (const dst of missing) {
      await this.withSo([src, dst], (sessions) => this.transport(src, sessions.get(src)!, dst, sessions.get(dst)!));
    }
  }

  /** In SO sessions on both tokens: ECDH-agree a trusted transport key, wrap the KEK under it, unwrap it on `dst`. */
  private transport(src: Token, ss: Handle, dst: Token, ds: Handle): void {
    const kek = readKek(this.p11, ss);
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
        unwrapKeyNested(this.modulePath, ds, WRAP_MECHANISM, tb, blob, kekTemplate(kek.id));
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
  async withSo(tokens: readonly Token[], fn: (sessions: Map<Token, Handle>) => void | Promise<void>): Promise<void> {
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
        this.pool.backToUser(t, s);
      }
      for (const t of locked) t.shared.lock.releaseWrite();
    }
  }
}
