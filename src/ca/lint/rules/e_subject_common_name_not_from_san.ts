import { isIP } from 'node:net';
import type { CertificateLint } from '../lint';
import { SUBSCRIBER_KINDS } from '../lint';

/** An IP address's octets from its text (IPv4 dotted or IPv6), for comparing a CN with iPAddress names. */
function ipOctets(text: string): Buffer | undefined {
  const v = isIP(text);
  if (v === 4) return Buffer.from(text.split('.').map(Number));
  if (v !== 6) return undefined;
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  if (groups.length !== 8 || groups.some((g) => g.includes('.'))) return undefined;
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), 2 * i));
  return out;
}

export const e_subject_common_name_not_from_san: CertificateLint = {
  name: 'e_subject_common_name_not_from_san',
  source: 'CABF_BR',
  citation: '7.1.4.3',
  description: 'in a TLS server certificate, a subject commonName is one of the DNS names or IP addresses of the subjectAltName',
  appliesTo: 'certificate',
  kinds: SUBSCRIBER_KINDS,
  check: (c) => {
    if (!c.isTlsServer) return;
    const sans = c.subjectAltNames ?? [];
    const dns = new Set(sans.flatMap((g) => (g.dNSName ? [g.dNSName.toLowerCase()] : [])));
    const ips = sans.flatMap((g) => (g.iPAddress ? [Buffer.from(g.iPAddress.buffer)] : []));
    const bad = c.commonNames.filter((cn) => {
      if (dns.has(cn.toLowerCase())) return false;
      const ip = ipOctets(cn);
      return !(ip && ips.some((x) => x.equals(ip)));
    });
    if (bad.length) return `commonName ${bad.map((n) => `"${n.slice(0, 64)}"`).join(', ')} is not among the subjectAltNames`;
  },
};
