import * as fs from 'node:fs';
import * as path from 'node:path';
import { AuditLog } from '../audit/audit-log';
import { AUDIT_KEY_LABEL } from '../audit/events';
import type { Signer } from '../hsm/hsm';
import { TokenService } from '../auth/tokens';
import { Clock, systemClock } from '../clock';
import { Config } from '../config';
import { prepareDataDir } from '../data-folder';
import { StartupError } from '../errors';
import { openConfiguredHsm } from '../hsm/open';
import { createLogger } from '../log';
import { auditTokens } from '../service-events';
import { Database, openConfiguredDatabase } from '../storage/database';
import { TokenStore } from '../storage/token-store';
import { QuorumGate } from '../quorum/gate';
import { openQuorumGate } from '../quorum/open';

/** Token and quorum administration need the database only: no HSM, no CA start-up. */
export async function openTokenAdmin(config: Config): Promise<{ tokens: TokenService; tokenStore: TokenStore; clock: Clock; quorum: QuorumGate; close(): Promise<void> }> {
  prepareDataDir(config.dataDir);
  const db = await openConfiguredDatabase(config);
  const tokenStore = new TokenStore(db);
  const tokens = new TokenService({ store: tokenStore, clock: systemClock });
  const audit = new AuditLog({ db, clock: systemClock, log: createLogger(config.logLevel) });
  auditTokens(tokens, audit);
  return {
    tokens,
    tokenStore,
    clock: systemClock,
    quorum: openQuorumGate(config, { db, audit, clock: systemClock, tokens }),
    close: async () => {
      await audit.close();
      await db.close();
    },
  };
}

/**
 * `hsmca audit verify` needs the database and the HSM's public keys (to check
 * checkpoint signatures): no CA start-up, no key generation, nothing written.
 * `hsmca audit checkpoint` also signs with the audit key, when it exists.
 */
export async function openAuditAdmin(config: Config): Promise<{ audit: AuditLog; db: Database; signer?: Signer; close(): Promise<void> }> {
  if (config.hsm === 'soft' && !fs.existsSync(path.join(config.dataDir, 'soft-hsm.json'))) {
    throw new StartupError(`HSMCA_DATA_DIR: no CA has been initialised in ${config.dataDir}; run hsmca init first`);
  }
  const hsm = await openConfiguredHsm(config);
  let db: Database;
  try {
    db = await openConfiguredDatabase(config);
  } catch (e) {
    await hsm.close().catch(() => undefined);
    throw e;
  }
  const audit = new AuditLog({ db, clock: systemClock, log: createLogger(config.logLevel), verifyKey: async (label) => (await hsm.getKey(label))?.publicKey });
  const key = await hsm.getKey(AUDIT_KEY_LABEL).catch(() => undefined);
  return {
    audit,
    db,
    signer: key ? await hsm.signer(key.label) : undefined,
    close: async () => {
      await audit.close().catch(() => undefined);
      await hsm.close().catch(() => undefined);
      await db.close();
    },
  };
}
