import * as pkcs11js from 'pkcs11js';
import { HsmError } from '../hsm';
import { findObjects } from './attributes';
import { TokenKeyError, describe } from './errors';
import { KeyMeta, privateKeyTemplate } from './key-objects';
import type { Lifecycle } from './lifecycle';
import { Handle, ModuleEntry, PKCS11, slotShared } from './module-registry';
import type { SessionPool } from './session-pool';
import { Token, enumerateTokens, trimLabel } from './token';

/**
 * Cluster failover: tokens are marked down and up, probed (token info, a
 * logged-in session, a search for the keys), found again by label when they
 * move slots, and ordered for signing (healthy ones round-robin, down ones last,
 * re-probed in the background at most every REPROBE_MS).
 */

/** milliseconds a token marked down is left alone before signing traffic re-probes it */
const REPROBE_MS = 5000;

export function markDown(t: Token, error: string): void {
  if (t.state !== 'down') t.nextProbeAt = Date.now() + REPROBE_MS;
  t.state = 'down';
  t.lastError = error;
}

export function markUp(t: Token): void {
  t.state = 'up';
  t.lastError = undefined;
}

export class Failover {
  private rr = 0;

  constructor(
    private readonly p11: PKCS11,
    private readonly mod: ModuleEntry,
    private readonly pool: SessionPool,
    /** the backend's tokens (its own array: tokens that join later are seen) */
    private readonly tokens: readonly Token[],
    /** the keys signers have been made for: a probe checks that each is still there */
    private readonly metas: ReadonlyMap<string, KeyMeta>,
    private readonly life: Lifecycle,
  ) {}

  /** Cheap check that the token still answers under its label (C_GetTokenInfo). */
  checkTokenInfo(t: Token): pkcs11js.TokenInfo {
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
    for (const i of t.idle.splice(0)) this.pool.closeSession(t, i.h);
    t.keyHandles.clear();
    t.kek = undefined;
    return true;
  }

  /** Really asks the token: token info, a logged-in session, a search for the key objects. */
  async probe(t: Token): Promise<void> {
    try {
      this.checkTokenInfo(t);
      await this.pool.withSession(t, (s) => {
        this.pool.ensureLogin(t, s);
        findObjects(this.p11, s, [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY }]);
        for (const label of this.metas.keys()) {
          if (findObjects(this.p11, s, privateKeyTemplate(label)).length === 0) {
            throw new TokenKeyError(`key "${label}" is missing on token "${t.label}"`);
          }
        }
      });
      this.pool.takeLoginRef(t);
      markUp(t);
    } catch (e) {
      markDown(t, describe(e));
      throw e;
    }
  }

  /** Signing order: healthy tokens round-robin, then tokens marked down as a last resort. */
  signOrder(): readonly Token[] {
    if (this.tokens.length === 1 && this.tokens[0].state === 'up') return this.tokens;
    const up = this.tokens.filter((t) => t.state === 'up' && !t.shared.lock.exclusive);
    const busy = this.tokens.filter((t) => t.state === 'up' && t.shared.lock.exclusive);
    const down = this.tokens.filter((t) => t.state === 'down');
    const now = Date.now();
    for (const t of down) {
      if (now >= t.nextProbeAt && !t.probing) {
        t.probing = true;
        t.nextProbeAt = now + REPROBE_MS;
        this.life.op(() => this.probe(t))
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

  /** Runs `fn` on the first token that answers; tokens that fail are marked down. */
  async onFirstHealthy<T>(what: string, fn: (t: Token, s: Handle) => T | Promise<T>): Promise<T> {
    const failures: string[] = [];
    const order = [...this.tokens.filter((t) => t.state === 'up'), ...this.tokens.filter((t) => t.state === 'down')];
    for (const t of order) {
      try {
        // a token whose store is gone still answers searches (with nothing): ask it first
        this.checkTokenInfo(t);
        const r = await this.pool.withSession(t, (s) => fn(t, s));
        if (t.state === 'down') markUp(t);
        return r;
      } catch (e) {
        if (e instanceof HsmError && e.code !== 'hsmUnavailable' && e.code !== 'wrongPin') throw e;
        failures.push(`"${t.label}": ${describe(e)}`);
        markDown(t, describe(e));
      }
    }
    throw new HsmError('hsmUnavailable', `${what}: no PKCS#11 token answered (${failures.join('; ')})`);
  }
}
