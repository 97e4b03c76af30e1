import * as pkcs11js from 'pkcs11js';
import { HsmError } from '../hsm';
import { hex } from './attributes';
import { TokenKeyError, isCkr } from './errors';
import type { Lifecycle } from './lifecycle';
import { CKS_RO_USER_FUNCTIONS, CKS_RW_SO_FUNCTIONS, CKS_RW_USER_FUNCTIONS, loginChecked, loginUser, logoutLast } from './login';
import { Handle, PKCS11 } from './module-registry';
import { RW_SESSION, Token } from './token';

/**
 * The session pool: per token, up to `sessionsPerToken` logged-in R/W sessions,
 * opened lazily and handed out exclusively (a semaphore of permits), so no
 * session ever runs two operations. A fault that may be shared by every session
 * (closed, logged out, device errors) bumps the token's epoch and drops the idle
 * ones; sessions in use are closed when they come back, never while in use.
 */

/** errors that a fresh session (logged in again, handles looked up again) can cure */
const STALE_SESSION_ERRORS = [
  pkcs11js.CKR_SESSION_HANDLE_INVALID,
  pkcs11js.CKR_SESSION_CLOSED,
  pkcs11js.CKR_USER_NOT_LOGGED_IN,
  pkcs11js.CKR_OBJECT_HANDLE_INVALID,
  pkcs11js.CKR_KEY_HANDLE_INVALID,
  pkcs11js.CKR_OPERATION_ACTIVE,
];

export class SessionPool {
  /** the user PIN, in a #private field (not in JSON, not in inspect) */
  readonly #pin: string;

  constructor(
    private readonly p11: PKCS11,
    pin: string,
    private readonly life: Lifecycle,
  ) {
    this.#pin = pin;
  }

  /** This instance starts using token `t`: a first session, the login (with its PIN checked), a login reference. */
  join(t: Token): void {
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

  takeLoginRef(t: Token): void {
    if (!t.loginRef) {
      t.loginRef = true;
      t.shared.loginRefs++;
    }
  }

  /** This instance stops using token `t` (a token addToken could not bring in): the reverse of join. */
  dropToken(t: Token): void {
    if (t.loginRef) {
      t.loginRef = false;
      t.shared.loginRefs--;
      logoutLast(this.p11, [...t.open.values()][0], t.shared);
    }
    for (const s of [...t.open.values()]) this.closeSession(t, s);
    t.idle = [];
  }

  /** The instance is closing: logs out (when no one else in the process needs the login) and closes every session on `t`. */
  shutdown(t: Token): void {
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

  /** A new session, logged in as the user (the login is per token, so this is usually a no-op). */
  openSession(t: Token): Handle {
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

  ensureLogin(t: Token, s: Handle): void {
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

  closeSession(t: Token, s: Handle): void {
    t.open.delete(hex(s));
    try {
      this.p11.C_CloseSession(s);
    } catch {
      /* the session is already gone */
    }
  }

  takeIdle(t: Token): Handle | undefined {
    while (t.idle.length) {
      const s = t.idle.pop()!;
      if (s.epoch === t.epoch) return s.h;
      this.closeSession(t, s.h);
    }
    return undefined;
  }

  putIdle(t: Token, s: Handle, epoch = t.epoch): void {
    if (this.life.closed || epoch !== t.epoch || !t.open.has(hex(s)) || t.idle.length >= t.poolSize) {
      if (!this.life.closed) this.closeSession(t, s);
      return;
    }
    t.idle.push({ h: s, epoch });
  }

  /** A session failed: close it and, when the fault is not specific to it, every idle one. */
  discard(t: Token, s: Handle, e: unknown): void {
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
  async withSession<T>(t: Token, fn: (s: Handle) => T | Promise<T>): Promise<T> {
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
          if (!pooled || !isCkr(e, ...STALE_SESSION_ERRORS) || this.life.closed) throw e;
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

  /** A session that served the security officer goes back to the user login and to the pool (closed if that fails). */
  backToUser(t: Token, s: Handle): void {
    try {
      loginUser(this.p11, s, this.#pin, t.label, t.shared);
      this.putIdle(t, s);
    } catch {
      this.closeSession(t, s);
    }
  }
}
