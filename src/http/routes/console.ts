import { createHash } from 'node:crypto';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier, Certificate } from '@peculiar/asn1-x509';
import { BasicOCSPResponse, CertID, OCSPRequest, OCSPResponse, OCSPResponseStatus, Request, TBSRequest } from '@peculiar/asn1-ocsp';
import * as x509 from '@peculiar/x509';
import type { CaHierarchy } from '../../ca/hierarchy';
import type { CrlService } from '../../ca/crl-service';
import { CaError } from '../../errors';
import type { Hsm } from '../../hsm/hsm';
import type { OcspSource } from '../../ocsp/responder';
import type { ResponderCertificateManager } from '../../ocsp/responder-certificate';
import type { CertificateStats } from '../../storage/certificate-stats';
import type { CertificateStore } from '../../storage/certificate-store';
import { REASON_NAMES } from '../../ca/revocation';
import { sendJson } from '../errors';
import { visibleCertificate } from './certificates';
import { ADMIN, ANY_ROLE, Route, principalOf } from '../route';

export interface ConsoleRoutesDeps {
  hierarchy: CaHierarchy;
  /** a certificate's own issuing CA when there are several (issue 17); absent: the hierarchy's */
  issuerOf?: (issuerId: number) => CaHierarchy['issuing'] | undefined;
  hsm: Hsm;
  crls: CrlService;
  responders: ResponderCertificateManager;
  ocsp: OcspSource;
  store: CertificateStore;
  stats: CertificateStats;
}

/** The certificate fields a person reads, decoded with @peculiar/x509. */
function describe(der: Buffer) {
  const c = new x509.X509Certificate(der);
  const alg = c.publicKey.algorithm as { name: string; namedCurve?: string; modulusLength?: number };
  const extensions = c.extensions.map((e) => {
    let value: string;
    try {
      value = describeExtension(e);
    } catch {
      value = Buffer.from(e.value).toString('hex');
    }
    return { oid: e.type, name: EXTENSION_NAMES[e.type] ?? e.type, critical: e.critical, value };
  });
  return {
    serialNumber: c.serialNumber.toLowerCase(),
    subject: c.subject,
    issuer: c.issuer,
    notBefore: c.notBefore.toISOString(),
    notAfter: c.notAfter.toISOString(),
    publicKey: { algorithm: alg.name, curve: alg.namedCurve ?? null, bits: alg.modulusLength ?? null },
    signatureAlgorithm: (c.signatureAlgorithm as { name?: string; hash?: { name?: string } }).name + ((c.signatureAlgorithm as { hash?: { name?: string } }).hash?.name ? ` with ${(c.signatureAlgorithm as { hash: { name: string } }).hash.name}` : ''),
    sha256Fingerprint: createHash('sha256').update(der).digest('hex'),
    extensions,
  };
}

const EXTENSION_NAMES: Record<string, string> = {
  '2.5.29.14': 'subjectKeyIdentifier',
  '2.5.29.15': 'keyUsage',
  '2.5.29.17': 'subjectAltName',
  '2.5.29.19': 'basicConstraints',
  '2.5.29.31': 'cRLDistributionPoints',
  '2.5.29.32': 'certificatePolicies',
  '2.5.29.35': 'authorityKeyIdentifier',
  '2.5.29.37': 'extKeyUsage',
  '1.3.6.1.5.5.7.1.1': 'authorityInfoAccess',
  '1.3.6.1.5.5.7.1.24': 'tlsFeature',
  '1.3.6.1.5.5.7.48.1.5': 'ocspNoCheck',
};

const EKU_NAMES: Record<string, string> = {
  '1.3.6.1.5.5.7.3.1': 'serverAuth',
  '1.3.6.1.5.5.7.3.2': 'clientAuth',
  '1.3.6.1.5.5.7.3.3': 'codeSigning',
  '1.3.6.1.5.5.7.3.4': 'emailProtection',
  '1.3.6.1.5.5.7.3.9': 'OCSPSigning',
};

