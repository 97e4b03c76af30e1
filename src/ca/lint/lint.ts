/**
 * Pre-issuance lint: the framework. Before any CA key signs, the to-be-signed
 * structure is parsed back with an independent parser (the @peculiar/asn1-*
 * schemas, never our own DER writer or reader) and run through small rules,
 * one per file in rules/, named after the zlint rule they mirror (RFC 5280,
 * CA/Browser Forum Baseline Requirements). An error-level finding refuses the
 * signature; a profile may lower named lints to warnings (lintWarnings).
 */
import type { ParsedCertificate } from './parsed-certificate';
import type { ParsedCrl } from './parsed-crl';

export type LintSource = 'RFC5280' | 'CABF_BR' | 'RFC8813' | 'RFC1035' | 'RFC5890' | 'hsmca';

/** What is being signed: an end-entity certificate, the OCSP responder's certificate, a CA certificate. */
export type CertificateKind = 'subscriber' | 'ocsp-responder' | 'ca';

export interface CertificateLintContext {
  kind: CertificateKind;
  /** the issuing profile (subscriber certificates) */
  profile?: string;
  /** the profile's longest validity in days (subscriber certificates) */
  maxValidityDays?: number;
  /** the signing CA's subject key identifier, which the authorityKeyIdentifier must carry; absent for a self-signed root */
  issuerKeyId?: Buffer;
  /** lints lowered to warnings (the profile's lintWarnings) */
  warnings?: ReadonlySet<string>;
}

export interface CrlLintContext {
  /** the newest CRL number already published; the new one must be greater */
  previousNumber?: bigint;
  /** the signing CA's subject key identifier */
  issuerKeyId: Buffer;
  warnings?: ReadonlySet<string>;
}

interface LintBase {
  /** zlint-style: e_ prefix, what it checks */
  name: string;
  source: LintSource;
  /** the section the rule comes from, e.g. "4.1.2.2" */
  citation: string;
  description: string;
}

/** A check returns nothing when it passes, or what is wrong (one line each). */
export type Verdict = string | string[] | undefined | void;

export interface CertificateLint extends LintBase {
  appliesTo: 'certificate';
  /** the kinds of certificate it applies to; all when absent */
  kinds?: readonly CertificateKind[];
  check(c: ParsedCertificate, ctx: CertificateLintContext): Verdict;
}

export interface CrlLint extends LintBase {
  appliesTo: 'crl';
  check(c: ParsedCrl, ctx: CrlLintContext): Verdict;
}

export type Lint = CertificateLint | CrlLint;

export interface Finding {
  lint: string;
  level: 'error' | 'warning';
  detail: string;
}

export interface LintResult {
  errors: Finding[];
  warnings: Finding[];
}

export const SUBSCRIBER_KINDS: readonly CertificateKind[] = ['subscriber', 'ocsp-responder'];
