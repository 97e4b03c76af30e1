/**
 * A tls-server TBSCertificate as issuance writes it (P-256 key, two DNS SANs)
 * and the lint context it passes with: what the lint figures of
 * lint-cost.ts and parts-child.ts measure.
 */
import * as crypto from 'node:crypto';
import * as der from '../src/asn1/der';
import { OID } from '../src/asn1/oids';
import { ext, keyIdentifier, randomSerial, spkiKeyBits, tbsCertificate } from '../src/ca/certificate';
import type { CertificateLintContext } from '../src/ca/lint/lint';
import { ProfileRegistry, extension } from '../src/ca/profiles';

export function sampleTlsServerTbs(): { tbs: Buffer; ctx: CertificateLintContext; spki: Buffer; name: Buffer; issuerKeyId: Buffer } {
  const spki = crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({ format: 'der', type: 'spki' });
  const issuerKeyId = crypto.randomBytes(20);
  const profile = new ProfileRegistry().get('tls-server')!;
  const name = der.seq(der.set(der.seq(der.oid(OID.commonName), der.utf8('www.example.test'))));
  const now = Date.now();
  const tbs = tbsCertificate({
    serial: randomSerial(),
    signatureAlgorithm: der.seq(der.oid('1.2.840.10045.4.3.2')),
    issuer: name,
    notBefore: new Date(now),
    notAfter: new Date(now + 90 * 86_400_000 - 1000),
    subject: name,
    spki,
    extensions: [
      ext.basicConstraintsEndEntity,
      ext.authorityKeyIdentifier(issuerKeyId),
      ext.authorityInfoAccess('http://ca.example.test/ocsp', 'http://ca.example.test/ca/issuer.crt'),
      ext.crlDistributionPoints('http://ca.example.test/crl'),
      profile.keyUsageExtension.ec,
      profile.extKeyUsageExtension,
      ext.subjectKeyIdentifier(keyIdentifier(spkiKeyBits(spki))),
      extension(OID.subjectAltName, false, der.seq(der.ctx(2, Buffer.from('www.example.test'), false), der.ctx(2, Buffer.from('api.example.test'), false))),
    ],
  });
  return { tbs, ctx: { kind: 'subscriber', profile: 'tls-server', maxValidityDays: 397, issuerKeyId }, spki, name, issuerKeyId };
}
