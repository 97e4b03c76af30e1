import { X509Certificate } from '@peculiar/x509';
import { createPublicKey } from 'node:crypto';
import * as der from '../asn1/der';
import type { AuditLog } from '../audit/audit-log';
import { ParsedCsr, csrFromPem, ipToBytes, parseCsrSync } from '../ca/csr';
import type { CaHierarchy, CaLinks } from '../ca/hierarchy';
import type { IssuanceService } from '../ca/issuance';
import { REASON_NAMES, RevocationService } from '../ca/revocation';
import { Clock } from '../clock';
import { CaError } from '../errors';
import type { CertificateStore } from '../storage/certificate-store';
import { AcmeStore, OrderRecord } from '../storage/acme-store';
import type { AcmeAccounts, AcmeReply } from './accounts';
import type { AcmeRequest } from './acme-requests';
import { AcmeUrls, orderJson } from './acme-urls';
import type { AcmeOrders } from './orders';
import { AcmeProblem, problemFromCaError } from './problem';

/** The names a CSR asks for, in the order identifiers' form. */
function csrNames(csr: ParsedCsr): string[] {
  return [...csr.sans.dns.map((d) => `dns:${d.toLowerCase()}`), ...csr.sans.ip.map((i) => `ip:${ipToBytes(i)!.toString('hex')}`)];
}

function identifierKeys(o: OrderRecord): string[] {
  return o.identifiers.map((i) => (i.type === 'dns' ? `dns:${i.value}` : `ip:${ipToBytes(i.value)!.toString('hex')}`));
}

/**
 * Finalization, certificate download and revocation (RFC 8555 7.4, 7.4.2,
 * 7.6). Finalization hands the CSR to the same issuance pipeline as the
 * REST API (IssuanceService, tls-server profile), as the account's
 * principal, once the CSR names exactly the order's identifiers.
 */
export class AcmeCertificates {
  constructor(
    private readonly deps: {
      store: AcmeStore;
      clock: Clock;
      certificates: CertificateStore;
      issuance: IssuanceService;
      revocation: RevocationService;
      hierarchy: CaHierarchy;
      links: CaLinks;
      /** a certificate's own issuing CA when there are several (issue 17): its certificate and CA issuers URL */
      issuerOf?: (issuerId: number) => { certificate: Buffer; caIssuersUrl: string } | undefined;
      audit: AuditLog;
      urls: AcmeUrls;
      accounts: AcmeAccounts;
      orders: AcmeOrders;
      /** the issuance rate limits of the REST API, per token and per address */
      issueLimit?: (ip: string | undefined, tokenId: string) => void;
    },
  ) {}

  async finalize(r: AcmeRequest, orderId: string, ip?: string): Promise<AcmeReply> {
    const { store, urls, audit } = this.deps;
    const account = r.account!;
    let o = await this.deps.orders.ownOrder(r, orderId);
    if (o.status === 'pending') {
      // every authorization valid but the order not yet marked ready (the validator marks it right
      // after the last authorization; a client may finalize in between): ready now
      const authzs = await store.authzsOfOrder(o.id);
      if (authzs.length > 0 && authzs.every((a) => a.status === 'valid')) {
        await store.setOrderStatus(o.id, ['pending'], 'ready');
        o = await this.deps.orders.ownOrder(r, orderId);
      }
    }
    if (o.status !== 'ready') throw new AcmeProblem('orderNotReady', `the order is ${o.status}, not ready`);
    const p = (r.payload ?? {}) as Record<string, unknown>;
    if (typeof p.csr !== 'string' || !/^[A-Za-z0-9_-]+$/.test(p.csr)) throw new AcmeProblem('malformed', '"csr" must be the base64url DER of a PKCS#10 request');
    const pem = der.pemEncode('CERTIFICATE REQUEST', Buffer.from(p.csr, 'base64url'));
    let csr: ParsedCsr;
    try {
      csr = parseCsrSync(csrFromPem(pem));
    } catch (e) {
      if (e instanceof CaError) throw new AcmeProblem('badCSR', e.message);
      throw e;
    }
    const want = new Set(identifierKeys(o));
    const got = new Set(csrNames(csr));
    if (want.size !== got.size || [...want].some((k) => !got.has(k))) {
      throw new AcmeProblem('badCSR', `the CSR must name exactly the order's identifiers (${o.identifiers.map((i) => i.value).join(', ')})`);
    }
    const principal = await this.deps.accounts.principalOf(account);
    try {
      this.deps.issueLimit?.(ip, principal.tokenId);
    } catch (e) {
      throw e instanceof CaError ? problemFromCaError(e) : e;
    }
    if (!(await store.setOrderStatus(o.id, ['ready'], 'processing'))) throw new AcmeProblem('orderNotReady', 'the order is being finalized already');
    try {
      const issued = await this.deps.issuance.issue({ csr: pem, profile: o.profile ?? 'tls-server' }, principal);
      await store.setOrderStatus(o.id, ['processing'], 'valid', { certificateSerial: issued.serialNumber });
      await audit.tryRecord({ type: 'acmeOrderFinalized', actor: `acme:${account.id}`, subject: issued.serialNumber, details: { order: o.id, identifiers: o.identifiers, profile: o.profile ?? 'tls-server', tokenId: account.tokenId } });
      const authzs = await store.authzsOfOrder(o.id);
      return { status: 200, body: orderJson({ ...o, status: 'valid', certificateSerial: issued.serialNumber }, authzs.map((a) => a.id), urls), headers: { Location: urls.order(o.id) } };
    } catch (e) {
      const problem = e instanceof CaError ? problemFromCaError(e) : e instanceof AcmeProblem ? e : new AcmeProblem('serverInternal', 'issuance failed');
      await store.setOrderStatus(o.id, ['processing'], 'invalid', { error: problem.document() });
      if (e instanceof CaError || e instanceof AcmeProblem) throw problem;
      throw e;
    }
  }

