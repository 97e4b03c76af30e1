import type { CertificateLint } from '../lint';

/** Letters, digits and hyphens, no hyphen at either end (RFC 1034 3.5 preferred syntax, as RFC 5280 4.2.1.6 requires). */
const LDH = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/i;

export const e_dnsname_bad_character_in_label: CertificateLint = {
  name: 'e_dnsname_bad_character_in_label',
  source: 'RFC5280',
  citation: '4.2.1.6',
  description: 'DNS name labels are letters, digits and inner hyphens (the wildcard and underscores have their own rules)',
  appliesTo: 'certificate',
  check: (c) => {
    const bad: string[] = [];
    for (const name of c.dnsNames) {
      const labels = name.split('.');
      labels.forEach((l, i) => {
        if (l === '' || (i === 0 && l === '*')) return; // e_dnsname_empty_label, the wildcard rules
        if (!LDH.test(l.replace(/_/g, 'a').replace(/\*/g, 'a'))) bad.push(`"${name}"`);
      });
    }
    if (bad.length) return `not LDH: ${bad.join(', ')}`;
  },
};
