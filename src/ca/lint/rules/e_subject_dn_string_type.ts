import type { CertificateLint } from '../lint';
import { ATTRIBUTES, attributesOf } from './subject-attributes';

/** RFC 5280 4.1.2.6: DirectoryString values are PrintableString or UTF8String; countryName is PrintableString, emailAddress and DC IA5String. */
export const e_subject_dn_string_type: CertificateLint = {
  name: 'e_subject_dn_string_type',
  source: 'RFC5280',
  citation: '4.1.2.6',
  description: 'subject attributes use the string types the profile allows (UTF8String or PrintableString; PrintableString for countryName; IA5String for emailAddress and domainComponent)',
  appliesTo: 'certificate',
  check: (c) => {
    const bad: string[] = [];
    for (const a of attributesOf(c.tbs.subject)) {
      const spec = ATTRIBUTES[a.type];
      const allowed = spec?.types ?? ['utf8String', 'printableString'];
      if (!a.stringType || !allowed.includes(a.stringType)) bad.push(`${spec?.name ?? a.type} is ${a.stringType ?? 'not a string'} (allowed: ${allowed.join(', ')})`);
    }
    return bad;
  },
};
