import type { AuditLog } from '../audit/audit-log';
import { Clock } from '../clock';
import { Logger } from '../log';
import { AcmeStore, AuthzRecord, ChallengeRecord } from '../storage/acme-store';
import type { AcmeConfig } from './acme-config';
import { AcmeProblem } from './problem';
import { AddressGuard } from './validation/address-guard';
import { validateDns01 } from './validation/dns-01';
import { validateHttp01 } from './validation/http-01';
import { validateTlsAlpn01 } from './validation/tls-alpn-01';

const RETRY_DELAY_MS = 1_000;
/** beyond the attempt timeout: the retry pause and the deadline's slack */
const LEASE_MARGIN_MS = 5_000;
const RESUME_INTERVAL_MS = 5_000;

/**
 * Runs a challenge's validation after the client asked for it (RFC 8555
 * 7.5.1), in the background: a bounded number of attempts, each under a
 * timeout; the first success makes the challenge and its authorization
 * valid (and the order ready once all are); the last failure makes them
 * invalid with the problem, and the order invalid with it as a subproblem.
 * State moves only by conditional updates, so two workers never both decide.
 */
export class Validator {
  readonly guard: AddressGuard;
  private readonly running = new Set<Promise<void>>();
  /** a graceful stop began: no new validation starts */
  private stopping = false;
  /** the grace ran out: validations still running write nothing; they stay "processing" for another worker or the next start */
  private abandoned = false;
  private resumeTimer?: NodeJS.Timeout;

  constructor(private readonly deps: { store: AcmeStore; clock: Clock; log: Logger; audit: AuditLog; config: AcmeConfig }) {
    this.guard = new AddressGuard(deps.config);
  }

  /**
   * How long a processing challenge may go untouched before another worker
   * takes it over: a running validation touches it before every attempt,
   * and an attempt lasts at most the timeout (plus the retry pause).
   */
  get leaseMs(): number {
    return this.deps.config.validationTimeoutSeconds * 1000 + LEASE_MARGIN_MS;
  }

  get accepting(): boolean {
    return !this.stopping;
  }

  start(c: ChallengeRecord, authz: AuthzRecord, keyAuthorization: string): void {
    const p = this.run(c, authz, keyAuthorization).catch((e) => this.deps.log.error('ACME validation failed unexpectedly', { challenge: c.id, error: (e as Error).message }));
    this.running.add(p);
    void p.finally(() => this.running.delete(p));
  }

  /**
   * Resumes validations that a dead process (or one stopped past its grace)
   * left "processing": at once, then every `intervalMs`, on every worker;
   * a conditional update lets exactly one of them take each over.
   */
  startResuming(intervalMs = RESUME_INTERVAL_MS): void {
    const sweep = () => this.resumeOrphans().catch((e) => this.deps.log.error('ACME validation resume failed', { error: (e as Error).message }));
    void sweep();
    this.resumeTimer = setInterval(sweep, intervalMs);
    this.resumeTimer.unref();
  }

  async resumeOrphans(): Promise<number> {
    if (this.stopping) return 0;
    const { store, clock, log } = this.deps;
    const now = clock.now();
    let n = 0;
    for (const c of await store.orphanedChallenges(new Date(now.getTime() - this.leaseMs), 100)) {
      if (this.stopping) break;
      if (!(await store.claimChallenge(c.id, c.updatedAt, now))) continue;
      const authz = await store.authzById(c.authzId);
      const account = await store.accountById(c.accountId);
      if (!authz || !account) continue;
      log.info('resuming an ACME validation left processing', { challenge: c.id, type: c.type, identifier: authz.identifier.value });
      this.start(c, authz, `${c.token}.${account.thumbprint}`);
      n++;
    }
    return n;
  }

