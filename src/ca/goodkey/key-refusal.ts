import { CaError } from '../../errors';

/**
 * Why a key was refused, for the audit trail: which check, and the SHA-256 of
 * the SubjectPublicKeyInfo (hex) so an auditor can match it against the
 * blocked-keys table or another CA's incident report. The client only sees
 * the code and the message, which name the check and nothing of the key's
 * internals (never a factor).
 */
export class KeyRefusal extends CaError {
  constructor(
    code: 'weakKey' | 'unsupportedKey' | 'blockedKey',
    /** the failed check: smallFactor, fermat, roca, exponent, modulusSize, notOnCurve, identity, blocked, ... */
    readonly check: string,
    message: string,
    readonly spkiSha256: string,
  ) {
    super('policy', code, message);
    this.name = 'KeyRefusal';
  }
}
