import type { CrlLint } from '../lint';

export const e_crl_missing_authority_key_identifier: CrlLint = {
  name: 'e_crl_missing_authority_key_identifier',
  source: 'RFC5280',
  citation: '5.2.1',
  description: "a CRL carries an authorityKeyIdentifier whose keyIdentifier is the signing CA's subjectKeyIdentifier",
  appliesTo: 'crl',
  check: (c, ctx) => {
    const kid = c.authorityKeyIdentifier?.keyIdentifier;
    if (!kid) return 'no authorityKeyIdentifier keyIdentifier';
    const got = Buffer.from(kid.buffer);
    if (!got.equals(ctx.issuerKeyId)) return `authorityKeyIdentifier ${got.toString('hex')} is not the issuer's ${ctx.issuerKeyId.toString('hex')}`;
  },
};
