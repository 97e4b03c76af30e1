import { CERTIFICATE_LINTS, CRL_LINTS } from './index';
import type { CertificateLintContext, CrlLintContext, Finding, Lint, LintResult, Verdict } from './lint';
import { ParsedCertificate } from './parsed-certificate';
import { ParsedCrl } from './parsed-crl';

/**
 * Runs the lints over a to-be-signed structure parsed once. A structure the
 * independent parser cannot read is itself an error finding ("e_tbs_unparseable");
 * a rule that throws (an extension it cannot decode) is an error of that rule.
 */
export function lintCertificateTbs(tbs: Buffer, ctx: CertificateLintContext): LintResult & { serial?: string } {
  let parsed: ParsedCertificate;
  try {
    parsed = new ParsedCertificate(tbs);
  } catch (e) {
    return unparseable('TBSCertificate', e);
  }
  const out: LintResult & { serial?: string } = { errors: [], warnings: [], serial: serialHex(parsed.serial) };
  for (const lint of CERTIFICATE_LINTS) {
    if (lint.kinds && !lint.kinds.includes(ctx.kind)) continue;
    record(out, lint, ctx.warnings, () => lint.check(parsed, ctx));
  }
  return out;
}

export function lintCrlTbs(tbs: Buffer, ctx: CrlLintContext): LintResult {
  let parsed: ParsedCrl;
  try {
    parsed = new ParsedCrl(tbs);
  } catch (e) {
    return unparseable('TBSCertList', e);
  }
  const out: LintResult = { errors: [], warnings: [] };
  for (const lint of CRL_LINTS) record(out, lint, ctx.warnings, () => lint.check(parsed, ctx));
  return out;
}

function serialHex(s: Buffer): string {
  return s.toString('hex').replace(/^(00)+(?=.)/, '');
}

export const UNPARSEABLE = 'e_tbs_unparseable';

function unparseable(what: string, e: unknown): LintResult {
  return { errors: [{ lint: UNPARSEABLE, level: 'error', detail: `the ${what} does not parse: ${(e as Error).message}` }], warnings: [] };
}

function record(out: LintResult, lint: Lint, warnings: ReadonlySet<string> | undefined, run: () => Verdict): void {
  let v: Verdict;
  try {
    v = run();
  } catch (e) {
    v = `could not be checked: ${(e as Error).message}`;
  }
  if (!v || (Array.isArray(v) && v.length === 0)) return;
  const level = warnings?.has(lint.name) ? 'warning' : 'error';
  for (const detail of Array.isArray(v) ? v : [v]) (level === 'error' ? out.errors : out.warnings).push({ lint: lint.name, level, detail } satisfies Finding);
}
