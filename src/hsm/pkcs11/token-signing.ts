import { HsmError } from '../hsm';
import { KeyMeta, keyHandle } from './key-objects';
import type { Lifecycle } from './lifecycle';
import { Handle, PKCS11 } from './module-registry';
import { EMPTY_INPUT, keepAlive } from './pkcs11js-buffers';
import type { SessionPool } from './session-pool';
import { SignThreads } from './sign-threads';
import { TokenKeyError } from './errors';
import { Token } from './token';

/**
 * Signing on one token: a pooled session, the key handle cached per token, and
 * the signature on a signing thread (signThreads > 0) or as C_SignInit here plus
 * pkcs11js' C_SignAsync on the libuv thread pool.
 */
export class TokenSigning {
  private threads?: SignThreads;
  private threadsFailed = false;

  constructor(
    private readonly p11: PKCS11,
    private readonly modulePath: string,
    /** Pkcs11Options.signThreads */
    private readonly threadCount: number,
    private readonly pool: SessionPool,
    private readonly life: Lifecycle,
  ) {}

  /** One token: a pooled session, and on failure one more try on a brand-new session. */
  async signOnToken(t: Token, meta: KeyMeta, input: Buffer): Promise<Buffer> {
    if (!t.shared.lock.tryRead()) await t.shared.lock.read();
    try {
      if (!t.permits.tryAcquire()) await t.permits.acquire();
      try {
        let s: Handle;
        let epoch = t.epoch;
        try {
          s = this.pool.takeIdle(t) ?? this.pool.openSession(t);
        } catch (e) {
          if (e instanceof HsmError && e.code === 'wrongPin') throw e;
          s = this.pool.openSession(t);
        }
        try {
          const sig = await this.signInSession(t, s, meta, input);
          this.pool.putIdle(t, s, epoch);
          return sig;
        } catch (e) {
          // Even "key not found" gets the retry: a lost login hides private keys too.
          if (e instanceof TokenKeyError) this.pool.putIdle(t, s, epoch);
          else this.pool.discard(t, s, e);
          if (this.life.closed) throw e;
        }
        // the retry: a fresh session (logging in again if the login was lost)
        s = this.pool.openSession(t);
        epoch = t.epoch;
        try {
          const sig = await this.signInSession(t, s, meta, input);
          this.pool.putIdle(t, s, epoch);
          return sig;
        } catch (e) {
          if (e instanceof TokenKeyError) this.pool.putIdle(t, s, epoch);
          else this.pool.discard(t, s, e);
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
    if (this.threads || this.threadsFailed || this.life.closed) return this.threads;
    const n = this.threadCount;
    if (n === 0) {
      this.threadsFailed = true;
      return undefined;
    }
    try {
      this.threads = new SignThreads(this.modulePath, n);
    } catch {
      this.threadsFailed = true; // the libuv path works everywhere
    }
    return this.threads;
  }

  /** Stops the signing threads: no thread may be inside the module when its sessions close and it is finalised. */
  async close(): Promise<void> {
    await this.threads?.close();
    this.threads = undefined;
  }
}
