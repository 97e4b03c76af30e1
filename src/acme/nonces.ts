import { randomBytes } from 'node:crypto';
import { Clock } from '../clock';
import { AcmeStore } from '../storage/acme-store';

const LIFETIME_MS = 60 * 60 * 1000;
const SWEEP_EVERY_MS = 60 * 1000;

/**
 * Replay nonces (RFC 8555 6.5): 128 random bits, base64url, kept in the
 * database so a nonce from one worker or instance is good on every other,
 * consumed by one DELETE (a replay finds nothing), expired after an hour.
 */
export class NonceService {
  private lastSweep = 0;

  constructor(private readonly deps: { store: AcmeStore; clock: Clock }) {}

  async issue(): Promise<string> {
    const now = this.deps.clock.now();
    const value = randomBytes(16).toString('base64url');
    await this.deps.store.addNonce(value, new Date(now.getTime() + LIFETIME_MS));
    if (now.getTime() - this.lastSweep > SWEEP_EVERY_MS) {
      this.lastSweep = now.getTime();
      void this.deps.store.sweepNonces(now).catch(() => undefined);
    }
    return value;
  }

  /** true once for a nonce this CA issued that has not expired */
  async consume(value: unknown): Promise<boolean> {
    if (typeof value !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(value)) return false;
    return this.deps.store.consumeNonce(value, this.deps.clock.now());
  }
}
