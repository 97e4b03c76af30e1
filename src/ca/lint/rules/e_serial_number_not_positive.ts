import type { CertificateLint } from '../lint';

export const e_serial_number_not_positive: CertificateLint = {
  name: 'e_serial_number_not_positive',
  source: 'RFC5280',
  citation: '4.1.2.2',
  description: 'the serial number is a positive integer',
  appliesTo: 'certificate',
  check: (c) => {
    const s = c.serial;
    if (s.length === 0 || s[0] & 0x80) return 'the serial number is negative';
    if (s.every((x) => x === 0)) return 'the serial number is zero';
  },
};
