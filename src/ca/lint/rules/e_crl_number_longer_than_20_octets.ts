import type { CrlLint } from '../lint';

export const e_crl_number_longer_than_20_octets: CrlLint = {
  name: 'e_crl_number_longer_than_20_octets',
  source: 'RFC5280',
  citation: '5.2.3',
  description: 'the cRLNumber is a non-negative integer of at most 20 octets',
  appliesTo: 'crl',
  check: (c) => {
    const n = c.crlNumberOctets;
    if (!n) return;
    if (n.length > 20) return `cRLNumber is ${n.length} octets`;
    if (n[0] & 0x80) return 'cRLNumber is negative';
  },
};
