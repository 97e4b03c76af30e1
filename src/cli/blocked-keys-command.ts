import * as fs from 'node:fs';
import { AuditLog } from '../audit/audit-log';
import { BlockKeyRequest, BlockedKeyService } from '../ca/goodkey/blocked-keys';
import { systemClock } from '../clock';
import { Config, loadConfig } from '../config';
import { prepareDataDir } from '../data-folder';
import { CaError } from '../errors';
import { createLogger } from '../log';
import { recordBlockedKeys } from '../service-events';
import { BlockedKeyStore } from '../storage/blocked-key-store';
import { openConfiguredDatabase } from '../storage/database';
import { parseArgs } from './args';

export const BLOCKED_KEYS_USAGE = `  blocked-keys add --public-key FILE | --certificate FILE | --spki-sha256 HEX [--comment C]
                                         block a public key: no certificate is issued for it again
  blocked-keys list                      list blocked keys, newest first`;

/** Blocked-key administration needs the database only (and the audit log): no HSM, no CA start-up. */
async function openBlockedKeyAdmin(config: Config): Promise<{ blockedKeys: BlockedKeyService; close(): Promise<void> }> {
  prepareDataDir(config.dataDir);
  const db = await openConfiguredDatabase(config);
  const audit = new AuditLog({ db, clock: systemClock, log: createLogger(config.logLevel) });
  const blockedKeys = new BlockedKeyService({ store: new BlockedKeyStore(db), clock: systemClock });
  recordBlockedKeys(blockedKeys, audit);
  return {
    blockedKeys,
    close: async () => {
      await audit.close();
      await db.close();
    },
  };
}

function readFile(option: string, file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new CaError('badRequest', 'usage', `--${option}: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** `hsmca blocked-keys add|list`: the CLI side of /api/v1/blocked-keys. */
export async function blockedKeysCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const { options: args, positional } = parseArgs(rest, ['public-key', 'certificate', 'spki-sha256', 'comment']);
  if ((sub !== 'add' && sub !== 'list') || positional.length) throw new CaError('badRequest', 'usage', `usage:\n${BLOCKED_KEYS_USAGE}`);
  const out = (l: string) => process.stdout.write(l + '\n');
  const admin = await openBlockedKeyAdmin(loadConfig());
  try {
    if (sub === 'add') {
      const req: BlockKeyRequest = { comment: args.comment };
      if (args['public-key'] !== undefined) req.publicKey = readFile('public-key', args['public-key']);
      if (args.certificate !== undefined) req.certificate = readFile('certificate', args.certificate);
      if (args['spki-sha256'] !== undefined) req.spkiSha256 = args['spki-sha256'];
      const { record, created } = await admin.blockedKeys.add(req, 'cli');
      out(`hsmca: ${created ? 'blocked' : 'already blocked'} key ${record.spkiSha256}`);
      return 0;
    }
    let afterId: number | undefined;
    for (;;) {
      const page = await admin.blockedKeys.list({ limit: 500, afterId });
      for (const b of page.items) {
        const origin = b.source === 'keyCompromise' ? `keyCompromise ${b.serial}` : 'admin';
        out(`${b.spkiSha256}  ${b.addedAt.toISOString()}  ${origin}  ${b.addedBy ?? ''}${b.comment ? `  ${JSON.stringify(b.comment)}` : ''}`);
      }
      if (!page.more) return 0;
      afterId = page.lastId;
    }
  } finally {
    await admin.close();
  }
}
