import * as os from 'node:os';
import { renewRootUnderQuorum, rotateUnderQuorum } from '../quorum/ca-operations';
import type { QuorumRequestView } from '../quorum/gate';
import { loadConfig } from '../config';
import { openCore } from '../core';
import { CaError } from '../errors';

export const CA_USAGE = `  ca list                                the issuing CAs (active, previous), roots and cross-certificates
  ca rotate                              a new issuing CA key in the HSM, signed by the active root, made active;
                                         the previous issuer keeps answering OCSP and CRLs (docs/operations.md)
  ca renew-root                          a new root CA key and certificate, cross-certified both ways with the
                                         active root; the next rotation's issuing CA is signed by it`;

/**
 * `hsmca ca ...`: the CA's issuers and the ceremonies that change them. Runs
 * beside a serving CA (same data folder or database and HSM): the serving
 * processes adopt a rotation within seconds. Prints JSON on stdout.
 */
export async function caCommand(argv: string[]): Promise<number> {
  const [sub] = argv;
  if (sub !== 'list' && sub !== 'rotate' && sub !== 'renew-root') {
    throw new CaError('badRequest', 'usage', `usage: hsmca ca list | rotate | renew-root`);
  }
  // A follower: it adopts what the serving leader makes (OCSP responder certificates) and never races it.
  const core = await openCore(loadConfig(), { role: sub === 'list' ? 'follower' : 'single', announce: (l) => process.stderr.write(l + '\n') });
  try {
    const by = `cli:${os.userInfo().username}`;
    if (sub === 'rotate') {
      const o = await rotateUnderQuorum(core, by);
      if (o.status === 'pending') return pending(o.request);
      const r = o.result;
      process.stderr.write(`hsmca: issuing CA ${r.issuer.id} is active (previous: ${r.previousIssuerId}); serving processes adopt it within seconds\n`);
      process.stdout.write(JSON.stringify(r, null, 2) + '\n');
    } else if (sub === 'renew-root') {
      const o = await renewRootUnderQuorum(core, by);
      if (o.status === 'pending') return pending(o.request);
      const r = o.result;
      process.stderr.write(`hsmca: root CA ${r.rootId} is active (previous: ${r.previousRootId}); distribute it and the cross-certificates (docs/operations.md)\n`);
      process.stdout.write(JSON.stringify(r, null, 2) + '\n');
    } else {
      const issuers = core.issuers;
      process.stdout.write(
        JSON.stringify(
          {
            issuers: issuers.all().map((i) => issuers.describe(i)),
            roots: issuers.roots().map((r) => ({ id: r.id, status: r.status, keyLabel: r.keyLabel, createdAt: r.createdAt.toISOString() })),
            crossCertificates: issuers.crosses().map((c) => ({ id: c.id, subjectRootId: c.subjectRootId, issuerRootId: c.issuerRootId })),
          },
          null,
          2,
        ) + '\n',
      );
    }
    return 0;
  } finally {
    await core.close();
  }
}

/** HSMCA_QUORUM > 1: the ceremony waits for approvals; it runs where the M-th is given. */
function pending(q: QuorumRequestView): number {
  process.stderr.write(`hsmca: ${q.kind} waits for ${q.threshold} approvals: hsmca quorum approve ${q.id} --key PRIVFILE (expires ${q.expiresAt})\n`);
  process.stdout.write(JSON.stringify({ quorumRequest: q }, null, 2) + '\n');
  return 0;
}
