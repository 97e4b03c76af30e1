import type { CertificateLint } from '../lint';

export const e_serial_number_longer_than_20_octets: CertificateLint = {
  name: 'e_serial_number_longer_than_20_octets',
  source: 'RFC5280',
  citation: '4.1.2.2',
  description: 'the serial number is at most 20 octets',
  appliesTo: 'certificate',
  check: (c) => (c.serial.length > 20 ? `the serial number is ${c.serial.length} octets` : undefined),
};
