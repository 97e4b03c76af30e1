import { anyExtendedKeyUsage } from '@peculiar/asn1-x509';
import type { CertificateLint } from '../lint';
import { SUBSCRIBER_KINDS } from '../lint';

export const e_sub_cert_eku_any_present: CertificateLint = {
  name: 'e_sub_cert_eku_any_present',
  source: 'CABF_BR',
  citation: '7.1.2.7.10',
  description: 'no anyExtendedKeyUsage in an end-entity certificate',
  appliesTo: 'certificate',
  kinds: SUBSCRIBER_KINDS,
  check: (c) => (c.extKeyUsage?.includes(anyExtendedKeyUsage) ? 'anyExtendedKeyUsage present' : undefined),
};
