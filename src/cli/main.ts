import cluster from 'node:cluster';
import { Config, loadConfig } from '../config';
import { ConfigError, StartupError, CaError } from '../errors';
import { openCore } from '../core';
import { openConfiguredHsm } from '../hsm/open';
import { startService } from '../service';
import { ServerTls } from '../tls/server-tls';
import { openTokenAdmin } from './admin-openers';
import { AUDIT_USAGE, auditCommand } from './audit-command';
import { isKeyAlgorithm, KEY_ALGORITHMS } from '../hsm/key-algorithm';
import type { Pkcs11Hsm } from '../hsm/pkcs11/pkcs11-hsm';
import { parseArgs } from './args';
import { BLOCKED_KEYS_USAGE, blockedKeysCommand } from './blocked-keys-command';
import { ACME_USAGE, acmeCommand } from './acme-command';
import { CA_USAGE, caCommand } from './ca-command';
import { createTokenUnderQuorum, revokeTokenUnderQuorum } from '../quorum/token-operations';
import { QUORUM_USAGE, quorumCommand } from './quorum-command';
import { BACKUP_USAGE, backupCommand } from './backup-command';

const USAGE = `usage: hsmca <command>

  serve                                  initialise on first start, then serve the CA
  init                                   initialise the data folder, database, HSM keys and CA certificates
  token create --role ROLE --name NAME [--expires-days N] [--names P,P] [--profiles P,P]
               [--max-validity-days N] [--can-revoke] [--subject-attributes 'O=Example Corp;OU=*']
                                         create a bearer token (admin or requester), printed once;
                                         a requester token can be limited to name patterns
                                         (*.svc.internal, 10.0.0.0/8), profiles and a validity
  token list                             list tokens (never the tokens themselves)
  token revoke ID                        revoke a token
  hsm list                               tokens, keys, their security attributes, health
  hsm keygen --label L [--algorithm A]   generate a key pair inside the HSM
  hsm add-token LABEL                    clone the CA keys to a new token of the PKCS#11 cluster
${AUDIT_USAGE}
${BLOCKED_KEYS_USAGE}
${ACME_USAGE}
${CA_USAGE}
${QUORUM_USAGE}
${BACKUP_USAGE}

Settings come from the environment: see docs/configuration.md.`;

/** One clear line for an error a user can act on, and an exit code. */
function fail(e: unknown): number {
  if (e instanceof ConfigError || e instanceof StartupError || e instanceof CaError) {
    process.stderr.write(`hsmca: ${e.message}\n`);
    return 1;
  }
  process.stderr.write(`hsmca: unexpected error: ${(e as Error)?.message ?? String(e)}\n`);
  return 1;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'serve':
        return await serve();
      case 'init': {
        const core = await openCore(loadConfig());
        process.stdout.write(`hsmca: initialised (${core.hsm.kind} HSM, ${core.db.kind} database, ${core.hierarchy.issuing.signer.algorithm} CA keys)\n`);
        if (core.auditSigner) await core.audit.checkpoint(core.auditSigner);
        await core.close();
        return 0;
      }
      case 'token':
        return await token(rest);
      case 'audit':
        return await auditCommand(rest);
      case 'hsm':
        return await hsmCommand(rest);
      case 'blocked-keys':
        return await blockedKeysCommand(rest);
      case 'acme':
        return await acmeCommand(rest);
      case 'ca':
        return await caCommand(rest);
      case 'quorum':
        return await quorumCommand(rest);
      case 'backup':
        return await backupCommand(rest);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE + '\n');
        return cmd === undefined ? 2 : 0;
      default:
        process.stderr.write(`hsmca: unknown command "${cmd}"\n${USAGE}\n`);
        return 2;
    }
  } catch (e) {
    return fail(e);
  }
}

/** --subject-attributes 'O=Example Corp;OU=*': attribute=value pairs separated by ';' (one attribute may repeat). */
function subjectAttributesArg(text: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const pair of text.split(';').map((p) => p.trim()).filter(Boolean)) {
    const eq = pair.indexOf('=');
    if (eq < 1) throw new CaError('badRequest', 'invalidScope', `--subject-attributes: "${pair.slice(0, 40)}" is not ATTRIBUTE=value`);
    (out[pair.slice(0, eq).trim()] ??= []).push(pair.slice(eq + 1).trim());
  }
  return out;
}

async function serve(): Promise<number> {
  const config = loadConfig();
  if (config.workers > 1) return serveCluster(config);
  const svc = await startService(config);
  process.stdout.write(`hsmca: serving on ${svc.url}\n`);
  if (svc.httpsUrl) process.stdout.write(`hsmca: serving HTTPS on ${svc.httpsUrl}\n`);
  await untilSignal((sig) => {
    svc.core.log.info('shutting down', { signal: sig });
    return svc.stop();
  });
  return 0;
}

