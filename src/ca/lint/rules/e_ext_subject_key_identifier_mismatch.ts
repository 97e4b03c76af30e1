import type { CertificateLint } from '../lint';

export const e_ext_subject_key_identifier_mismatch: CertificateLint = {
  name: 'e_ext_subject_key_identifier_mismatch',
  source: 'RFC5280',
  citation: '4.2.1.2 method (1)',
  description: 'the subjectKeyIdentifier is the SHA-1 of the subjectPublicKey bits',
  appliesTo: 'certificate',
  check: (c) => {
    const ski = c.subjectKeyIdentifier;
    if (!ski) return;
    const got = Buffer.from(ski.buffer);
    const want = c.expectedKeyIdentifier;
    if (!got.equals(want)) return `subjectKeyIdentifier ${got.toString('hex')} is not the key's ${want.toString('hex')}`;
  },
};
