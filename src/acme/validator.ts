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

  constructor(private readonly deps: { store: AcmeStore; clock: Clock; log: Logger; audit: AuditLog; config: AcmeConfig }) {
    this.guard = new AddressGuard(deps.config);
  }

  start(c: ChallengeRecord, authz: AuthzRecord, keyAuthorization: string): void {
    const p = this.run(c, authz, keyAuthorization).catch((e) => this.deps.log.error('ACME validation failed unexpectedly', { challenge: c.id, error: (e as Error).message }));
    this.running.add(p);
    void p.finally(() => this.running.delete(p));
  }

  /** waits for validations in flight (a stopping service) */
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
      try {
        await this.attempt(c, authz, keyAuthorization);
        problem = undefined;
        break;
      } catch (e) {
        problem = e instanceof AcmeProblem ? e : new AcmeProblem('serverInternal', 'validation failed');
        if (i < this.deps.config.validationAttempts) await new Promise((r) => setTimeout(r, RETRY_DELAY_MS));
      }
    }
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
