import type { CertificateLint } from '../lint';
import { SUBSCRIBER_KINDS } from '../lint';
import { KeyUsageFlags } from '../parsed-certificate';

const ALLOWED = KeyUsageFlags.digitalSignature | KeyUsageFlags.nonRepudiation | KeyUsageFlags.keyAgreement;

/** An ECDSA key cannot encipher keys or data: RFC 8813 3 (and RFC 5480 3) allows only these keyUsage bits for id-ecPublicKey. */
export const e_ecdsa_ee_invalid_ku: CertificateLint = {
  name: 'e_ecdsa_ee_invalid_ku',
  source: 'RFC8813',
  citation: '3',
  description: 'an end-entity ECDSA key has only digitalSignature, nonRepudiation or keyAgreement in its keyUsage (no keyEncipherment)',
  appliesTo: 'certificate',
  kinds: SUBSCRIBER_KINDS,
  check: (c) => {
    if (c.keyType !== 'ec' || !c.keyUsage) return;
    const extra = c.keyUsageFlags & ~ALLOWED;
    if (extra) return `keyUsage ${c.keyUsage.toJSON().join(', ')} for an ECDSA key`;
  },
};
