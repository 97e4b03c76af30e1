import type { CertificateLint } from '../lint';

export const e_validity_not_after_before_not_before: CertificateLint = {
  name: 'e_validity_not_after_before_not_before',
  source: 'RFC5280',
  citation: '4.1.2.5',
  description: 'notAfter is after notBefore',
  appliesTo: 'certificate',
  check: (c) => (c.tbs.validity.notAfter.getTime().getTime() <= c.tbs.validity.notBefore.getTime().getTime() ? 'notAfter is not after notBefore' : undefined),
};
