import type { CrlLint } from '../lint';

export const e_crl_entry_serial_number_invalid: CrlLint = {
  name: 'e_crl_entry_serial_number_invalid',
  source: 'RFC5280',
  citation: '5.1.2.6, 4.1.2.2',
  description: 'each revoked serial number is a positive integer of at most 20 octets',
  appliesTo: 'crl',
  check: (c) => {
    const out: string[] = [];
    for (const e of c.entries()) {
      const s = e.serial;
      if (s.length === 0 || s[0] & 0x80 || s.every((x) => x === 0)) out.push(`entry ${e.index}: serial is not positive`);
      else if (s.length > 20 + (s[0] === 0 ? 1 : 0)) out.push(`entry ${e.index}: serial is longer than 20 octets`);
      if (out.length > 5) break;
    }
    return out;
  },
};
