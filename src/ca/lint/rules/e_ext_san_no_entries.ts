import type { CertificateLint } from '../lint';

export const e_ext_san_no_entries: CertificateLint = {
  name: 'e_ext_san_no_entries',
  source: 'RFC5280',
  citation: '4.2.1.6',
  description: 'a subjectAltName holds at least one name, none of them empty',
  appliesTo: 'certificate',
  check: (c) => {
    const names = c.subjectAltNames;
    if (!names) return;
    if (names.length === 0) return 'the subjectAltName is an empty SEQUENCE';
    for (const g of names) {
      if (g.dNSName === '' || g.rfc822Name === '' || g.uniformResourceIdentifier === '') return 'the subjectAltName has an empty name';
    }
  },
};
