import * as fs from 'node:fs';
import { loadConfig } from '../config';
import { openCore } from '../core';
import { CaError } from '../errors';
import { approvalMessage, signApproval } from '../quorum/approver-keys';
import type { ExecutionResult, GateOutcome, QuorumRequestView } from '../quorum/gate';
import { openTokenAdmin } from './admin-openers';
import { parseArgs } from './args';

export const QUORUM_USAGE = `  quorum approver add --name NAME --key PUBFILE
                                         register an approver's P-256 or Ed25519 public key (PEM)
  quorum approver list | remove NAME     list approvers, remove one (under quorum)
  quorum set-threshold M                 change M, the approvals a gated operation needs (under quorum)
  quorum list [--state S]                quorum requests, newest first
  quorum show ID [--signing-input]       one request; --signing-input writes the exact bytes to sign
  quorum approve ID --key PRIVFILE       sign request ID with an approver's private key; the M-th runs it`;

function readFile(option: string, file: string | undefined): Buffer {
  if (!file) throw new CaError('badRequest', 'usage', `--${option} FILE is required`);
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw new CaError('badRequest', 'usage', `--${option}: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

const out = (l: string) => process.stdout.write(l + '\n');

function printRequest(r: QuorumRequestView): void {
  out(`request ${r.id}: ${r.kind}, ${r.state}, ${r.approvals.length} of ${r.threshold} approvals`);
  out(`  requested by ${r.requestedBy} at ${r.createdAt}, expires ${r.expiresAt}`);
  for (const a of r.approvals) out(`  approved by ${a.approver} at ${a.approvedAt}`);
  out(`  operation ${JSON.stringify(r.operation)}`);
  if (r.result !== null) out(`  result ${JSON.stringify(r.result)}`);
}

/** Prints what a gated operation did: at once, or the request it now waits on. */
export function reportOutcome(what: string, o: GateOutcome): void {
  if (o.status === 'pending') {
    out(`hsmca: ${what} waits for quorum request ${o.request.id} (${o.request.threshold} approvals, until ${o.request.expiresAt})`);
    out(`hsmca: each approver runs: hsmca quorum approve ${o.request.id} --key THEIR-KEY.pem`);
  } else {
    out(`hsmca: ${what}: done`);
    printExecuted(o.result);
  }
}

/** The executed operation's record, and what it reveals once (a backup's shares) one per line. */
export function printExecuted(r: ExecutionResult): void {
  if (r.record) out(`hsmca: result ${JSON.stringify(r.record)}`);
  for (const [k, v] of Object.entries(r.reveal ?? {})) {
    if (Array.isArray(v)) v.forEach((x, i) => out(`${k} ${i + 1}: ${x}`));
    else out(`${k}: ${String(v)}`);
  }
}

/** `hsmca quorum ...`: approvers, M, requests and approvals (docs/hsm.md, "Quorum ceremonies"). */
export async function quorumCommand(argv: string[]): Promise<number> {
  const [sub, ...rest0] = argv;
  if (sub === 'approve') return approve(rest0);
  const config = loadConfig();
  const admin = await openTokenAdmin(config);
  const gate = admin.quorum;
  try {
    if (sub === 'approver') {
      const [op, ...rest] = rest0;
      const { options: args, positional } = parseArgs(rest, ['name', 'key']);
      switch (op) {
        case 'add': {
          if (!args.name) throw new CaError('badRequest', 'usage', 'usage: hsmca quorum approver add --name NAME --key PUBFILE');
          reportOutcome(`adding approver ${args.name}`, await gate.addApprover(args.name, readFile('key', args.key), 'cli'));
          return 0;
        }
        case 'list': {
          for (const a of await gate.listApprovers()) out(`${a.id}  ${a.algorithm.padEnd(10)}  ${a.fingerprint}  ${a.createdAt.toISOString()}  ${a.name}`);
          out(`quorum: ${await gate.threshold()} approvals`);
          return 0;
        }
        case 'remove': {
          const name = positional[0];
          if (!name) throw new CaError('badRequest', 'usage', 'usage: hsmca quorum approver remove NAME');
          reportOutcome(`removing approver ${name}`, await gate.removeApprover(name, 'cli'));
          return 0;
        }
        default:
          throw new CaError('badRequest', 'usage', 'usage: hsmca quorum approver add|list|remove');
      }
    }
    const { options: args, positional } = parseArgs(rest0, ['state'], ['signing-input']);
    switch (sub) {
      case 'set-threshold': {
        const m = Number(positional[0]);
        if (!positional[0] || !/^\d+$/.test(positional[0])) throw new CaError('badRequest', 'usage', 'usage: hsmca quorum set-threshold M');
        reportOutcome(`setting the quorum to ${m}`, await gate.setThreshold(m, 'cli'));
        return 0;
      }
      case 'list': {
        for (const r of await gate.list({ state: args.state })) out(`${r.id}  ${r.state.padEnd(9)}  ${r.approvals.length}/${r.threshold}  ${r.createdAt}  ${r.kind}  by ${r.requestedBy}`);
        return 0;
      }
      case 'show': {
        const id = positional[0];
        if (!id) throw new CaError('badRequest', 'usage', 'usage: hsmca quorum show ID [--signing-input]');
        const r = await gate.get(id);
        if (args['signing-input']) process.stdout.write(approvalMessage(r.id, r.description));
        else printRequest(r);
        return 0;
      }
      default:
        throw new CaError('badRequest', 'usage', `usage: hsmca quorum approver|set-threshold|list|show|approve`);
    }
  } finally {
    await admin.close();
  }
}

/**
 * Signs the request with the approver's key here, on the approver's side, and
 * records the approval; the M-th runs the operation in this process, which
 * therefore opens the whole CA (the HSM too: a backup is made here).
 */
async function approve(argv: string[]): Promise<number> {
  const { options: args, positional } = parseArgs(argv, ['key', 'approver']);
  const id = positional[0];
  if (!id || !args.key) throw new CaError('badRequest', 'usage', 'usage: hsmca quorum approve ID --key PRIVFILE');
  const pem = readFile('key', args.key).toString('utf8');
  // 'single', like `hsmca ca rotate`: an operation run here (a rotation) readies what it makes (the new issuer's OCSP responder certificate)
  const core = await openCore(loadConfig(), { role: 'single', announce: () => undefined });
  try {
    const r = await core.quorum.get(id);
    const { signature, publicKey } = signApproval(pem, approvalMessage(r.id, r.description));
    const res = await core.quorum.approve(id, signature, { approver: args.approver, by: `cli:${publicKey.fingerprint.slice(0, 16)}` });
    out(`hsmca: approved quorum request ${id} (${res.request.approvals.length} of ${res.request.threshold})`);
    if (res.executed) {
      out(`hsmca: ${res.request.kind} ran`);
      printExecuted(res.executed);
    } else if (res.request.state === 'executed') out(`hsmca: ${res.request.kind} had run already`);
    return 0;
  } finally {
    await core.close();
  }
}
