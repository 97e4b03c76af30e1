import { Clock } from '../clock';
import { CaError } from '../errors';
import type { BlockedKeyRecord } from '../storage/blocked-key-store';
import { CertificateRecord, CertificateStore } from '../storage/certificate-store';
import { compromisedKeyEntry } from './goodkey/blocked-keys';
import { normalizeSerial } from './certificate';

/** RFC 5280 5.3.1 CRLReason names and codes. */
export const REASON_CODES: Record<string, number> = {
  unspecified: 0,
  keyCompromise: 1,
  cACompromise: 2,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
  certificateHold: 6,
  // 7 is not used
  removeFromCRL: 8,
  privilegeWithdrawn: 9,
  aACompromise: 10,
};

export const REASON_NAMES: Record<number, string> = Object.fromEntries(Object.entries(REASON_CODES).map(([k, v]) => [v, k]));

export interface RevokeRequest {
  reason?: unknown;
  invalidityDate?: unknown;
}

export interface RevocationEvent {
  record: CertificateRecord;
  reason: number;
  by: string;
  /** the certificate's key, when this revocation (keyCompromise) newly blocked it */
  blockedKey?: BlockedKeyRecord;
}

/**
 * Revocation is final: certificateHold (suspension) and removeFromCRL (a delta
 * CRL marker) are not accepted as reasons, as with the CA/Browser Forum rules.
 */
export class RevocationService {
  private readonly listeners: ((e: RevocationEvent) => void)[] = [];

  constructor(private readonly deps: { store: CertificateStore; clock: Clock }) {}

  onRevoked(fn: (e: RevocationEvent) => void): void {
    this.listeners.push(fn);
  }

  async revoke(serialInput: string, req: RevokeRequest, by: string, canRevoke?: (r: CertificateRecord) => boolean): Promise<CertificateRecord> {
    const serial = normalizeSerial(serialInput);
    if (!serial) throw new CaError('badRequest', 'invalidSerial', 'the serial number must be hex (upper or lower case, colons allowed)');
    const reasonName = req.reason ?? 'unspecified';
    if (typeof reasonName !== 'string' || !(reasonName in REASON_CODES)) {
      throw new CaError('badRequest', 'invalidReason', `reason must be one of the RFC 5280 names: ${Object.keys(REASON_CODES).filter((r) => r !== 'certificateHold' && r !== 'removeFromCRL').join(', ')}`);
    }
    if (reasonName === 'certificateHold' || reasonName === 'removeFromCRL') {
      throw new CaError('policy', 'reasonNotAllowed', `hsmca does not suspend certificates; "${reasonName}" is not accepted`);
    }
    let invalidityDate: Date | null = null;
    if (req.invalidityDate !== undefined && req.invalidityDate !== null) {
      invalidityDate = typeof req.invalidityDate === 'string' ? new Date(req.invalidityDate) : new Date(NaN);
      if (isNaN(invalidityDate.getTime())) throw new CaError('badRequest', 'invalidInvalidityDate', 'invalidityDate must be an ISO 8601 time');
    }
    if (canRevoke) {
      const rec = await this.deps.store.get(serial);
      if (!rec) throw new CaError('notFound', 'certificateNotFound', `no certificate with serial ${serial}`);
      if (!canRevoke(rec)) throw new CaError('forbidden', 'notYourCertificate', 'this token may not revoke that certificate');
    }
    const reason = REASON_CODES[reasonName];
    const at = this.deps.clock.now();
    // keyCompromise: the certificate's key is blocked in the same transaction (goodkey/blocked-keys.ts)
    const blockKey = reason === REASON_CODES.keyCompromise ? (r: CertificateRecord) => compromisedKeyEntry(r, at, by) : undefined;
    const out = await this.deps.store.revoke(serial, at, reason, invalidityDate, blockKey);
    if (out.kind === 'notFound') throw new CaError('notFound', 'certificateNotFound', `no certificate with serial ${serial}`);
    if (out.kind === 'alreadyRevoked') throw new CaError('conflict', 'alreadyRevoked', `certificate ${serial} is already revoked`);
    for (const l of this.listeners) l({ record: out.record, reason, by, blockedKey: out.blockedKey });
    return out.record;
  }
}