const KEY_USAGES: [number, string][] = [
  [x509.KeyUsageFlags.digitalSignature, 'digitalSignature'],
  [x509.KeyUsageFlags.nonRepudiation, 'nonRepudiation'],
  [x509.KeyUsageFlags.keyEncipherment, 'keyEncipherment'],
  [x509.KeyUsageFlags.dataEncipherment, 'dataEncipherment'],
  [x509.KeyUsageFlags.keyAgreement, 'keyAgreement'],
  [x509.KeyUsageFlags.keyCertSign, 'keyCertSign'],
  [x509.KeyUsageFlags.cRLSign, 'cRLSign'],
];

function describeExtension(e: x509.Extension): string {
  if (e instanceof x509.KeyUsagesExtension) return KEY_USAGES.filter(([f]) => e.usages & f).map(([, n]) => n).join(', ');
  if (e instanceof x509.ExtendedKeyUsageExtension) return e.usages.map((u) => EKU_NAMES[String(u)] ?? String(u)).join(', ');
  if (e instanceof x509.BasicConstraintsExtension) return `CA:${e.ca ? 'TRUE' : 'FALSE'}${e.pathLength !== undefined ? `, pathlen:${e.pathLength}` : ''}`;
  if (e instanceof x509.SubjectAlternativeNameExtension) return e.names.items.map((n) => `${n.type.toUpperCase()}:${n.value}`).join(', ');
  if (e instanceof x509.SubjectKeyIdentifierExtension) return e.keyId;
  if (e instanceof x509.AuthorityKeyIdentifierExtension) return e.keyId ?? '';
  if (e instanceof x509.AuthorityInfoAccessExtension) {
    const urls = (kind: string, list: x509.GeneralName[]) => list.map((n) => `${kind} ${n.value}`);
    return [...urls('OCSP', e.ocsp), ...urls('caIssuers', e.caIssuers)].join(', ');
  }
  if (e instanceof x509.CRLDistributionPointsExtension) {
    return e.distributionPoints.flatMap((p) => p.distributionPoint?.fullName?.map((n) => n.uniformResourceIdentifier ?? '') ?? []).join(', ');
  }
  if (e instanceof x509.CertificatePolicyExtension) return e.policies.join(', ');
  return Buffer.from(e.value).toString('hex');
}

/** A summary of a CA certificate for the overview. */
function caSummary(der: Buffer) {
  const c = new x509.X509Certificate(der);
  return { subject: c.subject, serialNumber: c.serialNumber.toLowerCase(), notBefore: c.notBefore.toISOString(), notAfter: c.notAfter.toISOString() };
}

/**
 * What OCSP answers for a serial: a real RFC 6960 request (SHA-256 CertID of
 * the issuing CA) put to the same responder as POST /ocsp, its answer decoded.
 */
async function ocspStatus(ocsp: OcspSource, issuer: CaHierarchy['issuing'], serial: string) {
  const cert = AsnConvert.parse(issuer.certificate, Certificate);
  const sha256 = (b: ArrayBuffer | Buffer) => new OctetString(createHash('sha256').update(Buffer.from(b as ArrayBuffer)).digest());
  const certId = new CertID({
    hashAlgorithm: new AlgorithmIdentifier({ algorithm: '2.16.840.1.101.3.4.2.1' }),
    issuerNameHash: sha256(AsnConvert.serialize(cert.tbsCertificate.subject)),
    issuerKeyHash: sha256(cert.tbsCertificate.subjectPublicKeyInfo.subjectPublicKey),
    serialNumber: new Uint8Array(Buffer.from(serial.length % 2 ? `0${serial}` : serial, 'hex')).buffer,
  });
  const req = new OCSPRequest({ tbsRequest: new TBSRequest({ requestList: [new Request({ reqCert: certId })] }) });
  const answer = await ocsp.respond(Buffer.from(AsnConvert.serialize(req)));
  const resp = AsnConvert.parse(answer.body, OCSPResponse);
  if (resp.responseStatus !== OCSPResponseStatus.successful || !resp.responseBytes) return { status: answer.outcome, thisUpdate: null, nextUpdate: null, revokedAt: null, reason: null };
  const basic = AsnConvert.parse(resp.responseBytes.response.buffer, BasicOCSPResponse);
  const single = basic.tbsResponseData.responses[0];
  const s = single.certStatus;
  const status = s.revoked ? 'revoked' : s.unknown !== undefined ? 'unknown' : 'good';
  return {
    status,
    thisUpdate: single.thisUpdate.toISOString(),
    nextUpdate: single.nextUpdate ? single.nextUpdate.toISOString() : null,
    revokedAt: s.revoked ? s.revoked.revocationTime.toISOString() : null,
    reason: s.revoked?.revocationReason !== undefined ? (REASON_NAMES[Number(s.revoked.revocationReason)] ?? String(s.revoked.revocationReason)) : null,
  };
}

