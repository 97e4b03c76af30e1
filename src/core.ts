import { AuditLog } from './audit/audit-log';
import { AUDIT_KEY_LABEL } from './audit/events';
import { KeyAuditingHsm } from './audit/key-auditing-hsm';
import { ensureFirstAdmin } from './auth/first-admin';
import { scopePolicy } from './auth/scope';
import { TokenService } from './auth/tokens';
import { CrlService } from './ca/crl-service';
import { CrlShardPlan, CrlShards } from './ca/crl-shards';
import { BlockedKeyService } from './ca/goodkey/blocked-keys';
import { CaHierarchy, CaIdentity, CaLinks, loadOrCreateHierarchy } from './ca/hierarchy';
import { FIRST_ISSUER_ID, IssuerLinks, IssuerRegistry, IssuerServices, MultiIssuerOcsp, activeView } from './ca/issuers';
import { IssuerStore } from './storage/issuer-store';
import { IssuanceService } from './ca/issuance';
import { ProfileRegistry } from './ca/profiles';
import { RevocationService } from './ca/revocation';
import { Clock, systemClock } from './clock';
import { Config } from './config';
import { prepareDataDir } from './data-folder';
import { Hsm, Signer } from './hsm/hsm';
import { AuthFailureThrottle } from './http/auth-failure-throttle';
import { InstrumentedHsm } from './hsm/instrumented';
import { openConfiguredHsm } from './hsm/open';
import { Logger, createLogger } from './log';
import { Metrics } from './metrics';
import { OcspResponder, OcspSource } from './ocsp/responder';
import { ResponderCertificateManager } from './ocsp/responder-certificate';
import { auditTokens, crlGenerated, issuanceHooks, lintGate, recordBlockedKeys, recordCaInitialised, recordRevocations } from './service-events';
import { BlockedKeyStore } from './storage/blocked-key-store';
import { CaStore } from './storage/ca-store';
import { CertificateStore } from './storage/certificate-store';
import { CrlStore } from './storage/crl-store';
import { Database, openConfiguredDatabase } from './storage/database';
import { TokenStore } from './storage/token-store';
import { QuorumGate } from './quorum/gate';
import { openQuorumGate } from './quorum/open';
import { registerBackupExecutor } from './backup/backup';
import { registerCaExecutors } from './quorum/ca-operations';

export interface CoreOptions {
  clock?: Clock;
  log?: Logger;
  /** where the generated admin token is announced (default: stdout) */
  announce?: (line: string) => void;
  /**
   * With several worker processes one is the leader: it alone generates keys
   * and runs the periodic jobs; followers adopt what it makes.
   */
  role?: 'single' | 'leader' | 'follower';
}

/** Everything a running CA holds, wired once (entry points → domain → data access). */
export interface Core {
  config: Config;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
  db: Database;
  hsm: Hsm;
  hierarchy: CaHierarchy;
  links: CaLinks;
  certificates: CertificateStore;
  caStore: CaStore;
  tokens: TokenService;
  tokenStore: TokenStore;
  profiles: ProfileRegistry;
  issuance: IssuanceService;
  revocation: RevocationService;
  blockedKeys: BlockedKeyService;
  crls: CrlService;
  responders: ResponderCertificateManager;
  ocsp: OcspSource;
  audit: AuditLog;
  /** the issuing CAs and roots (issue 17): the active issuer signs; every issuer answers OCSP and CRLs for its own */
  issuers: IssuerRegistry;
  /** failed authentications: throttled per address, audited first-then-summary (flushed by the background jobs) */
  authFailures: AuthFailureThrottle;
  /** the HSM key that signs audit checkpoints (AUDIT_KEY_LABEL); undefined only on a follower started before the key existed */
  auditSigner?: Signer;
  /** M-of-N quorum for the sensitive operations (src/quorum/); runs them at once when M <= 1 */
  quorum: QuorumGate;
  close(): Promise<void>;
}

/**
 * Opens (and on first start, initialises) the CA, top to bottom: settings →
 * data folder → database → HSM and audit log → CA hierarchy → services. The
 * HTTP listener and the background jobs are started on top of it by
 * service.ts; the CLI uses it alone.
 */
