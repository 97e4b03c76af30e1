import type { CrlLint } from '../lint';

/**
 * RFC 5280 5.3.1: CRLReason values are 0-6 and 8-10 (7 is unused);
 * removeFromCRL (8) appears only in delta CRLs (5.2.4).
 */
export const e_crl_invalid_reason_code: CrlLint = {
  name: 'e_crl_invalid_reason_code',
  source: 'RFC5280',
  citation: '5.3.1',
  description: 'each entry reasonCode is a defined CRLReason; removeFromCRL only in a delta CRL',
  appliesTo: 'crl',
  check: (c) => {
    const out: string[] = [];
    const delta = c.isDelta;
    for (const e of c.entries()) {
      const r = e.reason;
      if (r === undefined) continue;
      if (r > 10 || r === 7) out.push(`entry ${e.index}: reasonCode ${r} is not a CRLReason`);
      else if (r === 8 && !delta) out.push(`entry ${e.index}: removeFromCRL in a complete CRL`);
      if (out.length > 5) break;
    }
    return out;
  },
};
