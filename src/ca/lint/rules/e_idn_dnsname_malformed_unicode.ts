import { domainToASCII, domainToUnicode } from 'node:url';
import type { CertificateLint } from '../lint';

/**
 * An A-label (xn--) must be valid Punycode of a valid U-label (RFC 5890 2.3.2.1):
 * decoding it and encoding the result again gives the same label back.
 */
export function validALabel(label: string): boolean {
  const l = label.toLowerCase();
  const unicode = domainToUnicode(l);
  if (!unicode || unicode === l) return false;
  return domainToASCII(unicode) === l;
}

export const e_idn_dnsname_malformed_unicode: CertificateLint = {
  name: 'e_idn_dnsname_malformed_unicode',
  source: 'RFC5890',
  citation: '2.3.2.1',
  description: 'every xn-- label is a valid A-label (Punycode round trip)',
  appliesTo: 'certificate',
  check: (c) => {
    const bad = c.dnsNames.filter((n) => n.split('.').some((l) => /^xn--/i.test(l) && !validALabel(l)));
    if (bad.length) return `invalid A-label in ${bad.map((n) => `"${n}"`).join(', ')}`;
  },
};
