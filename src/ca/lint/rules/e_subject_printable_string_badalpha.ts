import type { CertificateLint } from '../lint';
import { ATTRIBUTES, attributesOf } from './subject-attributes';

/** The PrintableString alphabet (X.680 41.4): letters, digits, space and '()+,-./:=? */
const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

export const e_subject_printable_string_badalpha: CertificateLint = {
  name: 'e_subject_printable_string_badalpha',
  source: 'RFC5280',
  citation: '4.1.2.6 (X.680 PrintableString)',
  description: 'a PrintableString subject attribute holds only PrintableString characters',
  appliesTo: 'certificate',
  check: (c) => {
    const bad: string[] = [];
    for (const a of attributesOf(c.tbs.subject)) {
      if (a.stringType === 'printableString' && !PRINTABLE.test(a.text)) bad.push(`${ATTRIBUTES[a.type]?.name ?? a.type} "${a.text.slice(0, 64)}"`);
    }
    if (bad.length) return `characters outside PrintableString in ${bad.join(', ')}`;
  },
};
