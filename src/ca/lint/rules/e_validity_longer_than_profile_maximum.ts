import type { CertificateLint } from '../lint';
import { validityDays } from './e_tls_server_cert_valid_time_longer_than_398_days';

export const e_validity_longer_than_profile_maximum: CertificateLint = {
  name: 'e_validity_longer_than_profile_maximum',
  source: 'hsmca',
  citation: 'profiles (docs/configuration.md)',
  description: "the validity is within the profile's maxValidityDays",
  appliesTo: 'certificate',
  kinds: ['subscriber'],
  check: (c, ctx) => {
    if (ctx.maxValidityDays === undefined) return;
    const days = validityDays(c.tbs.validity.notBefore.getTime(), c.tbs.validity.notAfter.getTime());
    if (days > ctx.maxValidityDays) return `valid for ${days.toFixed(2)} days; profile ${ctx.profile} allows ${ctx.maxValidityDays}`;
  },
};
