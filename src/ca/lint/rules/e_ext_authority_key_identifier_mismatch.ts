import type { CertificateLint } from '../lint';

export const e_ext_authority_key_identifier_mismatch: CertificateLint = {
  name: 'e_ext_authority_key_identifier_mismatch',
  source: 'RFC5280',
  citation: '4.2.1.1',
  description: "the authorityKeyIdentifier is the signing CA's subjectKeyIdentifier",
  appliesTo: 'certificate',
  check: (c, ctx) => {
    const kid = c.authorityKeyIdentifier?.keyIdentifier;
    if (!ctx.issuerKeyId || !kid) return;
    const got = Buffer.from(kid.buffer);
    if (!got.equals(ctx.issuerKeyId)) return `authorityKeyIdentifier ${got.toString('hex')} is not the issuer's ${ctx.issuerKeyId.toString('hex')}`;
  },
};
