import type { CertificateLint } from '../lint';

export const e_underscore_not_permissible_in_dnsname: CertificateLint = {
  name: 'e_underscore_not_permissible_in_dnsname',
  source: 'CABF_BR',
  citation: '7.1.2.7.12',
  description: 'no underscore in a DNS name',
  appliesTo: 'certificate',
  check: (c) => {
    const bad = c.dnsNames.filter((n) => n.includes('_'));
    if (bad.length) return `underscore in ${bad.map((n) => `"${n}"`).join(', ')}`;
  },
};
