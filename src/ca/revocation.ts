import { Clock } from '../clock';
import { CaError } from '../errors';
import { CertificateRecord, CertificateStore } from '../storage/certificate-store';
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
    const out = await this.deps.store.revoke(serial, this.deps.clock.now(), reason, invalidityDate);
    if (out.kind === 'notFound') throw new CaError('notFound', 'certificateNotFound', `no certificate with serial ${serial}`);
    if (out.kind === 'alreadyRevoked') throw new CaError('conflict', 'alreadyRevoked', `certificate ${serial} is already revoked`);
    for (const l of this.listeners) l({ record: out.record, reason, by });
    return out.record;
  }
}