  /** RFC 8555 7.4.2: the certificate and its issuer, PEM; Link rel="up" to the issuer's certificate. */
  async download(r: AcmeRequest, orderId: string): Promise<AcmeReply> {
    const o = await this.deps.orders.ownOrder(r, orderId);
    if (o.status !== 'valid' || !o.certificateSerial) throw new AcmeProblem('malformed', 'the order has no certificate', { status: 404 });
    const rec = await this.deps.certificates.get(o.certificateSerial);
    if (!rec) throw new AcmeProblem('malformed', 'the certificate is gone', { status: 404 });
    const issuer = this.deps.issuerOf?.(rec.issuerId) ?? { certificate: this.deps.hierarchy.issuing.certificate, caIssuersUrl: this.deps.links.caIssuersUrl };
    const chain = der.pemEncode('CERTIFICATE', rec.der) + der.pemEncode('CERTIFICATE', issuer.certificate);
    return { status: 200, raw: { type: 'application/pem-certificate-chain', data: Buffer.from(chain) }, headers: { Link: `<${issuer.caIssuersUrl}>;rel="up"` } };
  }

  /**
   * RFC 8555 7.6: signed by the certificate's own key (`jwk`), by the account
   * that ordered it, or by an account holding valid authorizations for all
   * of its names.
   */
  async revoke(r: AcmeRequest): Promise<AcmeReply> {
    const p = (r.payload ?? {}) as Record<string, unknown>;
    if (typeof p.certificate !== 'string' || !/^[A-Za-z0-9_-]+$/.test(p.certificate)) throw new AcmeProblem('malformed', '"certificate" must be the base64url DER of a certificate');
    const certDer = Buffer.from(p.certificate, 'base64url');
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(certDer);
    } catch {
      throw new AcmeProblem('malformed', '"certificate" is not a certificate');
    }
    const serial = cert.serialNumber.toLowerCase().replace(/^(00)+(?=.)/, '');
    const rec = await this.deps.certificates.get(serial);
    if (!rec || !rec.der.equals(certDer)) throw new AcmeProblem('malformed', 'this CA did not issue that certificate', { status: 404 });
    let reasonName = 'unspecified';
    if (p.reason !== undefined) {
      if (typeof p.reason !== 'number' || !Number.isInteger(p.reason) || !(p.reason in REASON_NAMES) || p.reason === 6 || p.reason === 8) {
        throw new AcmeProblem('badRevocationReason', 'reason must be an RFC 5280 CRLReason code other than certificateHold (6) and removeFromCRL (8)');
      }
      reasonName = REASON_NAMES[p.reason];
    }
    let by: string;
    if (r.jwk) {
      let same = false;
      try {
        const spki = createPublicKey({ key: r.jwk as import('node:crypto').JsonWebKey, format: 'jwk' }).export({ type: 'spki', format: 'der' });
        same = spki.equals(Buffer.from(cert.publicKey.rawData));
      } catch {
        same = false;
      }
      if (!same) throw new AcmeProblem('unauthorized', 'the request is not signed by the certificate\'s key');
      by = 'acme:certificate-key';
    } else {
      const account = r.account!;
      const order = await this.deps.store.orderByCertificate(serial);
      if (!order || order.accountId !== account.id) {
        const names = [...rec.sans.dns, ...rec.sans.ip];
        const held = await this.deps.store.validAuthzsFor(account.id, names.map((n) => n.replace(/^\*\./, '')), this.deps.clock.now());
        const heldNames = new Set(held.map((a) => a.identifier.value));
        if (names.length === 0 || names.some((n) => !heldNames.has(n.replace(/^\*\./, '')))) throw new AcmeProblem('unauthorized', 'this account holds no authorization for every name of that certificate');
      }
      by = `acme:${account.id}`;
    }
    try {
      await this.deps.revocation.revoke(serial, { reason: reasonName }, by);
    } catch (e) {
      if (e instanceof CaError) throw problemFromCaError(e);
      throw e;
    }
    // the authorizations behind a revoked certificate are not reused for its replacement: it is validated afresh
    const ordered = await this.deps.store.orderByCertificate(serial);
    if (ordered) await this.deps.store.endValidAuthzs({ orderId: ordered.id }, 'revoked');
    return { status: 200 };
  }
}