export async function openCore(config: Config, opts: CoreOptions = {}): Promise<Core> {
  const clock = opts.clock ?? systemClock;
  const log = opts.log ?? createLogger(config.logLevel);
  const metrics = new Metrics();
  prepareDataDir(config.dataDir);
  const profiles = new ProfileRegistry(config.profiles);
  const db = await openConfiguredDatabase(config, log);
  // Several instances starting at once on one PostgreSQL database take turns from here to the
  // services (one makes the HSM's and the CA's keys, the others adopt them); SQLite: no wait.
  let releaseStartup: () => Promise<void>;
  let rawHsm: Hsm;
  try {
    releaseStartup = await db.startupLock();
    try {
      rawHsm = await openConfiguredHsm(config);
    } catch (e) {
      await releaseStartup();
      throw e;
    }
  } catch (e) {
    await db.close();
    throw e;
  }
  const audit = new AuditLog({ db, clock, log, verifyKey: async (label) => (await rawHsm.getKey(label))?.publicKey });
  // Every key generated from here on (CA keys at init, OCSP responder keys, the audit key) is audited.
  const hsm = new KeyAuditingHsm(new InstrumentedHsm(rawHsm, metrics, log), audit);
  const close = async () => {
    await releaseStartup();
    await audit.close().catch(() => undefined);
    await hsm.close().catch(() => undefined);
    await db.close().catch(() => undefined);
  };
  try {
    const caStore = new CaStore(db);
    let hierarchy: CaHierarchy, auditSigner: Signer | undefined, services: Services;
    try {
      hierarchy = await openHierarchy(config, { hsm, caStore, clock, log, audit });
      auditSigner = await openAuditKey(config, hsm, opts.role);
      services = await openServices(config, opts, { clock, log, metrics, db, hsm, audit, caStore, hierarchy, profiles });
    } finally {
      await releaseStartup();
    }
    // Each worker process keeps its own buckets, like the issuance limits.
    const limitPerMinute = Math.ceil(config.authFailureLimit / (config.workers * config.instances));
    const authFailures = new AuthFailureThrottle({ audit, metrics, clock, limitPerMinute, intervalSeconds: config.authFailureAuditIntervalSeconds });
    const quorum = openQuorumGate(config, { db, audit, clock, tokens: services.tokens });
    registerBackupExecutor(quorum, { config, db, hsm, audit, clock, hierarchy: services.hierarchy });
    const core: Core = { config, clock, log, metrics, db, hsm, caStore, profiles, audit, auditSigner, authFailures, ...services, quorum, close };
    registerCaExecutors(quorum, core);
    return core;
  } catch (e) {
    await close();
    throw e;
  }
}

/** The root and issuing CA from the database, checked against the HSM; made on first start (and audited). */
async function openHierarchy(config: Config, d: { hsm: Hsm; caStore: CaStore; clock: Clock; log: Logger; audit: AuditLog }): Promise<CaHierarchy> {
  const { created, ...hierarchy } = await loadOrCreateHierarchy({
    hsm: d.hsm,
    store: d.caStore,
    clock: d.clock,
    log: d.log,
    keyAlgorithm: config.keyAlgorithm,
    caName: config.caName,
    publicUrl: config.publicUrl,
    lint: lintGate(d.audit, d.log),
  });
  if (created) await recordCaInitialised(d.audit, config, d.hsm, hierarchy);
  return hierarchy;
}

/** The audit checkpoint key, generated like the CA keys (a data folder from before the audit log gets it on its next start). */
async function openAuditKey(config: Config, hsm: Hsm, role: CoreOptions['role']): Promise<Signer | undefined> {
  let key = await hsm.getKey(AUDIT_KEY_LABEL);
  if (!key && role !== 'follower') key = await hsm.generateKey(AUDIT_KEY_LABEL, config.keyAlgorithm);
  return key ? hsm.signer(key.label) : undefined;
}

/** The URLs written into every certificate: OCSP, the issuer's certificate, the CRL. */
export function caLinks(publicUrl: string): CaLinks {
  return { ocspUrl: `${publicUrl}/ocsp`, caIssuersUrl: `${publicUrl}/ca/issuer.crt`, crlUrl: `${publicUrl}/crl` };
}

type Services = Pick<Core, 'links' | 'certificates' | 'tokens' | 'tokenStore' | 'issuance' | 'revocation' | 'blockedKeys' | 'crls' | 'responders' | 'ocsp' | 'issuers' | 'hierarchy'>;

