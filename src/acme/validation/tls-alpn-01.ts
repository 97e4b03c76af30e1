import { X509Certificate, SubjectAlternativeNameExtension } from '@peculiar/x509';
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import * as tls from 'node:tls';
import { ipToBytes } from '../../ca/csr';
import { AcmeProblem } from '../problem';
import { AddressGuard } from './address-guard';

/** RFC 8737 3: id-pe-acmeIdentifier */
const ACME_IDENTIFIER_OID = '1.3.6.1.5.5.7.1.31';

/** RFC 8738 6: an IP identifier's SNI is its reverse-mapping name. */
export function reverseName(ip: string): string {
  const b = ipToBytes(ip)!;
  if (b.length === 4) return `${[...b].reverse().join('.')}.in-addr.arpa`;
  return `${[...b.toString('hex')].reverse().join('.')}.ip6.arpa`;
}

/**
 * tls-alpn-01 (RFC 8737): a TLS handshake on the validation port offering
 * only ALPN "acme-tls/1", with the name as SNI, must present a certificate
 * whose only subjectAltName is the identifier and whose critical
 * acmeIdentifier extension holds the SHA-256 of the key authorization.
 */
export async function validateTlsAlpn01(guard: AddressGuard, name: string, keyAuthorization: string, s: { port: number; timeoutMs: number }): Promise<void> {
  const address = await guard.resolve(name);
  const ipIdentifier = isIP(name) !== 0;
  const der = await new Promise<Buffer>((resolve, reject) => {
    const socket = tls.connect({ host: address, port: s.port, servername: ipIdentifier ? reverseName(name) : name, ALPNProtocols: ['acme-tls/1'], rejectUnauthorized: false });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new AcmeProblem('connection', `${name}:${s.port} did not complete a TLS handshake within ${s.timeoutMs / 1000} seconds`));
    }, s.timeoutMs);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      const proto = socket.alpnProtocol;
      const cert = socket.getPeerCertificate();
      socket.end();
      if (proto !== 'acme-tls/1') return reject(new AcmeProblem('tls', `${name} did not negotiate the acme-tls/1 protocol`));
      if (!cert?.raw) return reject(new AcmeProblem('tls', `${name} presented no certificate`));
      resolve(cert.raw);
    });
    socket.once('error', (e) => {
      clearTimeout(timer);
      reject(new AcmeProblem('tls', `TLS connection to ${name}:${s.port} failed: ${(e as NodeJS.ErrnoException).code ?? e.message}`));
    });
  });
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(der);
  } catch {
    throw new AcmeProblem('tls', `${name} presented a certificate that cannot be read`);
  }
  const san = cert.getExtension(SubjectAlternativeNameExtension);
  const names = san?.names.items ?? [];
  const ok = names.length === 1 && (ipIdentifier ? names[0].type === 'ip' && ipToBytes(names[0].value)?.equals(ipToBytes(name)!) : names[0].type === 'dns' && names[0].value.toLowerCase() === name);
  if (!ok) throw new AcmeProblem('incorrectResponse', `the certificate ${name} presented must name exactly ${name} in its subjectAltName`);
  const ext = cert.extensions.find((e) => e.type === ACME_IDENTIFIER_OID);
  if (!ext || !ext.critical) throw new AcmeProblem('incorrectResponse', `the certificate ${name} presented has no critical acmeIdentifier extension`);
  const expected = Buffer.concat([Buffer.from([0x04, 0x20]), createHash('sha256').update(keyAuthorization).digest()]);
  if (!Buffer.from(ext.value).equals(expected)) throw new AcmeProblem('incorrectResponse', `the acmeIdentifier of the certificate ${name} presented is not this challenge's`);
}
