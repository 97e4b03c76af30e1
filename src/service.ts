import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { AuditLog } from './audit/audit-log';
import { AUDIT_KEY_LABEL } from './audit/events';
import { KeyAuditingHsm } from './audit/key-auditing-hsm';
import { TokenService } from './auth/tokens';
import { CaHierarchy, CaLinks, loadOrCreateHierarchy } from './ca/hierarchy';
import { IssuanceService } from './ca/issuance';
import { ProfileRegistry } from './ca/profiles';
import { REASON_NAMES, RevocationService } from './ca/revocation';
import { CrlService, Debouncer } from './ca/crl-service';
import { OcspResponder } from './ocsp/responder';
import { ResponderCertificateManager } from './ocsp/responder-certificate';
import { CrlStore } from './storage/crl-store';
import { crlRoutes } from './http/routes/crl';
import { ocspHttpHandler } from './http/routes/ocsp';
import { Clock, systemClock } from './clock';
import { Config } from './config';
import { StartupError } from './errors';
import { openHsm } from './hsm/factory';
import { Hsm, HsmError, Signer } from './hsm/hsm';
import { InstrumentedHsm } from './hsm/instrumented';
import { createApp, jsonBody } from './http/app';
import { IssuanceRateLimit } from './http/rate-limit';
import { issueHttpHandler } from './http/routes/issue';
import { tokenRoutes } from './http/routes/tokens';
import { scopeAllowsRevoke, scopePolicy } from './auth/scope';
import { AuthHooks, requireRole } from './http/auth';
import { auditRoutes } from './http/routes/audit';
import { caRoutes } from './http/routes/ca';
import { certificateRoutes } from './http/routes/certificates';
import { Logger, createLogger } from './log';
import { Metrics } from './metrics';
import { CaStore } from './storage/ca-store';
import { CertificateStore } from './storage/certificate-store';
import { Database, openDatabase } from './storage/database';
import { TokenStore } from './storage/token-store';

export interface ServiceOptions {
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
  crls: CrlService;
  responders: ResponderCertificateManager;
  ocsp: OcspResponder;
  audit: AuditLog;
  /** the HSM key that signs audit checkpoints (AUDIT_KEY_LABEL); undefined only on a follower started before the key existed */
  auditSigner?: Signer;
  close(): Promise<void>;
}

/** A burst of revocations makes one CRL, this long after the last of them. */
export const CRL_DEBOUNCE_MS = 2000;
const RESPONDER_CHECK_MS = 3600_000;
/** How often the leader signs the audit log's head (also at start and at shutdown). */
export const AUDIT_CHECKPOINT_MS = 60_000;

const sha256hex = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Token creations and revocations go to the audit log: who, which token, its role and scope; never the token or its hash. */
function auditTokens(tokens: TokenService, audit: AuditLog): void {
  tokens.onChange((e) => {
    void audit.tryRecord({
      type: e.kind === 'created' ? 'tokenCreated' : 'tokenRevoked',
      actor: e.by,
      subject: e.record.id,
      details: { role: e.record.role, name: e.record.name, expiresAt: e.record.expiresAt, scope: e.record.scope ?? null },
    });
  });
}

/** Creates the data folder 0700, or refuses one that others can read. */
export function prepareDataDir(dir: string): void {
  if (!fs.existsSync(dir)) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    return;
  }
  const st = fs.statSync(dir);
  if (!st.isDirectory()) throw new StartupError(`HSMCA_DATA_DIR: ${dir} is not a folder`);
  if (st.mode & 0o007) {
    throw new StartupError(`HSMCA_DATA_DIR: ${dir} is accessible to other users (mode ${(st.mode & 0o777).toString(8)}); run chmod 700 on it`);
  }
}

function writeSecret(file: string, content: string): void {
  fs.writeFileSync(file, content + '\n', { mode: 0o600, flag: 'wx' });
}

function readSecret(file: string, setting: string): string | undefined {
  if (!fs.existsSync(file)) return undefined;
  const st = fs.statSync(file);
  if (st.mode & 0o077) throw new StartupError(`${setting}: ${file} is readable by other users (mode ${(st.mode & 0o777).toString(8)}); run chmod 600 on it`);
  return fs.readFileSync(file, 'utf8').trim();
}

/** The software HSM's PIN: the setting, the saved file, or a new one on first init. */
function softHsmPin(config: Config): string {
  if (config.hsmPin) return config.hsmPin;
  const pinFile = path.join(config.dataDir, 'hsm.pin');
  const saved = readSecret(pinFile, 'HSMCA_HSM_PIN');
  if (saved) return saved;
  if (fs.existsSync(path.join(config.dataDir, 'soft-hsm.json'))) {
    throw new StartupError('HSMCA_HSM_PIN: the software HSM store exists but no PIN is set and no hsm.pin file is in the data folder');
  }
  const pin = randomBytes(24).toString('base64url');
  writeSecret(pinFile, pin);
  return pin;
}