/** Whole hours of the per-hour statistics: 1 to 31 days, 7 days by default. */
function parseHours(q: unknown): number {
  if (q === undefined || q === '') return 168;
  if (typeof q !== 'string' || !/^\d{1,4}$/.test(q) || Number(q) < 1 || Number(q) > 744) throw new CaError('badRequest', 'invalidHours', 'hours must be a whole number from 1 to 744');
  return Number(q);
}

/**
 * What the admin console reads beyond the contract's routes: the overview
 * (CA chain, HSM tokens, CRL, OCSP signer, counts), issuances and
 * revocations per hour, and a certificate's decoded fields with its OCSP
 * status. All of it is API: the CLI and scripts may call it too.
 */
export function consoleRoutes(d: ConsoleRoutesDeps): Route[] {
  return [
    {
      method: 'GET',
      path: '/api/v1/whoami',
      access: ANY_ROLE,
      handle(ctx) {
        const p = principalOf(ctx);
        sendJson(ctx.res, 200, { id: p.id, name: p.name, role: p.role, scope: p.scope ?? null });
      },
    },
    {
      method: 'GET',
      path: '/api/v1/overview',
      access: ADMIN,
      async handle({ res }) {
        let hsm;
        try {
          hsm = await d.hsm.health();
        } catch {
          hsm = { status: 'down' as const, tokens: [] };
        }
        const crl = d.crls.current('full')?.record;
        const responder = new x509.X509Certificate(d.responders.current().certificate);
        const counts = await d.stats.statusCounts();
        sendJson(res, 200, {
          ca: { issuer: caSummary(d.hierarchy.issuing.certificate), root: caSummary(d.hierarchy.root.certificate) },
          hsm: { kind: d.hsm.kind, ...hsm },
          crl: crl ? { crlNumber: crl.crlNumber.toString(), thisUpdate: crl.thisUpdate.toISOString(), nextUpdate: crl.nextUpdate.toISOString(), entries: crl.entries } : null,
          ocspSigner: { subject: responder.subject, serialNumber: responder.serialNumber.toLowerCase(), notBefore: responder.notBefore.toISOString(), notAfter: responder.notAfter.toISOString() },
          counts: { total: counts.total, good: counts.good, revoked: counts.revoked, countedAt: counts.countedAt.toISOString() },
        });
      },
    },
    {
      method: 'GET',
      path: '/api/v1/stats/hourly',
      access: ANY_ROLE,
      async handle(ctx) {
        const p = principalOf(ctx);
        const hours = parseHours(ctx.query.hours);
        const buckets = await d.stats.perHour(hours, p.role === 'admin' ? undefined : p.id);
        sendJson(ctx.res, 200, { hours: buckets.map((b) => ({ hour: new Date(b.hour).toISOString(), issued: b.issued, revoked: b.revoked })) });
      },
    },
    {
      method: 'GET',
      path: '/api/v1/certificates/:serial/details',
      access: ANY_ROLE,
      async handle(ctx) {
        const rec = await visibleCertificate(d.store, principalOf(ctx), ctx.params.serial);
        sendJson(ctx.res, 200, { ...describe(rec.der), profile: rec.profile, ocsp: await ocspStatus(d.ocsp, d.issuerOf?.(rec.issuerId) ?? d.hierarchy.issuing, rec.serial) });
      },
    },
  ];
}
