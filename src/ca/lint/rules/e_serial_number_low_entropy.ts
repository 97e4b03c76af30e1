import type { CertificateLint } from '../lint';

/**
 * At least 64 bits from a CSPRNG (BR 7.1). The TBS cannot show where the bits
 * came from; what it can show is that the number is long enough to hold them:
 * a value below 2^64 cannot carry 64 random bits plus hsmca's fixed high bits
 * (hsmca draws 126 random bits, 16 octets).
 */
export const e_serial_number_low_entropy: CertificateLint = {
  name: 'e_serial_number_low_entropy',
  source: 'CABF_BR',
  citation: '7.1',
  description: 'the serial number is long enough to carry 64 bits from a CSPRNG',
  appliesTo: 'certificate',
  check: (c) => {
    let s = c.serial;
    while (s.length > 1 && s[0] === 0) s = s.subarray(1);
    if (s.length <= 8) return `the serial number has ${s.length} significant octets; at least 9 are needed for 64 random bits`;
  },
};
