import type { CertificateLint } from '../lint';

export const e_dnsname_empty_label: CertificateLint = {
  name: 'e_dnsname_empty_label',
  source: 'RFC5280',
  citation: '4.2.1.6',
  description: 'no empty label in a DNS name, so no leading, doubled or trailing dot',
  appliesTo: 'certificate',
  check: (c) => {
    const bad = c.dnsNames.filter((n) => n.split('.').includes(''));
    if (bad.length) return `empty label (a stray or trailing dot) in ${bad.map((n) => `"${n}"`).join(', ')}`;
  },
};
