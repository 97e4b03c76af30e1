import type { CertificateLint } from '../lint';
import { SUBSCRIBER_KINDS } from '../lint';
import { KeyUsageFlags } from '../parsed-certificate';

export const e_sub_cert_key_usage_cert_sign_bit_set: CertificateLint = {
  name: 'e_sub_cert_key_usage_cert_sign_bit_set',
  source: 'CABF_BR',
  citation: '7.1.2.7.11',
  description: 'an end-entity certificate has neither keyCertSign nor cRLSign',
  appliesTo: 'certificate',
  kinds: SUBSCRIBER_KINDS,
  check: (c) => (c.keyUsageFlags & (KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign) ? `keyUsage ${c.keyUsage!.toJSON().join(', ')}` : undefined),
};
