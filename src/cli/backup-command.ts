import * as fs from 'node:fs';
import { checkBackupRequest, createBackup, restoreBackup } from '../backup/backup';
import { loadConfig } from '../config';
import { openCore } from '../core';
import { CaError } from '../errors';
import { createLogger } from '../log';
import { parseArgs } from './args';
import { reportOutcome } from './quorum-command';

export const BACKUP_USAGE = `  backup create --out FILE --shares N --threshold M
                                         one encrypted archive (database snapshot, HSM keys wrapped inside
                                         the HSM); prints N custodian shares once, any M restore it
                                         (under quorum when HSMCA_QUORUM > 1)
  backup restore --in FILE --share S [--share S ...]
                                         restore onto an empty data folder / database and a fresh HSM token`;

/** `hsmca backup ...` (docs/operations.md, "Backups under split custody"). */
export async function backupCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const out = (l: string) => process.stdout.write(l + '\n');
  switch (sub) {
    case 'create': {
      const { options: args } = parseArgs(rest, ['out', 'shares', 'threshold']);
      const req = checkBackupRequest(args);
      const core = await openCore(loadConfig(), { role: 'follower', announce: () => undefined });
      try {
        const outcome = await core.quorum.requireQuorum('backup.create', { ...req }, 'cli', () => createBackup(core, req, 'cli'));
        if (outcome.status === 'executed') {
          process.stderr.write(`hsmca: wrote ${req.out}; give each custodian one share below (shown only this once; any ${req.threshold} of ${req.shares} restore the backup):\n`);
        }
        reportOutcome(`backup to ${req.out}`, outcome);
      } finally {
        await core.close();
      }
      return 0;
    }
    case 'restore': {
      // --share repeats: take them all before the usual parsing
      const shares: string[] = [];
      const others: string[] = [];
      for (let i = 0; i < rest.length; i++) {
        if (rest[i] === '--share') {
          const v = rest[++i];
          if (v === undefined) throw new CaError('badRequest', 'usage', 'option --share needs a value');
          shares.push(v);
        } else if (rest[i].startsWith('--share=')) shares.push(rest[i].slice('--share='.length));
        else others.push(rest[i]);
      }
      const { options: args } = parseArgs(others, ['in']);
      if (!args.in || shares.length === 0) throw new CaError('badRequest', 'usage', 'usage: hsmca backup restore --in FILE --share S [--share S ...]');
      let file: Buffer;
      try {
        file = fs.readFileSync(args.in);
      } catch (e) {
        throw new CaError('badRequest', 'usage', `--in: cannot read ${args.in}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
      const config = loadConfig();
      const { header, certificates } = await restoreBackup(config, file, shares, createLogger(config.logLevel), 'cli');
      out(`hsmca: restored backup ${header.backupId} of ${header.createdAt}: ${header.keyLabels.length} keys, ${certificates} certificates; start hsmca serve`);
      return 0;
    }
    default:
      throw new CaError('badRequest', 'usage', 'usage: hsmca backup create|restore');
  }
}
