import type { CertificateLint } from '../lint';

export const e_cert_extensions_version_not_3: CertificateLint = {
  name: 'e_cert_extensions_version_not_3',
  source: 'RFC5280',
  citation: '4.1.2.1',
  description: 'a certificate with extensions is version 3',
  appliesTo: 'certificate',
  check: (c) => (c.extensions.length > 0 && c.tbs.version !== 2 ? `version is v${c.tbs.version + 1}` : undefined),
};