  /**
   * A graceful stop (HSMCA_SHUTDOWN_GRACE_SECONDS): no new validation starts,
   * those in flight get `graceMs` to finish; any still running then is left
   * "processing", to be resumed by another worker or at the next start.
   */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    if (this.resumeTimer) clearInterval(this.resumeTimer);
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((r) => (timer = setTimeout(r, graceMs)));
    await Promise.race([Promise.allSettled([...this.running]), grace]);
    clearTimeout(timer);
    if (this.running.size > 0) {
      this.abandoned = true;
      this.deps.log.warn('ACME validations still running at the end of the grace are left for another worker or the next start', { count: this.running.size });
    }
  }

  /** waits for validations in flight */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.running]);
  }

  private async attempt(c: ChallengeRecord, authz: AuthzRecord, keyAuthorization: string): Promise<void> {
    const cfg = this.deps.config;
    const timeoutMs = cfg.validationTimeoutSeconds * 1000;
    const name = authz.identifier.value;
    const work =
      c.type === 'http-01'
        ? validateHttp01(this.guard, name, c.token, keyAuthorization, { port: cfg.http01Port, tlsPort: cfg.tlsAlpn01Port, timeoutMs })
        : c.type === 'dns-01'
          ? validateDns01(this.guard, name, keyAuthorization)
          : validateTlsAlpn01(this.guard, name, keyAuthorization, { port: cfg.tlsAlpn01Port, timeoutMs });
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new AcmeProblem('connection', `validation of ${name} took longer than ${cfg.validationTimeoutSeconds} seconds`)), timeoutMs + 500);
    });
    try {
      await Promise.race([work, deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async run(c: ChallengeRecord, authz: AuthzRecord, keyAuthorization: string): Promise<void> {
    const { store, clock, audit } = this.deps;
    let problem: AcmeProblem | undefined;
    for (let i = 1; i <= this.deps.config.validationAttempts; i++) {
      if (this.abandoned) return;
      // alive: no other worker takes this validation over while it runs
      await store.touchChallenge(c.id, clock.now());
      try {
        await this.attempt(c, authz, keyAuthorization);
        problem = undefined;
        break;
      } catch (e) {
        problem = e instanceof AcmeProblem ? e : new AcmeProblem('serverInternal', 'validation failed');
        if (i < this.deps.config.validationAttempts) await new Promise((r) => setTimeout(r, RETRY_DELAY_MS));
      }
    }
    // past the grace of a stop: the result is not written; the challenge stays processing and is validated again
    if (this.abandoned) return;
    const now = clock.now();
    const details = { account: c.accountId, challenge: c.id, type: c.type, identifier: authz.identifier };
    if (!problem) {
      if (!(await store.setChallengeStatus(c.id, ['processing'], 'valid', now))) return;
      await store.validateAuthz(authz.id, now);
      // an order is ready as soon as its last authorization is valid: a client that sees the
      // authorization valid finalizes at once (finalize also checks, for the moment in between)
      for (const orderId of await store.orderIdsOfAuthz(authz.id)) {
        const siblings = await store.authzsOfOrder(orderId);
        if (siblings.every((a) => a.status === 'valid')) await store.setOrderStatus(orderId, ['pending'], 'ready');
      }
      await audit.tryRecord({ type: 'acmeValidationSucceeded', actor: `acme:${c.accountId}`, subject: authz.identifier.value, details });
      return;
    }
    const doc = problem.document();
    if (!(await store.setChallengeStatus(c.id, ['processing'], 'invalid', now, doc))) return;
    await store.setAuthzStatus(authz.id, ['pending'], 'invalid');
    await audit.tryRecord({ type: 'acmeValidationFailed', actor: `acme:${c.accountId}`, subject: authz.identifier.value, details: { ...details, problem: doc } });
    for (const orderId of await store.orderIdsOfAuthz(authz.id)) {
      await store.setOrderStatus(orderId, ['pending'], 'invalid', {
        error: {
          type: 'urn:ietf:params:acme:error:unauthorized',
          detail: `validation of ${authz.identifier.value} failed`,
          status: 403,
          subproblems: [{ type: doc.type, detail: doc.detail, identifier: authz.identifier }],
        },
      });
    }
  }
}
