import type { CertificateLint } from '../lint';
import { SUBSCRIBER_KINDS } from '../lint';
import { OIDS } from '../parsed-certificate';

export const e_ext_san_missing: CertificateLint = {
  name: 'e_ext_san_missing',
  source: 'CABF_BR',
  citation: '7.1.2.7.12',
  description: 'a TLS server certificate (serverAuth) carries a subjectAltName',
  appliesTo: 'certificate',
  kinds: SUBSCRIBER_KINDS,
  check: (c) => (c.isTlsServer && !c.extension(OIDS.subjectAltName) ? 'no subjectAltName extension' : undefined),
};
