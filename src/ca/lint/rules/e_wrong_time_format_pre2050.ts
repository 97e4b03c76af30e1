import type { Time } from '@peculiar/asn1-x509';
import type { CertificateLint } from '../lint';

/** RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050. */
export function timeFormatProblem(what: string, t: Time): string | undefined {
  const d = t.getTime();
  const year = d.getUTCFullYear();
  if (t.generalTime && year < 2050) return `${what} (${d.toISOString()}) is a GeneralizedTime before 2050`;
  if (t.utcTime && year >= 2050) return `${what} (${d.toISOString()}) is a UTCTime from 2050`;
}

export const e_wrong_time_format_pre2050: CertificateLint = {
  name: 'e_wrong_time_format_pre2050',
  source: 'RFC5280',
  citation: '4.1.2.5',
  description: 'validity dates through 2049 are UTCTime, later ones GeneralizedTime',
  appliesTo: 'certificate',
  check: (c) =>
    [timeFormatProblem('notBefore', c.tbs.validity.notBefore), timeFormatProblem('notAfter', c.tbs.validity.notAfter)].filter((x): x is string => !!x),
};
