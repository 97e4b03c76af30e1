import type { CrlLint } from '../lint';
import { CRL_OIDS } from '../parsed-crl';

export const e_crl_number_missing: CrlLint = {
  name: 'e_crl_number_missing',
  source: 'RFC5280',
  citation: '5.2.3',
  description: 'a CRL carries a non-critical cRLNumber',
  appliesTo: 'crl',
  check: (c) => {
    const e = c.extension(CRL_OIDS.cRLNumber);
    if (!e) return 'no cRLNumber';
    if (e.critical) return 'cRLNumber is critical';
  },
};
