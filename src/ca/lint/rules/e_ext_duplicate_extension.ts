import type { CertificateLint } from '../lint';

export const e_ext_duplicate_extension: CertificateLint = {
  name: 'e_ext_duplicate_extension',
  source: 'RFC5280',
  citation: '4.2',
  description: 'no extension appears twice',
  appliesTo: 'certificate',
  check: (c) => {
    const seen = new Set<string>();
    const dup = new Set<string>();
    for (const e of c.extensions) (seen.has(e.extnID) ? dup : seen).add(e.extnID);
    if (dup.size) return `repeated extensions ${[...dup].join(', ')}`;
  },
};
