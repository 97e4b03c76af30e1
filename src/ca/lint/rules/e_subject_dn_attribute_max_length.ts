import type { CertificateLint } from '../lint';
import { ATTRIBUTES, attributesOf } from './subject-attributes';

export const e_subject_dn_attribute_max_length: CertificateLint = {
  name: 'e_subject_dn_attribute_max_length',
  source: 'RFC5280',
  citation: 'Appendix A.1 (ub-* upper bounds)',
  description: 'each subject attribute is within its upper bound (commonName 64, organizationName 64, countryName 2, ...)',
  appliesTo: 'certificate',
  check: (c) => {
    const bad: string[] = [];
    for (const a of attributesOf(c.tbs.subject)) {
      const spec = ATTRIBUTES[a.type];
      if (spec && [...a.text].length > spec.max) bad.push(`${spec.name} of ${[...a.text].length} characters (at most ${spec.max})`);
      if (spec?.name === 'countryName' && a.text.length !== 2) bad.push(`countryName "${a.text}" is not two letters`);
    }
    return bad;
  },
};
