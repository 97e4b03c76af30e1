import { createHash } from 'node:crypto';
import { AuditLog } from './audit/audit-log';
import { TokenService } from './auth/tokens';
import { CaHierarchy } from './ca/hierarchy';
import { BlockedKeyService } from './ca/goodkey/blocked-keys';
import { keyRefusalEvent } from './ca/goodkey/key-events';
import { IssuanceHooks } from './ca/issuance';
import { PreIssuanceLint } from './ca/lint/pre-issuance-lint';
import { REASON_NAMES, RevocationService } from './ca/revocation';
import { Config } from './config';
import { Hsm } from './hsm/hsm';
import { Logger } from './log';
import { Metrics } from './metrics';
import { CrlRecord } from './storage/crl-store';

/*
 * What the running CA records when something happens, in one place: audit
 * events, metrics and log lines. The domain services only announce; this
 * module decides what is kept.
 */

const sha256hex = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Token creations and revocations go to the audit log: who, which token, its role and scope; never the token or its hash. */
export function auditTokens(tokens: TokenService, audit: AuditLog): void {
  tokens.onChange((e) => {
    void audit.tryRecord({
      type: e.kind === 'created' ? 'tokenCreated' : 'tokenRevoked',
      actor: e.by,
      subject: e.record.id,
      details: { role: e.record.role, name: e.record.name, expiresAt: e.record.expiresAt, scope: e.record.scope ?? null },
    });
  });
}

/** The first start made the CA: its algorithm, HSM, key labels and the certificates' hashes. */
export async function recordCaInitialised(audit: AuditLog, config: Config, hsm: Hsm, hierarchy: CaHierarchy): Promise<void> {
  await audit.tryRecord({
    type: 'caInitialised',
    actor: 'system',
    subject: config.caName,
    details: {
      algorithm: config.keyAlgorithm,
      hsm: hsm.kind,
      rootKeyLabel: hierarchy.root.signer.label,
      issuingKeyLabel: hierarchy.issuing.signer.label,
      rootCertificateSha256: sha256hex(hierarchy.root.certificate),
      issuingCertificateSha256: sha256hex(hierarchy.issuing.certificate),
    },
  });
}

/**
 * Issuance: the certificateIssued event is stored with the certificate, in
 * one transaction (no certificate reaches a client without its event);
 * refusals are counted and audited.
 */
export function issuanceHooks(audit: AuditLog, metrics: Metrics): IssuanceHooks {
  return {
    auditEvent: (e) =>
      audit.prepare({
        type: 'certificateIssued',
        actor: `${e.principal.role}:${e.principal.name}`,
        subject: e.serial,
        details: { tokenId: e.principal.tokenId, profile: e.profile, subject: e.subject, sans: e.sans },
      }),
    issued: (e) => metrics.certificatesIssued.inc({ profile: e.profile }),
    refused: async (e) => {
      metrics.issuanceRefused.inc({ code: e.error.code });
      const details = { tokenId: e.principal.tokenId, code: e.error.code, message: e.error.message };
      // a weak or blocked key is recorded as such (instead of issuanceRefused), with the check and the key's digest
      const key = keyRefusalEvent(e.error);
      await audit.tryRecord({
        type: key?.type ?? 'issuanceRefused',
        actor: `${e.principal.role}:${e.principal.name}`,
        subject: key?.subject,
        details: { ...details, ...key?.details },
      });
    },
  };
}

/** A signature refused by the pre-issuance lint is audited (lintFailed) with the lints, the profile and the serial or CRL number. */
export function lintGate(audit: AuditLog, log: Logger): PreIssuanceLint {
  return new PreIssuanceLint({
    log,
    onRefused: async (r) => {
      await audit.tryRecord({
        type: 'lintFailed',
        actor: 'system',
        subject: r.serial ?? (r.crlNumber ? `crl:${r.crlNumber}` : undefined),
        details: { target: r.target, kind: r.kind ?? null, profile: r.profile ?? null, lints: r.lints, findings: r.findings.map((f) => `${f.lint}: ${f.detail}`) },
      });
    },
  });
}

/** Each revocation is counted by reason, logged and audited. */
export function recordRevocations(revocation: RevocationService, audit: AuditLog, metrics: Metrics, log: Logger): void {
  revocation.onRevoked((e) => {
    metrics.certificatesRevoked.inc({ reason: REASON_NAMES[e.reason] ?? String(e.reason) });
    log.info('certificate revoked', { serial: e.record.serial, reason: e.reason, by: e.by });
    void audit.tryRecord({
      type: 'certificateRevoked',
      actor: e.by,
      subject: e.record.serial,
      details: { reason: REASON_NAMES[e.reason] ?? e.reason, invalidityDate: e.record.invalidityDate },
    });
  });
}

/** Each CRL made (full, delta and shard) is counted and audited with its number, times and, for a shard CRL, its shard. */
export function crlGenerated(audit: AuditLog, metrics: Metrics): (kind: CrlRecord['kind'], r: CrlRecord) => void {
  return (kind, r) => {
    metrics.crlGenerated.inc({ kind });
    const shard = r.shard === undefined ? {} : { shard: r.shard };
    void audit.tryRecord({
      type: 'crlGenerated',
      actor: 'system',
      subject: r.shard === undefined ? `${kind}:${r.crlNumber}` : `${kind}${r.shard}:${r.crlNumber}`,
      details: { kind, ...shard, crlNumber: r.crlNumber, baseNumber: r.baseNumber, thisUpdate: r.thisUpdate, nextUpdate: r.nextUpdate, entries: r.entries },
    });
  };
}

// Failed authentications: see http/auth-failure-throttle.ts (throttled, and audited first-then-summary).

/** Every key blocked (by an admin, or by a revocation for keyCompromise) is audited with its digest and source. */
export function recordBlockedKeys(blockedKeys: BlockedKeyService, audit: AuditLog, revocation?: RevocationService): void {
  revocation?.onRevoked((e) => {
    if (e.blockedKey) blockedKeys.announce(e.blockedKey);
  });
  blockedKeys.onBlocked(({ record }) => {
    void audit.tryRecord({
      type: 'keyBlocked',
      actor: record.addedBy ?? 'system',
      subject: record.spkiSha256,
      details: { source: record.source, serial: record.serial, comment: record.comment },
    });
  });
}
