import type { CertificateLint } from '../lint';

export const e_ext_san_ip_address_wrong_length: CertificateLint = {
  name: 'e_ext_san_ip_address_wrong_length',
  source: 'RFC5280',
  citation: '4.2.1.6',
  description: 'an iPAddress name is 4 octets (IPv4) or 16 (IPv6)',
  appliesTo: 'certificate',
  check: (c) => {
    const bad = (c.subjectAltNames ?? []).filter((g) => g.iPAddress && g.iPAddress.byteLength !== 4 && g.iPAddress.byteLength !== 16);
    if (bad.length) return `iPAddress of ${bad.map((g) => g.iPAddress!.byteLength).join(', ')} octets`;
  },
};
