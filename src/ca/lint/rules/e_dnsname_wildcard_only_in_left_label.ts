import type { CertificateLint } from '../lint';

export const e_dnsname_wildcard_only_in_left_label: CertificateLint = {
  name: 'e_dnsname_wildcard_only_in_left_label',
  source: 'CABF_BR',
  citation: '1.6.1 (Wildcard Domain Name)',
  description: 'a wildcard appears only in the leftmost label',
  appliesTo: 'certificate',
  check: (c) => {
    const bad = c.dnsNames.filter((n) => n.split('.').some((l, i) => i > 0 && l.includes('*')));
    if (bad.length) return `wildcard past the leftmost label in ${bad.map((n) => `"${n}"`).join(', ')}`;
  },
};
