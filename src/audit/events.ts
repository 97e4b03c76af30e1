/** The audit log's event types and the shape of an event, recorded and read back. */

export const AUDIT_EVENT_TYPES = [
  'keyGenerated',
  'caInitialised',
  'certificateIssued',
  'certificateRevoked',
  'tokenCreated',
  'tokenRevoked',
  'crlGenerated',
  'authenticationFailed',
  'authenticationFailures',
  'issuanceRefused',
  'lintFailed',
  'weakKeyRefused',
  'blockedKeyRefused',
  'keyBlocked',
  'auditCheckpoint',
  'acmeEabKeyCreated',
  'acmeEabKeyRevoked',
  'acmeAccountCreated',
  'acmeAccountUpdated',
  'acmeOrderCreated',
  'acmeValidationSucceeded',
  'acmeValidationFailed',
  'acmeOrderFinalized',
  'acmeOrderRefused',
  'issuerRotated',
  'rootRenewed',
  'quorumRequested',
  'quorumApproved',
  'quorumRefused',
  'quorumExecuted',
  'quorumApproverAdded',
  'quorumApproverRemoved',
  'backupCreated',
  'backupRestored',
] as const;
export type AuditEventType = (typeof AUDIT_EVENT_TYPES)[number];

/** The HSM key that signs checkpoints. */
export const AUDIT_KEY_LABEL = 'hsmca-audit';

export interface AuditEventInput {
  type: AuditEventType;
  /** who did it: "admin:alice", "requester:web-1", "system", "anonymous" */
  actor: string;
  /** what it was done to: a serial, a token id, a key label */
  subject?: string;
  /** never secrets: fields named like token, pin, password, secret or privateKey are replaced by "[redacted]" */
  details?: Record<string, unknown>;
}

export interface AuditEvent {
  seq: number;
  at: Date;
  type: string;
  actor: string;
  subject: string | null;
  details: unknown;
  hash: string;
  prevHash: string;
}
