import type { CertificateLint } from '../lint';

export const e_ca_basic_constraints_ca_false: CertificateLint = {
  name: 'e_ca_basic_constraints_ca_false',
  source: 'RFC5280',
  citation: '4.2.1.9',
  description: 'a CA certificate says cA TRUE',
  appliesTo: 'certificate',
  kinds: ['ca'],
  check: (c) => (c.basicConstraints?.cA ? undefined : 'basicConstraints cA is not TRUE'),
};
