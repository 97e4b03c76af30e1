import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError } from './errors';
import { KEY_ALGORITHMS, KeyAlgorithm, isKeyAlgorithm } from './hsm/key-algorithm';
import { BUILTIN_PROFILES, ProfileSpec } from './ca/profiles';
import { TlsSettings, loadTlsSettings } from './tls/tls-settings';
import { AcmeConfig, loadAcmeConfig } from './acme/acme-config';

/** Every setting of contract section 2, validated once at start-up. */
export interface Config extends TlsSettings {
  host: string;
  port: number;
  dataDir: string;
  /** undefined: SQLite file in the data folder */
  databaseUrl?: string;
  publicUrl: string;
  hsm: 'soft' | 'pkcs11';
  hsmPin?: string;
  pkcs11?: { module: string; tokenLabels: string[]; pin: string; soPin?: string; cluster: boolean };
  keyAlgorithm: KeyAlgorithm;
  adminToken?: string;
  crlRefreshSeconds: number;
  /** CRL nextUpdate is thisUpdate plus this */
  crlValiditySeconds: number;
  /** how long revoked certificates stay on the CRL after they expire */
  crlRetentionSeconds: number;
  /** partitioned CRLs: each new certificate names one of this many shard CRLs; 1 = none (src/ca/crl-shards.ts) */
  crlShards: number;
  /** OCSP responses are valid this long (nextUpdate - thisUpdate) */
  ocspValiditySeconds: number;
  /** OCSP signatures a second that no pre-signed response stands for (unknown serials, nonces, several certificates); 0: no limit */
  ocspOnDemandSignaturesPerSecond: number;
  /** open connections a serving process accepts at once (0: no limit) */
  maxConnections: number;
  /** common name prefix of the CA certificates */
  caName: string;
  /** largest accepted request body */
  maxBodyBytes: number;
  /** issuance requests a minute per token and per client address (0: no limit) */
  issueRatePerToken: number;
  issueRatePerAddress: number;
  /** failed authentications a minute per client address before 429 (0: no limit) */
  authFailureLimit: number;
  /** failed authentications are audited as the first at once, then one summary per address per this interval */
  authFailureAuditIntervalSeconds: number;
  /** serving processes (node:cluster); 1 serves in the main process */
  workers: number;
  /** extra profiles from the config file */
  profiles: Record<string, ProfileSpec>;
  logLevel: 'debug' | 'info' | 'warn' | 'error' | 'silent';
  /** the ACME server (contract section 7) */
  acme: AcmeConfig;
  /** how long a graceful stop waits for requests in flight before it closes their connections */
  shutdownGraceSeconds: number;
}

type Env = Record<string, string | undefined>;

/** HSMCA_CRL_SHARDS at most: CCADB's partitioned-CRL lists stay short, and each shard is one more CRL signed per refresh. */
export const MAX_CRL_SHARDS = 1024;

