import { ConfigError } from '../errors';

/** The ACME server's settings (contract section 7; docs/acme.md lists each). */
export interface AcmeConfig {
  /** HSMCA_ACME_REQUIRE_EAB: new accounts must carry External Account Binding (RFC 8555 7.3.4) */
  requireEab: boolean;
  /** HSMCA_ACME_ALLOWED_DOMAINS: what an account without binding may order (`*.example.com` allows subdomains) */
  allowedDomains: string[];
  http01Port: number;
  tlsAlpn01Port: number;
  /** HSMCA_ACME_DNS_RESOLVER host:port; undefined: the system resolver */
  dnsResolver?: { host: string; port: number };
  /** validate against loopback, private and link-local addresses (an internal CA) */
  allowPrivateAddresses: boolean;
  /** seconds one validation attempt may take, and how many attempts a challenge gets */
  validationTimeoutSeconds: number;
  validationAttempts: number;
  /** an hour's limits: new accounts per client address, new orders per account, failed validations per account */
  newAccountsPerAddressPerHour: number;
  ordersPerAccountPerHour: number;
  failedValidationsPerAccountPerHour: number;
  /** HSMCA_ACME_TERMS_OF_SERVICE: a URL shown in the directory's meta, if any */
  termsOfService?: string;
  /** HSMCA_ACME_BASE_URL: the https:// URL clients reach /acme at (behind a proxy); undefined: the HTTPS listener's */
  baseUrl?: string;
  /** HSMCA_ACME_PROFILES: the profiles ACME orders may name (draft-ietf-acme-profiles); the first is the default */
  profiles: string[];
  /** HSMCA_ACME_AUTHZ_REUSE_HOURS: a valid authorization serves the account's new orders for the same identifier this long after its validation; 0: never */
  authzReuseHours: number;
}

type Env = Record<string, string | undefined>;

function bool(env: Env, name: string, def: boolean): boolean {
  const raw = env[name]?.trim();
  if (!raw) return def;
  if (raw !== 'true' && raw !== 'false') throw new ConfigError(name, `must be true or false, got "${raw}"`);
  return raw === 'true';
}

function int(env: Env, name: string, def: number, min: number, max: number): number {
  const raw = env[name]?.trim();
  if (!raw) return def;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) throw new ConfigError(name, `must be a whole number between ${min} and ${max}, got "${raw}"`);
  return Number(raw);
}

/** `knownProfiles`: the built-in profiles and the config file's, which HSMCA_ACME_PROFILES may name. */
export function loadAcmeConfig(env: Env, knownProfiles: string[] = ['tls-server', 'tls-client']): AcmeConfig {
  let dnsResolver: AcmeConfig['dnsResolver'];
  const r = env.HSMCA_ACME_DNS_RESOLVER?.trim();
  if (r) {
    const m = /^(?:\[([0-9a-fA-F:]+)\]|([^:\s]+)):(\d{1,5})$/.exec(r);
    if (!m || Number(m[3]) < 1 || Number(m[3]) > 65535) throw new ConfigError('HSMCA_ACME_DNS_RESOLVER', `must be host:port (an IPv6 address in brackets), got "${r}"`);
    dnsResolver = { host: m[1] ?? m[2], port: Number(m[3]) };
  }
  const allowedDomains = (env.HSMCA_ACME_ALLOWED_DOMAINS ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  for (const d of allowedDomains) {
    if (!/^(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*$/.test(d)) throw new ConfigError('HSMCA_ACME_ALLOWED_DOMAINS', `"${d}" is not a domain or *.domain`);
  }
  const tos = env.HSMCA_ACME_TERMS_OF_SERVICE?.trim() || undefined;
  if (tos && !/^https?:\/\/\S+$/.test(tos)) throw new ConfigError('HSMCA_ACME_TERMS_OF_SERVICE', 'must be an http:// or https:// URL');
  const baseUrl = env.HSMCA_ACME_BASE_URL?.trim().replace(/\/+$/, '') || undefined;
  if (baseUrl !== undefined) {
    let u: URL | undefined;
    try {
      u = new URL(baseUrl);
    } catch {
      u = undefined;
    }
    if (!u || u.protocol !== 'https:' || u.search || u.hash || u.username || u.password) {
      throw new ConfigError('HSMCA_ACME_BASE_URL', `must be an https:// URL without query or credentials (e.g. https://ca.example.com/acme), got "${baseUrl.slice(0, 120)}"`);
    }
  }
  const profiles = (env.HSMCA_ACME_PROFILES ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (profiles.length === 0) profiles.push('tls-server');
  for (const p of profiles) {
    if (!knownProfiles.includes(p)) throw new ConfigError('HSMCA_ACME_PROFILES', `"${p.slice(0, 64)}" is not a profile of this CA (${knownProfiles.join(', ')})`);
  }
  if (new Set(profiles).size !== profiles.length) throw new ConfigError('HSMCA_ACME_PROFILES', 'names a profile twice');
  return {
    requireEab: bool(env, 'HSMCA_ACME_REQUIRE_EAB', true),
    allowedDomains,
    http01Port: int(env, 'HSMCA_ACME_HTTP01_PORT', 80, 1, 65535),
    tlsAlpn01Port: int(env, 'HSMCA_ACME_TLSALPN01_PORT', 443, 1, 65535),
    dnsResolver,
    allowPrivateAddresses: bool(env, 'HSMCA_ACME_ALLOW_PRIVATE_ADDRESSES', false),
    validationTimeoutSeconds: int(env, 'HSMCA_ACME_VALIDATION_TIMEOUT_SECONDS', 10, 1, 300),
    validationAttempts: int(env, 'HSMCA_ACME_VALIDATION_ATTEMPTS', 3, 1, 10),
    newAccountsPerAddressPerHour: int(env, 'HSMCA_ACME_NEW_ACCOUNTS_PER_ADDRESS_PER_HOUR', 50, 0, 1_000_000),
    ordersPerAccountPerHour: int(env, 'HSMCA_ACME_ORDERS_PER_ACCOUNT_PER_HOUR', 300, 0, 1_000_000),
    failedValidationsPerAccountPerHour: int(env, 'HSMCA_ACME_FAILED_VALIDATIONS_PER_ACCOUNT_PER_HOUR', 60, 0, 1_000_000),
    termsOfService: tos,
    baseUrl,
    profiles,
    authzReuseHours: int(env, 'HSMCA_ACME_AUTHZ_REUSE_HOURS', 24, 0, 720),
  };
}
