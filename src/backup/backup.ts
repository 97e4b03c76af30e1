import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AuditLog } from '../audit/audit-log';
import type { CaHierarchy } from '../ca/hierarchy';
import type { Clock } from '../clock';
import type { Config } from '../config';
import { prepareDataDir } from '../data-folder';
import { CaError } from '../errors';
import { Hsm, HsmError, WrappedKey, keyBackupOf } from '../hsm/hsm';
import { openConfiguredHsm } from '../hsm/open';
import type { Logger } from '../log';
import type { ExecutionResult, QuorumGate } from '../quorum/gate';
import { Database, openConfiguredDatabase } from '../storage/database';
import { ArchiveHeader, combineShares, deriveKeys, openArchive, readHeader, sealArchive, splitKey } from './archive';
import { DatabaseSnapshot, ensureEmpty, restorePostgres, sqliteFile, takeSnapshot } from './snapshot';

export interface BackupRequest {
  out: string;
  shares: number;
  threshold: number;
}

interface ArchiveBody {
  database: DatabaseSnapshot;
  keys: { label: string; algorithm: string; publicKey: string; id?: string; mechanism: string; wrapped: string }[];
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** --out, --shares and --threshold, checked before anything is asked of approvers or the HSM. */
export function checkBackupRequest(r: { out?: unknown; shares?: unknown; threshold?: unknown }): BackupRequest {
  const shares = Number(r.shares);
  const threshold = Number(r.threshold);
  if (!Number.isInteger(shares) || shares < 2 || shares > 255) throw new CaError('badRequest', 'usage', '--shares must be a whole number from 2 to 255');
  if (!Number.isInteger(threshold) || threshold < 2 || threshold > shares) throw new CaError('badRequest', 'usage', '--threshold must be a whole number from 2 to --shares');
  if (typeof r.out !== 'string' || !r.out) throw new CaError('badRequest', 'usage', '--out FILE is required');
  const out = path.resolve(r.out);
  if (fs.existsSync(out)) throw new CaError('conflict', 'backupExists', `${out} exists already; a backup never overwrites a file`);
  if (!fs.existsSync(path.dirname(out))) throw new CaError('badRequest', 'usage', `--out: no folder ${path.dirname(out)}`);
  return { out, shares, threshold };
}

/**
 * Writes one archive: the database snapshot, then every HSM key wrapped inside
 * the HSM under a key derived from a fresh 256-bit backup key, the whole body
 * encrypted with AES-256-GCM; the backup key is split into `shares` Shamir
 * shares (returned to be printed once each) and kept nowhere.
 */
export async function createBackup(
  d: { config: Config; db: Database; hsm: Hsm; audit: AuditLog; clock: Clock; hierarchy: CaHierarchy },
  req: BackupRequest,
  by: string,
): Promise<ExecutionResult> {
  const { out, shares, threshold } = checkBackupRequest(req);
  const kb = keyBackupOf(d.hsm);
  if (!kb) throw new CaError('unavailable', 'backupUnsupported', `this ${d.hsm.kind} HSM cannot wrap keys for a backup`);
  const backupKey = randomBytes(32);
  const backupId = randomBytes(8).toString('hex');
  const { bodyKey, wrapKey } = deriveKeys(backupKey, backupId);
  try {
    // the snapshot first: a key made after it (an OCSP responder renewal) is only one key more in the archive
    const database = await takeSnapshot(d.db, d.config);
    let keys: WrappedKey[];
    try {
      keys = await kb.wrapKeys(wrapKey);
    } catch (e) {
      if (e instanceof HsmError) throw new CaError('unavailable', 'hsmError', e.message);
      throw e;
    }
    const header: ArchiveHeader = {
      format: 'hsmca-backup',
      version: 1,
      backupId,
      createdAt: d.clock.now().toISOString(),
      shares,
      threshold,
      database: d.db.kind,
      hsm: d.hsm.kind,
      caName: d.config.caName,
      rootCertificateSha256: sha256(d.hierarchy.root.certificate),
      issuingCertificateSha256: sha256(d.hierarchy.issuing.certificate),
      keyLabels: keys.map((k) => k.label),
    };
    const body: ArchiveBody = {
      database,
      keys: keys.map((k) => ({ label: k.label, algorithm: k.algorithm, publicKey: k.publicKey.toString('base64'), id: k.id, mechanism: k.mechanism, wrapped: k.wrapped.toString('base64') })),
    };
    const archive = sealArchive(header, Buffer.from(JSON.stringify(body), 'utf8'), bodyKey);
    const tmp = `${out}.${process.pid}.tmp`;
    try {
      fs.writeFileSync(tmp, archive, { mode: 0o600, flag: 'wx' });
      fs.renameSync(tmp, out);
    } catch (e) {
      fs.rmSync(tmp, { force: true });
      throw new CaError('badRequest', 'backupWrite', `cannot write ${out}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const custodianShares = await splitKey(backupKey, backupId, shares, threshold);
    const record = { backupId, out, shares, threshold, keyLabels: header.keyLabels, database: d.db.kind, bytes: archive.length, archiveSha256: sha256(archive) };
    await d.audit.record({ type: 'backupCreated', actor: by, subject: backupId, details: record });
    return { record, reveal: { share: custodianShares } };
  } finally {
    backupKey.fill(0);
    bodyKey.fill(0);
    wrapKey.fill(0);
  }
}

/** `backup.create` runs under quorum: registered where the HSM is open (the service, hsmca quorum approve, hsmca backup). */
export function registerBackupExecutor(gate: QuorumGate, d: Parameters<typeof createBackup>[0]): void {
  gate.register('backup.create', (op, ctx) => createBackup(d, { out: String(op.out), shares: Number(op.shares), threshold: Number(op.threshold) }, ctx.requestedBy));
}

/**
 * Restores an archive with at least M custodian shares onto an empty data
 * folder and database and a fresh HSM (token): the keys are unwrapped inside
 * the HSM and checked against their public keys, then the database is put
 * back. Nothing is written before the shares have opened the archive.
 */
export async function restoreBackup(config: Config, file: Buffer, shares: string[], log: Logger, by: string): Promise<{ header: ArchiveHeader; certificates: number }> {
  const { header } = readHeader(file);
  const dbKind = config.databaseUrl && /^postgres/.test(config.databaseUrl) ? 'postgres' : 'sqlite';
  if (header.database !== dbKind) throw new CaError('conflict', 'backupMismatch', `the backup holds a ${header.database} database; HSMCA_DATABASE_URL names ${dbKind}`);
  const backupKey = await combineShares(shares, header);
  const { bodyKey, wrapKey } = deriveKeys(backupKey, header.backupId);
  backupKey.fill(0);
  const body = JSON.parse(openArchive(file, bodyKey).toString('utf8')) as ArchiveBody;
  bodyKey.fill(0);

  prepareDataDir(config.dataDir);
  const storePath = path.join(config.dataDir, 'soft-hsm.json');
  const pinPath = path.join(config.dataDir, 'hsm.pin');
  if (config.hsm === 'soft' && fs.existsSync(storePath)) throw new CaError('conflict', 'targetNotEmpty', `${config.dataDir} already holds a software HSM; restore onto an empty data folder`);
  const dbFile = sqliteFile(config);
  if (dbKind === 'sqlite' && fs.existsSync(dbFile)) throw new CaError('conflict', 'targetNotEmpty', `${dbFile} exists; restore onto an empty data folder`);
  let pg: Database | undefined;
  if (dbKind === 'postgres') {
    pg = await openConfiguredDatabase(config);
    try {
      await ensureEmpty(pg);
    } catch (e) {
      await pg.close();
      throw e;
    }
  }
  const hadPin = fs.existsSync(pinPath);
  let hsm: Hsm | undefined;
  let keysRestored = false;
  try {
    hsm = await openConfiguredHsm(config);
    const present = new Set((await hsm.listKeys()).map((k) => k.label));
    const clash = body.keys.filter((k) => present.has(k.label)).map((k) => k.label);
    if (clash.length) throw new CaError('conflict', 'targetNotEmpty', `the HSM already holds key(s) ${clash.join(', ')}; restore onto a fresh token`);
    const kb = keyBackupOf(hsm);
    if (!kb) throw new CaError('unavailable', 'backupUnsupported', `this ${hsm.kind} HSM cannot unwrap a backup's keys`);
    try {
      await kb.unwrapKeys(
        wrapKey,
        body.keys.map((k) => ({ label: k.label, algorithm: k.algorithm as WrappedKey['algorithm'], publicKey: Buffer.from(k.publicKey, 'base64'), id: k.id, mechanism: 'aes-kwp', wrapped: Buffer.from(k.wrapped, 'base64') })),
      );
    } catch (e) {
      if (e instanceof HsmError) throw new CaError('unavailable', 'hsmError', e.message);
      throw e;
    }
    keysRestored = true;
    let db: Database;
    if (body.database.kind === 'sqlite') {
      const tmp = `${dbFile}.${process.pid}.restore`;
      fs.writeFileSync(tmp, Buffer.from(body.database.file, 'base64'), { mode: 0o600, flag: 'wx' });
      fs.renameSync(tmp, dbFile);
      db = await openConfiguredDatabase(config);
    } else {
      await restorePostgres(pg!, body.database);
      db = pg!;
      pg = undefined;
    }
    try {
      const certificates = Number((await db.knex('certificates').count({ n: '*' }).first())?.n ?? 0);
      const audit = new AuditLog({ db, clock: { now: () => new Date() }, log });
      await audit.record({ type: 'backupRestored', actor: by, subject: header.backupId, details: { createdAt: header.createdAt, keyLabels: header.keyLabels, certificates, database: header.database, hsm: hsm.kind } });
      await audit.close();
      return { header, certificates };
    } finally {
      await db.close();
    }
  } catch (e) {
    // no half-restored CA: what this restore wrote to the data folder goes again
    if (config.hsm === 'soft') {
      await hsm?.close().catch(() => undefined);
      hsm = undefined;
      fs.rmSync(storePath, { force: true });
      if (!hadPin) fs.rmSync(pinPath, { force: true });
    } else if (keysRestored) {
      log.error('backup restore failed after the keys were unwrapped onto the token; delete them before trying again', { labels: header.keyLabels });
    }
    if (dbKind === 'sqlite') for (const f of [dbFile, `${dbFile}-wal`, `${dbFile}-shm`]) fs.rmSync(f, { force: true });
    throw e;
  } finally {
    wrapKey.fill(0);
    await hsm?.close().catch(() => undefined);
    await pg?.close().catch(() => undefined);
  }
}
