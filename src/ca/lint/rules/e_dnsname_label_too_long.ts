import type { CertificateLint } from '../lint';

export const e_dnsname_label_too_long: CertificateLint = {
  name: 'e_dnsname_label_too_long',
  source: 'RFC1035',
  citation: '2.3.4',
  description: 'DNS labels are at most 63 octets and names at most 253',
  appliesTo: 'certificate',
  check: (c) => {
    const bad = c.dnsNames.filter((n) => n.length > 253 || n.split('.').some((l) => l.length > 63));
    if (bad.length) return `label or name too long: ${bad.map((n) => `"${n.slice(0, 80)}"`).join(', ')}`;
  },
};
