import * as fs from 'node:fs';
import { AuditAnchor, newestAnchor, parseAnchor } from '../audit/anchor';
import type { AuditVerifyResult } from '../audit/verify';
import { loadConfig } from '../config';
import { CaError } from '../errors';
import { openAuditAdmin } from './admin-openers';
import { parseArgs } from './args';

export const AUDIT_USAGE = `  audit verify [--anchor FILE]           check the audit log's hash chain and signed checkpoints, and
                                         report the newest signed checkpoint; with an anchor exported
                                         before, also that the log was not cut back or rewritten after it;
                                         exit 1 naming the first bad event
  audit checkpoint [--export FILE]       sign the log's head now with the HSM audit key; --export writes
                                         it as an anchor (JSON) to keep outside the database`;

const usage = () => new CaError('badRequest', 'usage', 'usage: hsmca audit verify [--anchor FILE] | hsmca audit checkpoint [--export FILE]');

/** `hsmca audit verify|checkpoint` (docs/security.md: what verification proves, with and without an anchor). */
export async function auditCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const { options, positional } = parseArgs(rest, ['anchor', 'export']);
  if (positional.length > 0) throw usage();
  if (sub === 'verify' && options.export === undefined) return verify(options.anchor);
  if (sub === 'checkpoint' && options.anchor === undefined) return checkpoint(options.export);
  throw usage();
}

function readAnchor(file: string): AuditAnchor {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new CaError('badRequest', 'invalidAnchor', `cannot read the anchor ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return parseAnchor(text);
}

function report(r: AuditVerifyResult): string {
  if (!r.ok) return `audit chain BROKEN at event ${r.firstBadSeq} (${r.problem}): ${r.message}`;
  const cp = r.newestCheckpoint;
  const newest = cp ? `event ${cp.seq} at ${cp.signedAt ?? 'an unsigned time (v1)'}` : 'none';
  const anchor = r.anchor ? `; matches the anchor at event ${r.anchor.seq}` : '';
  return `audit chain OK: ${r.events} events, ${r.checkpoints} checkpoints; newest signed checkpoint: ${newest}${anchor}`;
}

async function verify(anchorFile: string | undefined): Promise<number> {
  const anchor = anchorFile === undefined ? undefined : readAnchor(anchorFile);
  const admin = await openAuditAdmin(loadConfig());
  try {
    const r = await admin.audit.verify({ anchor });
    process.stdout.write(report(r) + '\n');
    return r.ok ? 0 : 1;
  } finally {
    await admin.close();
  }
}

/** Signs a checkpoint now; the anchor is exported only from a log that verifies (an anchor of a broken log would vouch for it). */
async function checkpoint(exportFile: string | undefined): Promise<number> {
  const admin = await openAuditAdmin(loadConfig());
  try {
    if (!admin.signer) throw new CaError('unavailable', 'hsmError', 'the HSM holds no audit key (hsmca-audit): start the CA once to create it');
    await admin.audit.checkpoint(admin.signer);
    const r = await admin.audit.verify();
    if (!r.ok) {
      process.stdout.write(report(r) + '\n');
      return 1;
    }
    const anchor = await newestAnchor(admin.db);
    if (!anchor) throw new CaError('internal', 'internalError', 'no signed checkpoint after signing one');
    if (exportFile !== undefined) {
      fs.writeFileSync(exportFile, JSON.stringify(anchor, null, 2) + '\n', { mode: 0o644 });
      process.stdout.write(`hsmca: signed checkpoint at event ${anchor.seq} (${anchor.time}); anchor written to ${exportFile}\n`);
    } else {
      process.stdout.write(`hsmca: signed checkpoint at event ${anchor.seq} (${anchor.time})\n`);
    }
    return 0;
  } finally {
    await admin.close();
  }
}