/** The domain services on top of the stores and the hierarchy; the OCSP responder certificate and the CRL made fresh if needed. */
async function openServices(
  config: Config,
  opts: CoreOptions,
  d: { clock: Clock; log: Logger; metrics: Metrics; db: Database; hsm: Hsm; audit: AuditLog; caStore: CaStore; hierarchy: CaHierarchy; profiles: ProfileRegistry },
): Promise<Services> {
  const { clock, log, metrics, audit } = d;
  const first = d.hierarchy;
  const links = caLinks(config.publicUrl);
  const lint = lintGate(audit, log);
  const crlShards = config.crlShards > 1 ? new CrlShardPlan(config.crlShards, links.crlUrl) : undefined;
  const certificates = new CertificateStore(d.db);
  const tokenStore = new TokenStore(d.db);
  const tokens = new TokenService({ store: tokenStore, clock });
  auditTokens(tokens, audit);
  await ensureFirstAdmin(config, tokens, tokenStore, opts.announce ?? ((l) => process.stdout.write(l + '\n')));
  const blockedKeys = new BlockedKeyService({ store: new BlockedKeyStore(d.db), clock });
  const crlSettings = { validitySeconds: config.crlValiditySeconds, retentionSeconds: config.crlRetentionSeconds };
  // Each issuer's own delegated OCSP responder and CRLs; the first issuer's CRL is partitioned when configured.
  const issuerServices = async (i: { id: number; identity: CaIdentity; links: IssuerLinks; prepare?: boolean }): Promise<IssuerServices> => {
    const responders = new ResponderCertificateManager({
      hsm: d.hsm,
      store: d.caStore,
      issuer: i.identity,
      issuerId: i.id,
      clock,
      log,
      keyAlgorithm: config.keyAlgorithm,
      caName: config.caName,
      settings: { validityDays: 30, renewAtFraction: 1 / 3 },
      // a rotation run in a follower makes the new issuer's first responder certificate itself
      canIssue: opts.role !== 'follower' || i.prepare === true,
      lint,
    });
    await responders.ensureFresh();
    const ocsp = new OcspResponder({
      issuer: i.identity,
      issuerId: i.id,
      responders,
      certificates,
      clock,
      log,
      settings: { validitySeconds: config.ocspValiditySeconds, refreshAtFraction: 0.5, cacheSize: 100_000, onDemandSignaturesPerSecond: config.ocspOnDemandSignaturesPerSecond },
    });
    const crlStore = new CrlStore(d.db, i.id);
    const shards = crlShards && i.id === FIRST_ISSUER_ID ? crlShards : undefined;
    const crls = new CrlService({
      issuer: i.identity,
      issuerId: i.id,
      certificates,
      crls: crlStore,
      clock,
      log,
      settings: { ...crlSettings, crlUrl: i.links.crlNames, deltaCrlUrl: i.links.deltaCrlUrl },
      onGenerated: crlGenerated(audit, metrics),
      lint,
      shards:
        shards &&
        new CrlShards({ plan: shards, issuer: i.identity, certificates, crls: crlStore, clock, log, settings: crlSettings, onGenerated: crlGenerated(audit, metrics), lint }),
    });
    await crls.init();
    return { responders, ocsp, crls };
  };
  const issuers = await IssuerRegistry.open(
    { store: new IssuerStore(d.db), caStore: d.caStore, hsm: d.hsm, clock, log, publicUrl: config.publicUrl, services: issuerServices },
    first,
  );
  const hierarchy = issuers.hierarchy();
  const issuance = new IssuanceService({
    hierarchy,
    links,
    issuers,
    store: certificates,
    profiles: d.profiles,
    clock,
    log,
    policy: scopePolicy,
    hooks: issuanceHooks(audit, metrics),
    lint,
    crlShards,
    blockedKeys,
  });
  const revocation = new RevocationService({ store: certificates, clock });
  recordRevocations(revocation, audit, metrics, log);
  recordBlockedKeys(blockedKeys, audit, revocation);
  // The active issuer's responder and CRLs, for what serves one issuer (GET /crl, the console).
  const crls = activeView(() => issuers.active().crls);
  const responders = activeView(() => issuers.active().responders);
  const ocsp = new MultiIssuerOcsp(issuers);
  return { links, certificates, tokens, tokenStore, issuance, revocation, blockedKeys, crls, responders, ocsp, issuers, hierarchy };
}
