import * as path from 'node:path';
import { ipToBytes, validDnsName } from '../ca/csr';
import { ConfigError } from '../errors';

/** The HTTPS listener's settings (contract section 6), validated once at start-up with the rest of the configuration. */
export interface TlsSettings {
  /** HSMCA_HTTPS_PORT: the HTTPS listener's port on HSMCA_HOST; 0 turns HTTPS off */
  httpsPort: number;
  /** HSMCA_TLS_NAMES: the DNS names and IP addresses of the server certificate hsmca issues itself */
  tlsNames: string[];
  /** HSMCA_TLS_CERT and HSMCA_TLS_KEY: PEM files brought by the operator instead (both or neither) */
  tlsCertFile?: string;
  tlsKeyFile?: string;
}

type Env = Record<string, string | undefined>;

export const DEFAULT_HTTPS_PORT = 8443;

/**
 * HSMCA_HTTPS_PORT, HSMCA_TLS_NAMES, HSMCA_TLS_CERT, HSMCA_TLS_KEY. The
 * default names are the host of HSMCA_PUBLIC_URL, `localhost` and
 * `127.0.0.1`: what a client on this host or one following the URLs in the
 * certificates connects to.
 */
export function loadTlsSettings(env: Env, publicUrl: string, httpPort: number): TlsSettings {
  const rawPort = env.HSMCA_HTTPS_PORT?.trim();
  let httpsPort = DEFAULT_HTTPS_PORT;
  if (rawPort) {
    if (!/^\d+$/.test(rawPort)) throw new ConfigError('HSMCA_HTTPS_PORT', `must be a whole number (0 turns HTTPS off), got "${rawPort}"`);
    httpsPort = Number(rawPort);
    if (httpsPort > 65535) throw new ConfigError('HSMCA_HTTPS_PORT', `must be between 0 and 65535, got ${httpsPort}`);
  }
  if (httpsPort !== 0 && httpsPort === httpPort) throw new ConfigError('HSMCA_HTTPS_PORT', `must differ from HSMCA_PORT (both are ${httpPort})`);

  const rawNames = env.HSMCA_TLS_NAMES?.trim();
  const publicHost = new URL(publicUrl).hostname.replace(/^\[(.*)\]$/, '$1');
  const names = rawNames ? rawNames.split(',').map((s) => s.trim()).filter(Boolean) : [publicHost, 'localhost', '127.0.0.1'];
  if (names.length === 0) throw new ConfigError('HSMCA_TLS_NAMES', 'must name at least one DNS name or IP address');
  if (names.length > 100) throw new ConfigError('HSMCA_TLS_NAMES', `at most 100 names, got ${names.length}`);
  const tlsNames: string[] = [];
  for (const n of names) {
    const name = ipToBytes(n) ? n : n.toLowerCase();
    if (!ipToBytes(name) && !validDnsName(name)) throw new ConfigError('HSMCA_TLS_NAMES', `"${n.slice(0, 80)}" is neither a DNS name nor an IP address`);
    if (!tlsNames.includes(name)) tlsNames.push(name);
  }

  const cert = env.HSMCA_TLS_CERT?.trim() || undefined;
  const key = env.HSMCA_TLS_KEY?.trim() || undefined;
  if (cert && !key) throw new ConfigError('HSMCA_TLS_KEY', 'is required when HSMCA_TLS_CERT is set (bring both the certificate and its key, or neither)');
  if (key && !cert) throw new ConfigError('HSMCA_TLS_CERT', 'is required when HSMCA_TLS_KEY is set (bring both the certificate and its key, or neither)');
  return { httpsPort, tlsNames, tlsCertFile: cert && path.resolve(cert), tlsKeyFile: key && path.resolve(key) };
}

/** 127.0.0.0/8, ::1 and localhost: a listener there is reachable from this host only. */
export function isLoopbackHost(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1');
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || /^::ffff:127\./.test(h);
}