function intSetting(env: Env, name: string, def: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return def;
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(name, `must be a whole number, got "${raw}"`);
  const n = Number(raw.trim());
  if (n < min || n > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${n}`);
  return n;
}

/** At least 32 bytes of entropy (contract section 2): 64 hex characters, or 43 of base64url. */
export function adminTokenStrongEnough(token: string): boolean {
  if (/^[0-9a-fA-F]+$/.test(token)) return token.length >= 64;
  if (/^[A-Za-z0-9_\-+/=.~]+$/.test(token)) return token.replace(/=+$/, '').length >= 43 && new Set(token).size >= 16;
  return false;
}

export function loadConfig(env: Env = process.env): Config {
  const host = env.HSMCA_HOST?.trim() || '127.0.0.1';
  const port = intSetting(env, 'HSMCA_PORT', 8080, 0, 65535);
  const dataDir = path.resolve(env.HSMCA_DATA_DIR?.trim() || './data');

  let databaseUrl: string | undefined = env.HSMCA_DATABASE_URL?.trim() || undefined;
  if (databaseUrl && !/^postgres(ql)?:\/\//.test(databaseUrl) && !/^sqlite:/.test(databaseUrl)) {
    throw new ConfigError('HSMCA_DATABASE_URL', 'must be a postgres:// URL (or sqlite:PATH); leave it unset for the embedded SQLite database');
  }

  if (!env.HSMCA_PUBLIC_URL?.trim() && (host === '0.0.0.0' || host === '::')) {
    throw new ConfigError('HSMCA_PUBLIC_URL', `is required when HSMCA_HOST is ${host}: it is the address clients use, written into every certificate`);
  }
  let publicUrl = env.HSMCA_PUBLIC_URL?.trim() || `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  try {
    const u = new URL(publicUrl);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error();
  } catch {
    throw new ConfigError('HSMCA_PUBLIC_URL', `must be an http:// or https:// URL, got "${publicUrl}"`);
  }
  publicUrl = publicUrl.replace(/\/+$/, '');

  const hsmRaw = env.HSMCA_HSM?.trim() || 'soft';
  if (hsmRaw !== 'soft' && hsmRaw !== 'pkcs11') throw new ConfigError('HSMCA_HSM', `must be "soft" or "pkcs11", got "${hsmRaw}"`);

  let pkcs11: Config['pkcs11'];
  if (hsmRaw === 'pkcs11') {
    const module = env.HSMCA_PKCS11_MODULE?.trim();
    if (!module) throw new ConfigError('HSMCA_PKCS11_MODULE', 'is required when HSMCA_HSM=pkcs11 (e.g. /usr/lib/softhsm/libsofthsm2.so)');
    if (!fs.existsSync(module)) throw new ConfigError('HSMCA_PKCS11_MODULE', `no such file: ${module}`);
    const labels = (env.HSMCA_PKCS11_TOKEN_LABEL ?? '').split(',').map((s) => s.trim()).filter(Boolean);
    if (labels.length === 0) throw new ConfigError('HSMCA_PKCS11_TOKEN_LABEL', 'is required when HSMCA_HSM=pkcs11');
    if (new Set(labels).size !== labels.length) throw new ConfigError('HSMCA_PKCS11_TOKEN_LABEL', 'names a token twice');
    const pin = env.HSMCA_PKCS11_PIN;
    if (!pin) throw new ConfigError('HSMCA_PKCS11_PIN', 'is required when HSMCA_HSM=pkcs11');
    const clusterRaw = env.HSMCA_PKCS11_CLUSTER?.trim();
    if (clusterRaw && clusterRaw !== 'true' && clusterRaw !== 'false') throw new ConfigError('HSMCA_PKCS11_CLUSTER', `must be true or false, got "${clusterRaw}"`);
    pkcs11 = { module, tokenLabels: labels, pin, soPin: env.HSMCA_PKCS11_SO_PIN || undefined, cluster: clusterRaw ? clusterRaw === 'true' : labels.length > 1 };
  }

  const hsmPin = env.HSMCA_HSM_PIN || undefined;
  if (hsmPin !== undefined && hsmPin.length < 8) throw new ConfigError('HSMCA_HSM_PIN', 'must be at least 8 characters');

  const keyAlgorithm = env.HSMCA_KEY_ALGORITHM?.trim() || 'ecdsa-p256';
  if (!isKeyAlgorithm(keyAlgorithm)) {
    throw new ConfigError('HSMCA_KEY_ALGORITHM', `must be one of ${KEY_ALGORITHMS.join(', ')}, got "${keyAlgorithm}"`);
  }

  const adminToken = env.HSMCA_ADMIN_TOKEN || undefined;
  if (adminToken !== undefined && !adminTokenStrongEnough(adminToken)) {
    throw new ConfigError('HSMCA_ADMIN_TOKEN', 'must carry at least 32 bytes of entropy (e.g. 64 hex characters: openssl rand -hex 32)');
  }

  const logLevel = (env.HSMCA_LOG_LEVEL?.trim() || 'info') as Config['logLevel'];
  if (!['debug', 'info', 'warn', 'error', 'silent'].includes(logLevel)) {
    throw new ConfigError('HSMCA_LOG_LEVEL', `must be debug, info, warn, error or silent, got "${logLevel}"`);
  }

  let profiles: Record<string, ProfileSpec> = {};
  const configFile = env.HSMCA_CONFIG?.trim();
  if (configFile) {
    let parsed: { profiles?: Record<string, ProfileSpec> };
    try {
      parsed = JSON.parse(fs.readFileSync(configFile, 'utf8'));
    } catch (e) {
      throw new ConfigError('HSMCA_CONFIG', `cannot read ${configFile} as JSON: ${(e as Error).message}`);
    }
    profiles = parsed.profiles ?? {};
  }

  return {
    host,
    port,
    dataDir,
    databaseUrl,
    publicUrl,
    hsm: hsmRaw,
    hsmPin,
    pkcs11,
    keyAlgorithm,
    adminToken,
    crlRefreshSeconds: intSetting(env, 'HSMCA_CRL_REFRESH_SECONDS', 300, 1, 7 * 86400),
    crlValiditySeconds: intSetting(env, 'HSMCA_CRL_VALIDITY_SECONDS', 86400, 60, 30 * 86400),
    crlRetentionSeconds: intSetting(env, 'HSMCA_CRL_RETENTION_SECONDS', 0, 0, 10 * 365 * 86400),
    crlShards: intSetting(env, 'HSMCA_CRL_SHARDS', 1, 1, MAX_CRL_SHARDS),
    ocspValiditySeconds: intSetting(env, 'HSMCA_OCSP_VALIDITY_SECONDS', 3600, 60, 7 * 86400),
    ocspOnDemandSignaturesPerSecond: intSetting(env, 'HSMCA_OCSP_SIGNATURES_PER_SECOND', 200, 0, 1_000_000),
    maxConnections: intSetting(env, 'HSMCA_MAX_CONNECTIONS', 4096, 0, 1_000_000),
    caName: env.HSMCA_CA_NAME?.trim() || 'hsmca',
    maxBodyBytes: intSetting(env, 'HSMCA_MAX_BODY_BYTES', 128 * 1024, 1024, 16 * 1024 * 1024),
    workers: intSetting(env, 'HSMCA_WORKERS', 1, 1, 64),
    issueRatePerToken: intSetting(env, 'HSMCA_ISSUE_RATE_PER_TOKEN', 600, 0, 10_000_000),
    issueRatePerAddress: intSetting(env, 'HSMCA_ISSUE_RATE_PER_ADDRESS', 1200, 0, 10_000_000),
    authFailureLimit: intSetting(env, 'HSMCA_AUTH_FAILURE_LIMIT', 30, 0, 10_000_000),
    authFailureAuditIntervalSeconds: intSetting(env, 'HSMCA_AUTH_FAILURE_AUDIT_INTERVAL_SECONDS', 60, 1, 86400),
    profiles,
    logLevel,
    ...loadTlsSettings(env, publicUrl, port),
    acme: loadAcmeConfig(env, [...Object.keys(BUILTIN_PROFILES), ...Object.keys(profiles)]),
    shutdownGraceSeconds: intSetting(env, 'HSMCA_SHUTDOWN_GRACE_SECONDS', 30, 0, 3600),
  };
}