function untilSignal(onSignal: (sig: string) => Promise<void>): Promise<void> {
  return new Promise<void>((resolve) => {
    const handle = (sig: string) => onSignal(sig).then(resolve, resolve);
    process.once('SIGTERM', () => handle('SIGTERM'));
    process.once('SIGINT', () => handle('SIGINT'));
  });
}

/**
 * HSMCA_WORKERS > 1: the primary initialises everything once, then forks
 * workers that share the listening port. Worker 1 leads (key generation,
 * periodic jobs); a worker that dies is replaced; SIGTERM stops them all
 * gracefully. Workers exit by themselves if the primary dies.
 */
async function serveCluster(config: Config): Promise<number> {
  if (cluster.isWorker) {
    const index = Number(process.env.HSMCA_WORKER_INDEX ?? '1');
    const svc = await startService(config, { role: index === 1 ? 'leader' : 'follower', announce: () => undefined });
    await untilSignal(() => svc.stop());
    // The IPC channel to the primary would keep this process alive.
    process.exit(0);
  }
  const core = await openCore(config);
  try {
    // the HTTPS certificate too, once, before the workers read it
    if (config.httpsPort > 0) await ServerTls.open(core, { canIssue: true });
  } finally {
    await core.close();
  }
  // Each worker accepts its own connections from the shared socket. node's default on Linux
  // (round robin) has this process accept every connection and hand it to a worker over IPC,
  // which for clients that open a connection per request (OCSP) cost more than a second
  // worker gains: measured with ab, one OCSP request per connection, 2 workers, c=32:
  // 4,400-4,900 answers/s round robin, 9,300-10,000 with the workers accepting.
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  let stopping = false;
  const fork = (index: number) => {
    const w = cluster.fork({ HSMCA_WORKER_INDEX: String(index) });
    w.on('exit', (code, signal) => {
      if (stopping) return;
      process.stderr.write(`hsmca: worker ${index} exited (${signal ?? code}); starting a new one\n`);
      setTimeout(() => fork(index), 1000).unref();
    });
    return w;
  };
  const workers = Array.from({ length: config.workers }, (_, i) => fork(i + 1));
  // each worker listens once on HTTP and once on HTTPS
  const listens = config.workers * (config.httpsPort > 0 ? 2 : 1);
  let listening = 0;
  await new Promise<void>((resolve, reject) => {
    cluster.on('listening', () => {
      if (++listening === listens) resolve();
    });
    for (const w of workers) w.once('exit', (code) => (listening < listens ? reject(new StartupError(`a worker failed to start (exit ${code})`)) : undefined));
  });
  process.stdout.write(`hsmca: serving on http://${config.host}:${config.port} with ${config.workers} workers\n`);
  if (config.httpsPort > 0) process.stdout.write(`hsmca: serving HTTPS on https://${config.host}:${config.httpsPort}\n`);
  await untilSignal(async () => {
    stopping = true;
    await Promise.all(
      Object.values(cluster.workers ?? {}).map(
        (w) =>
          new Promise<void>((resolve) => {
            if (!w || w.isDead()) return resolve();
            w.once('exit', () => resolve());
            w.process.kill('SIGTERM');
          }),
      ),
    );
  });
  return 0;
}

async function token(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const { options: args, positional } = parseArgs(rest, ['role', 'name', 'expires-days', 'names', 'profiles', 'max-validity-days', 'subject-attributes'], ['can-revoke']);
  const config = loadConfig();
  const core = await openTokenAdmin(config);
  try {
    switch (sub) {
      case 'create': {
        if (!args.role || !args.name) throw new CaError('badRequest', 'usage', 'usage: hsmca token create --role admin|requester --name NAME');
        let expiresAt: Date | null = null;
        if (args['expires-days']) {
          const d = Number(args['expires-days']);
          if (!Number.isInteger(d) || d < 1) throw new CaError('badRequest', 'usage', '--expires-days must be a whole number of days');
          expiresAt = new Date(core.clock.now().getTime() + d * 86400_000);
        }
        const list = (v?: string) => (v === undefined ? undefined : v.split(',').map((x) => x.trim()).filter(Boolean));
        const scope: Record<string, unknown> = {};
        if (args.names) scope.names = list(args.names);
        if (args.profiles) scope.profiles = list(args.profiles);
        if (args['max-validity-days']) scope.maxValidityDays = Number(args['max-validity-days']);
        if (args['can-revoke']) scope.canRevoke = true;
        if (args['subject-attributes']) scope.subjectAttributes = subjectAttributesArg(args['subject-attributes']);
        const { token, record, request } = await createTokenUnderQuorum(core.quorum, core.tokens, { role: args.role, name: args.name, expiresAt, scope: Object.keys(scope).length ? scope : undefined, by: 'cli' });
        if (request) {
          process.stderr.write(`hsmca: ${record.role} token "${record.name}" (id ${record.id}) waits for quorum request ${request.id} (${request.threshold} approvals, until ${request.expiresAt}); it works once approved and is shown only this once:\n`);
        } else {
          process.stderr.write(`hsmca: created ${record.role} token "${record.name}" (id ${record.id}); it is shown only this once:\n`);
        }
        process.stdout.write(token + '\n');
        return 0;
      }
      case 'list': {
        for (const t of await core.tokenStore.list()) {
          const state = t.revokedAt ? 'revoked' : t.expiresAt && t.expiresAt <= core.clock.now() ? 'expired' : 'active';
          process.stdout.write(`${t.id}  ${t.role.padEnd(9)}  ${state.padEnd(7)}  ${t.createdAt.toISOString()}  ${t.name}\n`);
        }
        return 0;
      }
      case 'revoke': {
        const id = positional[0];
        if (!id) throw new CaError('badRequest', 'usage', 'usage: hsmca token revoke ID');
        const { request } = await revokeTokenUnderQuorum(core.quorum, core.tokens, id, 'cli');
        process.stdout.write(request ? `hsmca: revoking token ${id} waits for quorum request ${request.id} (${request.threshold} approvals)\n` : `hsmca: revoked token ${id}\n`);
        return 0;
      }
      default:
        throw new CaError('badRequest', 'usage', 'usage: hsmca token create|list|revoke');
    }
  } finally {
    await core.close();
  }
}

