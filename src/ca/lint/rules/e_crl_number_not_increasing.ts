import type { CrlLint } from '../lint';
import { integerValue } from '../parsed-crl';

export const e_crl_number_not_increasing: CrlLint = {
  name: 'e_crl_number_not_increasing',
  source: 'RFC5280',
  citation: '5.2.3',
  description: 'each CRL number is greater than every one the CA published before (monotonically increasing)',
  appliesTo: 'crl',
  check: (c, ctx) => {
    const n = c.crlNumberOctets;
    if (!n || ctx.previousNumber === undefined) return;
    const v = integerValue(n);
    if (v <= ctx.previousNumber) return `cRLNumber ${v} is not greater than ${ctx.previousNumber}, already published`;
  },
};
