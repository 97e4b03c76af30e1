import { HsmError } from '../hsm';

/**
 * Whether a backend instance is open, and how many of its operations are in
 * flight, so that close() can wait for them before it closes the sessions and
 * releases the module.
 */
export class Lifecycle {
  closed = false;
  /** operations using the module right now (op() and the signing hot path count themselves) */
  inflight = 0;
  private idleWaiters: (() => void)[] = [];

  ensureOpen(): void {
    if (this.closed) throw new HsmError('hsmUnavailable', 'the PKCS#11 HSM is closed');
  }

  /** Runs an operation that uses the module, so that close() can wait for it. */
  async op<T>(fn: () => Promise<T>): Promise<T> {
    this.ensureOpen();
    this.inflight++;
    try {
      return await fn();
    } finally {
      this.leave();
    }
  }

  /** An operation counted in `inflight` has ended. */
  leave(): void {
    this.inflight--;
    if (this.inflight === 0 && this.idleWaiters.length) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Resolves when the operations in flight have ended (call only while `inflight > 0`). */
  idle(): Promise<void> {
    return new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }
}
