import type { CertificateLint } from '../lint';
import { SUBSCRIBER_KINDS } from '../lint';

export const e_sub_cert_basic_constraints_ca_true: CertificateLint = {
  name: 'e_sub_cert_basic_constraints_ca_true',
  source: 'CABF_BR',
  citation: '7.1.2.7.8',
  description: 'an end-entity certificate says cA FALSE',
  appliesTo: 'certificate',
  kinds: SUBSCRIBER_KINDS,
  check: (c) => (c.basicConstraints?.cA ? 'basicConstraints cA is TRUE' : undefined),
};
