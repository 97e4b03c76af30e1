import { CaError } from '../../errors';
import type { Signer } from '../../hsm/hsm';
import type { Logger } from '../../log';
import type { CertificateLintContext, CrlLintContext, Finding, LintResult } from './lint';
import { lintCertificateTbs, lintCrlTbs } from './run-lints';

/** What is told when a lint refuses a signature: audited as lintFailed (src/service-events.ts). */
export interface LintRefusal {
  target: 'certificate' | 'crl';
  /** the certificate's kind (subscriber, ocsp-responder, ca) */
  kind?: string;
  profile?: string;
  /** the certificate's serial (hex) or the CRL's number */
  serial?: string;
  crlNumber?: string;
  lints: string[];
  findings: Finding[];
}

/**
 * The gate in front of every CA signature: nothing is signed that fails a
 * lint. An error finding refuses with CaError('internal', 'lintFailed') (500,
 * naming the lints, no stack trace), is logged and reported to `onRefused`
 * (audited); warning findings (lints the profile lowered) are logged only.
 */
export class PreIssuanceLint {
  constructor(private readonly o: { log: Logger; onRefused?: (r: LintRefusal) => void | Promise<void> }) {}

  async certificate(tbs: Buffer, ctx: CertificateLintContext): Promise<void> {
    const r = lintCertificateTbs(tbs, ctx);
    await this.settle(r, { target: 'certificate', kind: ctx.kind, profile: ctx.profile, serial: r.serial });
  }

  async crl(tbs: Buffer, ctx: CrlLintContext & { crlNumber?: bigint }): Promise<void> {
    const r = lintCrlTbs(tbs, ctx);
    await this.settle(r, { target: 'crl', crlNumber: ctx.crlNumber?.toString() });
  }

  /** A signer that lints each CRL it is given before the CA key signs it (the CRL encoder signs its TBS itself). */
  crlSigner(signer: Signer, ctx: CrlLintContext & { crlNumber?: bigint }): Signer {
    const linted: Signer = Object.create(signer);
    linted.sign = async (tbs: Buffer) => {
      await this.crl(tbs, ctx);
      return signer.sign(tbs);
    };
    return linted;
  }

  private async settle(r: LintResult, about: Omit<LintRefusal, 'lints' | 'findings'>): Promise<void> {
    const what = about.target === 'crl' ? `CRL ${about.crlNumber ?? ''}`.trim() : `${about.kind} certificate ${about.serial ?? ''}`.trim();
    if (r.warnings.length) this.o.log.warn('pre-issuance lint warnings (lowered by the profile)', { what, profile: about.profile, findings: r.warnings });
    if (r.errors.length === 0) return;
    const lints = [...new Set(r.errors.map((f) => f.lint))];
    this.o.log.error('pre-issuance lint refused a signature', { what, profile: about.profile, findings: r.errors });
    try {
      await this.o.onRefused?.({ ...about, lints, findings: r.errors });
    } catch (e) {
      this.o.log.error('could not record a lint refusal', { error: (e as Error).message });
    }
    throw new CaError('internal', 'lintFailed', `the ${about.target} failed pre-issuance checks: ${lints.join(', ')}`);
  }
}
