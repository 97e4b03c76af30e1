import type { CertificateLint } from '../lint';

export const e_dnsname_left_label_wildcard_correct: CertificateLint = {
  name: 'e_dnsname_left_label_wildcard_correct',
  source: 'CABF_BR',
  citation: '1.6.1 (Wildcard Domain Name)',
  description: 'a wildcard in the leftmost label is the whole label "*", followed by at least two labels',
  appliesTo: 'certificate',
  check: (c) => {
    const bad = c.dnsNames.filter((n) => {
      const labels = n.split('.');
      return labels[0].includes('*') && (labels[0] !== '*' || labels.length < 3);
    });
    if (bad.length) return `malformed wildcard in ${bad.map((n) => `"${n}"`).join(', ')}`;
  },
};
