import type { CrlLint } from '../lint';
import { timeFormatProblem } from './e_wrong_time_format_pre2050';

/** RFC 5280 5.1.2.4, 5.1.2.5, 5.1.2.6: UTCTime through 2049, GeneralizedTime from 2050, for thisUpdate, nextUpdate and each revocationDate. */
export const e_crl_wrong_time_format_pre2050: CrlLint = {
  name: 'e_crl_wrong_time_format_pre2050',
  source: 'RFC5280',
  citation: '5.1.2.4',
  description: 'thisUpdate, nextUpdate and revocation dates through 2049 are UTCTime, later ones GeneralizedTime',
  appliesTo: 'crl',
  check: (c) => {
    const out = [timeFormatProblem('thisUpdate', c.tbs.thisUpdate), c.tbs.nextUpdate && timeFormatProblem('nextUpdate', c.tbs.nextUpdate)].filter((x): x is string => !!x);
    for (const e of c.entries()) {
      // GeneralizedTime YYYY...; UTCTime YY... always means 1950-2049
      if (e.timeTag === 0x18 && Number(e.timeText.slice(0, 4)) < 2050) out.push(`entry ${e.index}: revocationDate ${e.timeText} is a GeneralizedTime before 2050`);
      if (out.length > 5) break;
    }
    return out;
  },
};
