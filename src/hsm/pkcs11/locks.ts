/** The locks of the PKCS#11 backend: session permits, the token lock, the admin mutex. */

/** Counts permits (the sessions of a token's pool); waiters are served in order. */
export class Semaphore {
  private waiters: (() => void)[] = [];
  constructor(private permits: number) {}
  tryAcquire(): boolean {
    if (this.permits > 0) {
      this.permits--;
      return true;
    }
    return false;
  }
  acquire(): Promise<void> {
    if (this.tryAcquire()) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }
  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.permits++;
  }
}

/**
 * Signing holds a token's lock shared; the rare security-officer maintenance
 * (which must log the user out: PKCS#11 has one login state per application and
 * token) holds it exclusive.
 */
export class RwLock {
  private readers = 0;
  private writer = false;
  private queue: { write: boolean; resolve: () => void }[] = [];
  get exclusive(): boolean {
    return this.writer || this.queue.some((q) => q.write);
  }
  tryRead(): boolean {
    if (this.writer || this.queue.length) return false;
    this.readers++;
    return true;
  }
  read(): Promise<void> {
    if (this.tryRead()) return Promise.resolve();
    return new Promise((resolve) => this.queue.push({ write: false, resolve }));
  }
  releaseRead(): void {
    this.readers--;
    this.drain();
  }
  write(): Promise<void> {
    if (!this.writer && this.readers === 0 && this.queue.length === 0) {
      this.writer = true;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.queue.push({ write: true, resolve }));
  }
  releaseWrite(): void {
    this.writer = false;
    this.drain();
  }
  private drain(): void {
    while (this.queue.length) {
      const next = this.queue[0];
      if (next.write) {
        if (this.readers === 0 && !this.writer) {
          this.queue.shift();
          this.writer = true;
          next.resolve();
        }
        return;
      }
      if (this.writer) return;
      this.queue.shift();
      this.readers++;
      next.resolve();
    }
  }
}

/** Runs functions one at a time, in order (key generation and addToken). */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn, fn);
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}
