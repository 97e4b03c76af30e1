import { normalizeSerial } from '../ca/certificate';
import { Clock } from '../clock';
import type { CertificateStore } from '../storage/certificate-store';
import type { AcmeReply } from './accounts';
import { AcmeProblem } from './problem';

/** How often a client should ask again (RFC 9773 4.3: Retry-After on every answer). */
const RETRY_AFTER_SECONDS = 6 * 3600;

/** RFC 9773 4.1: base64url(AKI keyIdentifier) "." base64url(serial DER contents, leading zero kept). */
export function renewalId(issuerKeyId: Buffer, serialHex: string): string {
  let b = Buffer.from(serialHex.length % 2 ? `0${serialHex}` : serialHex, 'hex');
  if (b[0] & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return `${issuerKeyId.toString('base64url')}.${b.toString('base64url')}`;
}

/**
 * ACME Renewal Information (RFC 9773): when to renew a certificate. A good
 * certificate's window is the third sixth-from-last of its life (from two
 * thirds to five sixths), which leaves a sixth for retries; a revoked one's
 * window is already open, so clients replace it at once.
 */
export async function renewalInfo(id: string, d: { /** every issuing CA's key id (several after a rotation) */ issuerKeyId: Buffer | Buffer[]; certificates: CertificateStore; clock: Clock }): Promise<AcmeReply> {
  const m = /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/.exec(id);
  if (!m) throw new AcmeProblem('malformed', 'a renewalInfo id is base64url(authority key id) "." base64url(serial number)');
  const aki = Buffer.from(m[1], 'base64url');
  if (!(Array.isArray(d.issuerKeyId) ? d.issuerKeyId : [d.issuerKeyId]).some((k) => aki.equals(k))) throw new AcmeProblem('malformed', 'this CA did not issue that certificate', { status: 404 });
  const serial = normalizeSerial(Buffer.from(m[2], 'base64url').toString('hex') || 'x');
  const rec = serial && (await d.certificates.get(serial));
  if (!rec) throw new AcmeProblem('malformed', 'this CA did not issue that certificate', { status: 404 });
  const nb = rec.notBefore.getTime();
  const life = rec.notAfter.getTime() - nb;
  const now = d.clock.now().getTime();
  const window = rec.revokedAt ? { start: new Date(now - 3_600_000), end: new Date(now) } : { start: new Date(nb + (life * 2) / 3), end: new Date(nb + (life * 5) / 6) };
  return {
    status: 200,
    body: { suggestedWindow: { start: window.start.toISOString(), end: window.end.toISOString() } },
    headers: { 'Retry-After': String(RETRY_AFTER_SECONDS) },
  };
}
