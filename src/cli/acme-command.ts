import { randomBytes } from 'node:crypto';
import { AuditLog } from '../audit/audit-log';
import { systemClock } from '../clock';
import { loadConfig } from '../config';
import { prepareDataDir } from '../data-folder';
import { CaError } from '../errors';
import { createLogger } from '../log';
import { AcmeStore } from '../storage/acme-store';
import { openConfiguredDatabase } from '../storage/database';
import { TokenStore } from '../storage/token-store';
import { parseArgs } from './args';

export const ACME_USAGE = `  acme eab create --token NAME|ID       an External Account Binding key for ACME clients, bound to a
                                         requester token: prints "KEY_ID HMAC_KEY" (base64url) once`;

/**
 * `hsmca acme eab create --token NAME`: RFC 8555 7.3.4 binding credentials.
 * The account an ACME client creates with them acts as that requester token
 * (its scope, profiles, validity and rate limits). Each key binds one account.
 */
export async function acmeCommand(argv: string[]): Promise<number> {
  const [group, sub, ...rest] = argv;
  const { options, positional } = parseArgs(rest, ['token']);
  if (group !== 'eab' || sub !== 'create' || positional.length || !options.token) throw new CaError('badRequest', 'usage', `usage:\n${ACME_USAGE}`);
  const config = loadConfig();
  prepareDataDir(config.dataDir);
  const db = await openConfiguredDatabase(config);
  const audit = new AuditLog({ db, clock: systemClock, log: createLogger(config.logLevel) });
  try {
    const now = systemClock.now();
    const live = (await new TokenStore(db).list()).filter((t) => !t.revokedAt && (!t.expiresAt || t.expiresAt > now));
    const byId = live.filter((t) => t.id === options.token);
    const matches = byId.length ? byId : live.filter((t) => t.name === options.token);
    if (matches.length === 0) throw new CaError('notFound', 'tokenNotFound', `no live token named or with id "${options.token}"`);
    if (matches.length > 1) throw new CaError('conflict', 'ambiguousToken', `several live tokens are named "${options.token}"; give its id (hsmca token list)`);
    const token = matches[0];
    if (token.role !== 'requester') throw new CaError('badRequest', 'usage', 'External Account Binding binds ACME accounts to a requester token, not an admin token');
    const kid = randomBytes(16).toString('base64url');
    const hmacKey = randomBytes(32).toString('base64url');
    await new AcmeStore(db).addEabKey({ kid, hmacKey, tokenId: token.id, createdAt: now, accountId: null });
    await audit.tryRecord({ type: 'acmeEabKeyCreated', actor: 'cli', subject: kid, details: { tokenId: token.id, tokenName: token.name } });
    process.stderr.write(`hsmca: created an ACME external account key for token "${token.name}" (id ${token.id}); key id and HMAC key are shown only this once:\n`);
    process.stdout.write(`${kid} ${hmacKey}\n`);
    return 0;
  } finally {
    await audit.close();
    await db.close();
  }
}