/**
 * Opens the configured HSM; a failure becomes one start-up line naming the
 * setting to look at.
 */
async function openHsmOrExplain(config: Config): Promise<Hsm> {
  try {
    return await openHsm(config, config.hsm === 'soft' ? softHsmPin(config) : undefined);
  } catch (e) {
    if (!(e instanceof HsmError)) throw e;
    const setting =
      config.hsm === 'soft'
        ? e.code === 'storeTampered'
          ? 'HSMCA_DATA_DIR'
          : 'HSMCA_HSM_PIN'
        : e.code === 'wrongPin'
          ? 'HSMCA_PKCS11_PIN'
          : e.code === 'hsmConfig' && /module/i.test(e.message)
            ? 'HSMCA_PKCS11_MODULE'
            : 'HSMCA_PKCS11_TOKEN_LABEL';
    throw new StartupError(`${setting}: ${e.message}`);
  }
}

/** The configured HSM alone, for the `hsmca hsm` commands: no database, no CA. */
export async function openConfiguredHsm(config: Config): Promise<Hsm> {
  prepareDataDir(config.dataDir);
  return openHsmOrExplain(config);
}

/** Opens (and on first start, initialises) the database, the HSM and the CA hierarchy. */
export async function openCore(config: Config, opts: ServiceOptions = {}): Promise<Core> {
  const clock = opts.clock ?? systemClock;
  const log = opts.log ?? createLogger(config.logLevel);
  const metrics = new Metrics();
  prepareDataDir(config.dataDir);
  const profiles = new ProfileRegistry(config.profiles);

  let db: Database;
  try {
    db = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir, log });
  } catch (e) {
    throw new StartupError(`HSMCA_DATABASE_URL: ${(e as Error).message}`);
  }
  let rawHsm: Hsm;
  try {
    rawHsm = await openHsmOrExplain(config);
  } catch (e) {
    await db.close();
    throw e;
  }
  const audit = new AuditLog({ db, clock, log, verifyKey: async (label) => (await rawHsm.getKey(label))?.publicKey });
  // Every key generated from here on (CA keys at init, OCSP responder keys, the audit key) is audited.
  const hsm = new KeyAuditingHsm(new InstrumentedHsm(rawHsm, metrics, log), audit);
  const closeAll = async () => {
    await audit.close().catch(() => undefined);
    await hsm.close().catch(() => undefined);
    await db.close().catch(() => undefined);
  };
  try {
    const caStore = new CaStore(db);
    const { created, ...hierarchy } = await loadOrCreateHierarchy({
      hsm,
      store: caStore,
      clock,
      log,
      keyAlgorithm: config.keyAlgorithm,
      caName: config.caName,
      publicUrl: config.publicUrl,
    });
    if (created) {
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
    // The checkpoint key, generated like the CA keys (a data folder from before the audit log gets it on its next start).
    let auditKey = await hsm.getKey(AUDIT_KEY_LABEL);
    if (!auditKey && opts.role !== 'follower') auditKey = await hsm.generateKey(AUDIT_KEY_LABEL, config.keyAlgorithm);
    const auditSigner = auditKey ? await hsm.signer(auditKey.label) : undefined;
    const links: CaLinks = {
      ocspUrl: `${config.publicUrl}/ocsp`,
      caIssuersUrl: `${config.publicUrl}/ca/issuer.crt`,
      crlUrl: `${config.publicUrl}/crl`,
    };
    const certificates = new CertificateStore(db);
    const tokenStore = new TokenStore(db);
    const tokens = new TokenService({ store: tokenStore, clock });
    auditTokens(tokens, audit);
    await ensureFirstAdmin(config, tokens, tokenStore, opts.announce ?? ((l) => process.stdout.write(l + '\n')));
    const issuance = new IssuanceService({
      hierarchy,
      links,
      store: certificates,
      profiles,
      clock,
      log,
      policy: scopePolicy,
      hooks: {
        // stored with the certificate, in one transaction: no certificate reaches a client without its event
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
          await audit.tryRecord({
            type: 'issuanceRefused',
            actor: `${e.principal.role}:${e.principal.name}`,
            details: { tokenId: e.principal.tokenId, code: e.error.code, message: e.error.message },
          });
        },
      },
    });
    const revocation = new RevocationService({ store: certificates, clock });
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
    const responders = new ResponderCertificateManager({
      hsm,
      store: caStore,
      issuer: hierarchy.issuing,
      clock,
      log,
      keyAlgorithm: config.keyAlgorithm,
      caName: config.caName,
      settings: { validityDays: 30, renewAtFraction: 1 / 3 },
      canIssue: opts.role !== 'follower',
    });
    await responders.ensureFresh();
    const ocsp = new OcspResponder({
      issuer: hierarchy.issuing,
      responders,
      certificates,
      clock,
      log,
      settings: { validitySeconds: config.ocspValiditySeconds, refreshAtFraction: 0.5, cacheSize: 100_000 },
    });
    const crls = new CrlService({
      issuer: hierarchy.issuing,
      certificates,
      crls: new CrlStore(db),
      clock,
      log,
      settings: {
        validitySeconds: config.crlValiditySeconds,
        retentionSeconds: config.crlRetentionSeconds,
        crlUrl: links.crlUrl,
        deltaCrlUrl: `${links.crlUrl}/delta`,
      },
      onGenerated: (kind, r) => {
        metrics.crlGenerated.inc({ kind });
        void audit.tryRecord({
          type: 'crlGenerated',
          actor: 'system',
          subject: `${kind}:${r.crlNumber}`,
          details: { kind, crlNumber: r.crlNumber, baseNumber: r.baseNumber, thisUpdate: r.thisUpdate, nextUpdate: r.nextUpdate, entries: r.entries },
        });
      },
    });
    await crls.init();
    return {
      config,
      clock,
      log,
      metrics,
      db,
      hsm,
      hierarchy,
      links,
      certificates,
      caStore,
      tokens,
      tokenStore,
      profiles,
      issuance,
      revocation,
      crls,
      responders,
      ocsp,
      audit,
      auditSigner,
      close: closeAll,
    };
  } catch (e) {
    await closeAll();
    throw e;
  }
}

