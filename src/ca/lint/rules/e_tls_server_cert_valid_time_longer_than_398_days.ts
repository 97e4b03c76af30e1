import type { CertificateLint } from '../lint';
import { SUBSCRIBER_KINDS } from '../lint';

const DAY_MS = 86_400_000;

/** The validity period includes both ends (RFC 5280 4.1.2.5), hence the second added. */
export function validityDays(notBefore: Date, notAfter: Date): number {
  return (notAfter.getTime() - notBefore.getTime() + 1000) / DAY_MS;
}

export const e_tls_server_cert_valid_time_longer_than_398_days: CertificateLint = {
  name: 'e_tls_server_cert_valid_time_longer_than_398_days',
  source: 'CABF_BR',
  citation: '6.3.2',
  description: 'a TLS server certificate (serverAuth) is valid for at most 398 days',
  appliesTo: 'certificate',
  kinds: SUBSCRIBER_KINDS,
  check: (c) => {
    if (!c.isTlsServer) return;
    const days = validityDays(c.tbs.validity.notBefore.getTime(), c.tbs.validity.notAfter.getTime());
    if (days > 398) return `valid for ${days.toFixed(2)} days`;
  },
};
