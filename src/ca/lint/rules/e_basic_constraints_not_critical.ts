import type { CertificateLint } from '../lint';
import { OIDS } from '../parsed-certificate';

/** RFC 5280 4.2.1.9 makes it critical in CA certificates; hsmca's contract (section 4) writes it critical in every certificate. */
export const e_basic_constraints_not_critical: CertificateLint = {
  name: 'e_basic_constraints_not_critical',
  source: 'RFC5280',
  citation: '4.2.1.9',
  description: 'basicConstraints is present and critical',
  appliesTo: 'certificate',
  check: (c) => {
    const e = c.extension(OIDS.basicConstraints);
    if (!e) return 'no basicConstraints';
    if (!e.critical) return 'basicConstraints is not critical';
  },
};