/** At first init: HSMCA_ADMIN_TOKEN, or a generated token printed once and saved 0600. */
async function ensureFirstAdmin(config: Config, tokens: TokenService, store: TokenStore, announce: (l: string) => void): Promise<void> {
  if ((await store.count('admin')) > 0) return;
  if (config.adminToken) {
    await tokens.create({ role: 'admin', name: 'admin', token: config.adminToken, by: 'system' });
    return;
  }
  const { token } = await tokens.create({ role: 'admin', name: 'admin', by: 'system' });
  const file = path.join(config.dataDir, 'admin.token');
  fs.rmSync(file, { force: true });
  writeSecret(file, token);
  announce(`hsmca: generated the first admin token (shown once, also saved 0600 in ${file}):`);
  announce(token);
}

/** Token administration needs the database only: no HSM, no CA start-up. */
export async function openTokenAdmin(config: Config): Promise<{ tokens: TokenService; tokenStore: TokenStore; clock: Clock; close(): Promise<void> }> {
  prepareDataDir(config.dataDir);
  let db: Database;
  try {
    db = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir });
  } catch (e) {
    throw new StartupError(`HSMCA_DATABASE_URL: ${(e as Error).message}`);
  }
  const tokenStore = new TokenStore(db);
  const tokens = new TokenService({ store: tokenStore, clock: systemClock });
  const audit = new AuditLog({ db, clock: systemClock, log: createLogger(config.logLevel) });
  auditTokens(tokens, audit);
  return {
    tokens,
    tokenStore,
    clock: systemClock,
    close: async () => {
      await audit.close();
      await db.close();
    },
  };
}

/**
 * `hsmca audit verify` needs the database and the HSM's public keys (to check
 * checkpoint signatures): no CA start-up, no key generation, nothing written.
 */
export async function openAuditAdmin(config: Config): Promise<{ audit: AuditLog; close(): Promise<void> }> {
  if (config.hsm === 'soft' && !fs.existsSync(path.join(config.dataDir, 'soft-hsm.json'))) {
    throw new StartupError(`HSMCA_DATA_DIR: no CA has been initialised in ${config.dataDir}; run hsmca init first`);
  }
  const hsm = await openConfiguredHsm(config);
  let db: Database;
  try {
    db = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir });
  } catch (e) {
    await hsm.close().catch(() => undefined);
    throw new StartupError(`HSMCA_DATABASE_URL: ${(e as Error).message}`);
  }
  const audit = new AuditLog({ db, clock: systemClock, log: createLogger(config.logLevel), verifyKey: async (label) => (await hsm.getKey(label))?.publicKey });
  return {
    audit,
    close: async () => {
      await hsm.close().catch(() => undefined);
      await db.close();
    },
  };
}

export interface RunningService {
  core: Core;
  server: http.Server;
  url: string;
  /** graceful stop: no new connections, in-flight requests finish, then the database and HSM close */
  stop(): Promise<void>;
}

/**
 * The service's request listener: the two busiest paths (OCSP, issuance) on
 * the bare node:http request, everything else through Express.
 */
