import type { CertificateLint } from '../lint';
import { KeyUsageFlags } from '../parsed-certificate';

export const e_ca_key_cert_sign_not_set: CertificateLint = {
  name: 'e_ca_key_cert_sign_not_set',
  source: 'RFC5280',
  citation: '4.2.1.3',
  description: 'a CA certificate has a critical keyUsage with keyCertSign and cRLSign',
  appliesTo: 'certificate',
  kinds: ['ca'],
  check: (c) => {
    const need = KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign;
    if (!c.keyUsage) return 'no keyUsage';
    if ((c.keyUsageFlags & need) !== need) return `keyUsage ${c.keyUsage.toJSON().join(', ')}`;
  },
};