/** `hsmca hsm ...`: the key ceremonies and an inventory of the HSM. */
async function hsmCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const { options: args, positional } = parseArgs(rest, ['label', 'algorithm'], ['json']);
  const config = loadConfig();
  const hsm = await openConfiguredHsm(config);
  const out = (l: string) => process.stdout.write(l + '\n');
  try {
    switch (sub) {
      case 'list': {
        if (hsm.kind === 'pkcs11') {
          const info = await (hsm as unknown as Pkcs11Hsm).tokenInfo();
          if (args.json) {
            out(JSON.stringify(info, null, 2));
            return 0;
          }
          out(`module ${info.module} (${info.cluster ? 'cluster' : 'single token'}), health ${info.health.status}`);
          for (const t of info.tokens) {
            out(`token "${t.label}": ${t.status}${t.error ? ` (${t.error})` : ''}${t.model ? `, ${t.manufacturer} ${t.model} ${t.serialNumber}` : ''}`);
            for (const k of t.keys) {
              const a = k.attributes;
              const flags = Object.entries(a)
                .filter(([, v]) => v)
                .map(([n]) => n)
                .join(' ');
              out(`  key "${k.label}" id ${k.id} ${k.algorithm ?? k.keyType}: ${flags}`);
            }
            if (t.clusterKek) out(`  cluster wrapping key: ${t.clusterKek.present ? `present, trusted=${t.clusterKek.trusted}` : 'absent'}`);
          }
        } else {
          const health = await hsm.health();
          out(`software HSM (${config.dataDir}/soft-hsm.json), health ${health.status}`);
          for (const k of await hsm.listKeys()) out(`  key "${k.label}" ${k.algorithm}: non-extractable, encrypted at rest`);
        }
        return 0;
      }
      case 'keygen': {
        const label = args.label;
        const algorithm = args.algorithm ?? config.keyAlgorithm;
        if (!label) throw new CaError('badRequest', 'usage', 'usage: hsmca hsm keygen --label LABEL [--algorithm ALG]');
        if (!isKeyAlgorithm(algorithm)) throw new CaError('badRequest', 'usage', `--algorithm must be one of ${KEY_ALGORITHMS.join(', ')}`);
        const k = await hsm.generateKey(label, algorithm);
        out(`hsmca: generated ${k.algorithm} key "${k.label}" inside the ${hsm.kind} HSM; public key (SPKI, base64):`);
        out(k.publicKey.toString('base64'));
        return 0;
      }
      case 'add-token': {
        const label = positional[0];
        if (!label) throw new CaError('badRequest', 'usage', 'usage: hsmca hsm add-token LABEL');
        if (hsm.kind !== 'pkcs11') throw new CaError('badRequest', 'usage', 'add-token needs HSMCA_HSM=pkcs11');
        await (hsm as unknown as Pkcs11Hsm).addToken(label);
        out(`hsmca: token "${label}" now holds every CA key; add it to HSMCA_PKCS11_TOKEN_LABEL`);
        return 0;
      }
      default:
        throw new CaError('badRequest', 'usage', 'usage: hsmca hsm list|keygen|add-token');
    }
  } catch (e) {
    if (e instanceof Error && e.name === 'HsmError') throw new CaError('unavailable', 'hsmError', e.message);
    throw e;
  } finally {
    await hsm.close();
  }
}
