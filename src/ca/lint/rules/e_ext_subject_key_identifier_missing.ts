import type { CertificateLint } from '../lint';
import { OIDS } from '../parsed-certificate';

/** MUST in CA certificates, SHOULD in end-entity ones (RFC 5280 4.2.1.2); hsmca's contract writes it in all. */
export const e_ext_subject_key_identifier_missing: CertificateLint = {
  name: 'e_ext_subject_key_identifier_missing',
  source: 'RFC5280',
  citation: '4.2.1.2',
  description: 'subjectKeyIdentifier is present, non-critical',
  appliesTo: 'certificate',
  check: (c) => {
    const e = c.extension(OIDS.subjectKeyIdentifier);
    if (!e) return 'no subjectKeyIdentifier';
    if (e.critical) return 'subjectKeyIdentifier is critical';
  },
};
