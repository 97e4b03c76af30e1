import type { CertificateLint } from '../lint';

/** Required in every certificate but a self-signed one (the root), which is signed with no issuerKeyId in the context. */
export const e_ext_authority_key_identifier_missing: CertificateLint = {
  name: 'e_ext_authority_key_identifier_missing',
  source: 'RFC5280',
  citation: '4.2.1.1',
  description: 'authorityKeyIdentifier is present, with a keyIdentifier, in every certificate not self-signed',
  appliesTo: 'certificate',
  check: (c, ctx) => {
    if (!ctx.issuerKeyId) return;
    const aki = c.authorityKeyIdentifier;
    if (!aki) return 'no authorityKeyIdentifier';
    if (!aki.keyIdentifier) return 'authorityKeyIdentifier without keyIdentifier';
  },
};
