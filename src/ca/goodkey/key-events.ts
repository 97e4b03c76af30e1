import type { AuditEventType } from '../../audit/events';
import { CaError } from '../../errors';
import { KeyRefusal } from './key-refusal';

/**
 * The audit event of a refused key: weakKeyRefused (with the failed check)
 * or blockedKeyRefused, both with the SPKI digest as subject; undefined for
 * any other refusal (an unsupported key is not a weak one).
 */
export function keyRefusalEvent(e: CaError): { type: AuditEventType; subject: string; details: Record<string, unknown> } | undefined {
  if (!(e instanceof KeyRefusal) || (e.code !== 'weakKey' && e.code !== 'blockedKey')) return undefined;
  return {
    type: e.code === 'blockedKey' ? 'blockedKeyRefused' : 'weakKeyRefused',
    subject: e.spkiSha256,
    details: { check: e.check, spkiSha256: e.spkiSha256 },
  };
}