export function createRequestListener(core: Core): http.RequestListener {
  const { tokens, metrics } = core;
  const hooks: AuthHooks = {
    failed: (e) => {
      metrics.authFailures.inc();
      // never the presented token
      void core.audit.tryRecord({ type: 'authenticationFailed', actor: 'anonymous', details: { code: e.error.code, ip: e.ip ?? null, path: e.path.slice(0, 200) } });
    },
  };
  const anyRole = requireRole(tokens, ['admin', 'requester'], hooks);
  const adminOnly = requireRole(tokens, ['admin'], hooks);
  const json = jsonBody(core.config.maxBodyBytes);
  // Each worker process keeps its own buckets; connections are spread evenly over them.
  const issueLimit = new IssuanceRateLimit({
    perToken: Math.ceil(core.config.issueRatePerToken / core.config.workers),
    perAddress: Math.ceil(core.config.issueRatePerAddress / core.config.workers),
  });
  const app = createApp({
    metrics,
    log: core.log,
    routers: [
      caRoutes(core.hierarchy),
      crlRoutes(core.crls, adminOnly),
      certificateRoutes({
        issuance: core.issuance,
        revocation: core.revocation,
        store: core.certificates,
        anyRole,
        json,
        issueLimit: issueLimit.middleware(),
        requesterMayRevoke: scopeAllowsRevoke,
      }),
      tokenRoutes(core.tokens, adminOnly, json),
      auditRoutes(core.audit, adminOnly),
    ],
    health: async () => {
      let database = 'ok';
      try {
        await core.db.ping();
      } catch {
        database = 'down';
      }
      let hsm;
      try {
        hsm = await core.hsm.health();
      } catch {
        hsm = { status: 'down' as const, tokens: [] };
      }
      const ok = database === 'ok' && hsm.status !== 'down';
      const status = !ok ? 'unavailable' : hsm.status === 'degraded' ? 'degraded' : 'ok';
      return { ok, body: { status, database, hsm } };
    },
  });
  const ocsp = ocspHttpHandler(core.ocsp, metrics);
  const issue = issueHttpHandler({ issuance: core.issuance, tokens, limit: issueLimit, metrics, log: core.log, maxBodyBytes: core.config.maxBodyBytes, hooks });
  return (req, res) => {
    if (!ocsp(req, res) && !issue(req, res)) app(req, res);
  };
}

export async function startService(config: Config, opts: ServiceOptions = {}): Promise<RunningService> {
  const core = await openCore(config, opts);
  const background = startBackground(core, opts.role !== 'follower');
  const server = http.createServer({ requestTimeout: 30_000, headersTimeout: 15_000, maxHeaderSize: 16 * 1024 }, createRequestListener(core));
  server.keepAliveTimeout = 5_000;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => resolve());
    });
  } catch (e) {
    background.stop();
    await core.close();
    throw new StartupError(`HSMCA_PORT: cannot listen on ${config.host}:${config.port}: ${(e as Error).message}`);
  }
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `http://${host}:${addr.port}`;
  core.log.info('hsmca serving', { url, hsm: core.hsm.kind, database: core.db.kind });
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      background.stop();
      await background.finalCheckpoint();
      await core.close();
    })());
  return { core, server, url, stop };
}

/**
 * Background work of a serving CA: the CRL a few seconds after revocations
 * and at least every HSMCA_CRL_REFRESH_SECONDS; the OCSP responder certificate
 * renewed well before it expires.
 */
function startBackground(core: Core, leader: boolean): { stop(): void; finalCheckpoint(): Promise<void> } {
  const crl = new Debouncer(() => core.crls.refresh(), CRL_DEBOUNCE_MS, core.config.crlRefreshSeconds * 1000, core.log);
  if (leader) crl.start();
  core.revocation.onRevoked(() => crl.trigger());
  const timers: NodeJS.Timeout[] = [];
  const logFailure = (what: string) => (e: unknown) => core.log.error(`${what} failed`, { error: (e as Error)?.message ?? String(e) });
  const every = (ms: number, job: () => Promise<unknown>, what: string) => {
    const t = setInterval(() => job().catch(logFailure(what)), ms);
    t.unref();
    timers.push(t);
  };
  every(leader ? RESPONDER_CHECK_MS : 60_000, () => core.responders.ensureFresh(), 'OCSP responder renewal');
  // Several workers share one database: serve the newest CRL whoever made it.
  if (core.config.workers > 1) every(2000, () => core.crls.reload(), 'CRL reload');
  // The leader signs the audit log's head: now (what start-up recorded), every minute, and at shutdown.
  const signer = leader ? core.auditSigner : undefined;
  const checkpoint = (): Promise<void> => (signer ? core.audit.checkpoint(signer).catch(logFailure('audit checkpoint')) : Promise.resolve());
  if (signer) {
    void checkpoint();
    every(AUDIT_CHECKPOINT_MS, checkpoint, 'audit checkpoint');
  }
  return {
    stop() {
      crl.stop();
      for (const t of timers) clearInterval(t);
    },
    finalCheckpoint: checkpoint,
  };
}
