import type { CrlLint } from '../lint';

/** RFC 5280 5.1.2.5: conforming CAs MUST include nextUpdate, and it is later than thisUpdate. */
export const e_crl_next_update_not_after_this_update: CrlLint = {
  name: 'e_crl_next_update_not_after_this_update',
  source: 'RFC5280',
  citation: '5.1.2.5',
  description: 'nextUpdate is present and after thisUpdate',
  appliesTo: 'crl',
  check: (c) => {
    if (!c.tbs.nextUpdate) return 'no nextUpdate';
    const t = c.tbs.thisUpdate.getTime().getTime();
    const n = c.tbs.nextUpdate.getTime().getTime();
    if (n <= t) return `nextUpdate ${new Date(n).toISOString()} is not after thisUpdate ${new Date(t).toISOString()}`;
  },
};
