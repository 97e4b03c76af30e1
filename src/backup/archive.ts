import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { combine, split } from 'shamir-secret-sharing';
import { CaError } from '../errors';

/**
 * The backup archive: one file, `hsmca-backup v1` and a JSON header on two
 * lines (readable without any share: what, when, of which CA, how many shares
 * restore it), then the body encrypted with AES-256-GCM (12-byte IV, 16-byte
 * tag, the header as additional data). The body key and the key the HSM wraps
 * the CA keys under are derived by HKDF-SHA256 from one random 256-bit backup
 * key, which is split by Shamir's secret sharing for custodians and is stored
 * nowhere.
 */
export const MAGIC = 'hsmca-backup v1';

export interface ArchiveHeader {
  format: 'hsmca-backup';
  version: 1;
  /** random, hex; every share names it */
  backupId: string;
  createdAt: string;
  shares: number;
  threshold: number;
  database: 'sqlite' | 'postgres';
  hsm: 'soft' | 'pkcs11';
  caName: string;
  rootCertificateSha256: string;
  issuingCertificateSha256: string;
  keyLabels: string[];
}

export function deriveKeys(backupKey: Buffer, backupId: string): { bodyKey: Buffer; wrapKey: Buffer } {
  const salt = Buffer.from(backupId, 'hex');
  return {
    bodyKey: Buffer.from(hkdfSync('sha256', backupKey, salt, 'hsmca backup body v1', 32)),
    wrapKey: Buffer.from(hkdfSync('sha256', backupKey, salt, 'hsmca backup key wrap v1', 32)),
  };
}

export function sealArchive(header: ArchiveHeader, body: Buffer, bodyKey: Buffer): Buffer {
  const head = Buffer.from(`${MAGIC}\n${JSON.stringify(header)}\n`, 'utf8');
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', bodyKey, iv);
  c.setAAD(head);
  const ct = Buffer.concat([c.update(body), c.final()]);
  return Buffer.concat([head, iv, c.getAuthTag(), ct]);
}

/** The header alone (no share needed); throws a clear error for anything that is not an hsmca backup. */
export function readHeader(file: Buffer): { header: ArchiveHeader; headBytes: number } {
  const first = file.indexOf(0x0a);
  const second = first < 0 ? -1 : file.indexOf(0x0a, first + 1);
  if (first < 0 || second < 0 || file.subarray(0, first).toString('utf8') !== MAGIC) {
    throw new CaError('badRequest', 'invalidBackup', 'the file is not an hsmca backup archive');
  }
  let header: ArchiveHeader;
  try {
    header = JSON.parse(file.subarray(first + 1, second).toString('utf8'));
  } catch {
    throw new CaError('badRequest', 'invalidBackup', 'the backup archive\'s header is damaged');
  }
  if (header.format !== 'hsmca-backup' || header.version !== 1 || !/^[0-9a-f]{16}$/.test(String(header.backupId))) {
    throw new CaError('badRequest', 'invalidBackup', 'the backup archive has an unknown format or version');
  }
  return { header, headBytes: second + 1 };
}

export function openArchive(file: Buffer, bodyKey: Buffer): Buffer {
  const { headBytes } = readHeader(file);
  const iv = file.subarray(headBytes, headBytes + 12);
  const tag = file.subarray(headBytes + 12, headBytes + 28);
  const d = createDecipheriv('aes-256-gcm', bodyKey, iv);
  d.setAAD(file.subarray(0, headBytes));
  d.setAuthTag(tag);
  try {
    return Buffer.concat([d.update(file.subarray(headBytes + 28)), d.final()]);
  } catch {
    throw new CaError('forbidden', 'sharesDoNotMatch', 'the shares do not reconstruct this backup\'s key (too few shares, a mistyped share, or a changed archive)');
  }
}

const SHARE = /^hsmca-share-([0-9a-f]{16})-([0-9a-f]{4,600})$/;

/** Splits the backup key into `shares` custodian shares, any `threshold` of which restore it. */
export async function splitKey(backupKey: Buffer, backupId: string, shares: number, threshold: number): Promise<string[]> {
  const parts = await split(new Uint8Array(backupKey), shares, threshold);
  return parts.map((p) => `hsmca-share-${backupId}-${Buffer.from(p).toString('hex')}`);
}

/** The backup key from custodian shares: they must belong to this backup, be distinct and at least `threshold`. */
export async function combineShares(shares: string[], header: ArchiveHeader): Promise<Buffer> {
  const parsed = new Map<string, Buffer>();
  for (const s of shares) {
    const m = SHARE.exec(s.trim());
    if (!m) throw new CaError('badRequest', 'invalidShare', `"${s.trim().slice(0, 24)}..." is not an hsmca backup share (hsmca-share-ID-HEX)`);
    if (m[1] !== header.backupId) throw new CaError('badRequest', 'invalidShare', `a share belongs to backup ${m[1]}, not to this archive's ${header.backupId}`);
    parsed.set(m[2], Buffer.from(m[2], 'hex'));
  }
  if (parsed.size < header.threshold) {
    throw new CaError('forbidden', 'notEnoughShares', `this backup needs ${header.threshold} distinct shares of ${header.shares}; ${parsed.size} given`);
  }
  try {
    return Buffer.from(await combine([...parsed.values()].map((b) => new Uint8Array(b))));
  } catch (e) {
    throw new CaError('badRequest', 'invalidShare', `the shares cannot be combined: ${(e as Error).message}`);
  }
}
