import { promises as dnsPromises } from 'node:dns';
import { isIP } from 'node:net';
import type { AcmeConfig } from '../acme-config';
import { AcmeProblem } from '../problem';

/**
 * Where validation may connect. Names resolve through HSMCA_ACME_DNS_RESOLVER
 * when set, else the system's resolver; an address that is loopback,
 * private, link-local, unique-local, multicast or unspecified is refused
 * unless HSMCA_ACME_ALLOW_PRIVATE_ADDRESSES=true (server-side request forgery:
 * an ACME client must not make the CA probe its own network).
 */
export class AddressGuard {
  private readonly resolver?: dnsPromises.Resolver;

  constructor(private readonly config: Pick<AcmeConfig, 'dnsResolver' | 'allowPrivateAddresses' | 'validationTimeoutSeconds'>) {
    if (config.dnsResolver) {
      this.resolver = new dnsPromises.Resolver({ timeout: config.validationTimeoutSeconds * 1000, tries: 2 });
      const { host, port } = config.dnsResolver;
      this.resolver.setServers([isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`]);
    }
  }

  /** The TXT records at a name (dns-01), each one's strings joined (RFC 8555 8.4). */
  async txt(name: string): Promise<string[]> {
    try {
      const records = this.resolver ? await this.resolver.resolveTxt(name) : await dnsPromises.resolveTxt(name);
      return records.map((r) => r.join(''));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENODATA' || code === 'ENOTFOUND') return [];
      throw new AcmeProblem('dns', `DNS lookup of TXT ${name} failed: ${code ?? 'error'}`);
    }
  }

  /** The first address of a name (or the address itself) that validation may connect to. */
  async resolve(host: string): Promise<string> {
    let addrs: string[];
    if (isIP(host)) addrs = [host];
    else if (this.resolver) {
      const [v4, v6] = await Promise.all([this.resolver.resolve4(host).catch(() => []), this.resolver.resolve6(host).catch(() => [])]);
      addrs = [...v4, ...v6];
    } else {
      addrs = (await dnsPromises.lookup(host, { all: true }).catch(() => [])).map((a) => a.address);
    }
    if (addrs.length === 0) throw new AcmeProblem('dns', `no A or AAAA record for ${host}`);
    const allowed = addrs.filter((a) => this.config.allowPrivateAddresses || publicAddress(a));
    if (allowed.length === 0) throw new AcmeProblem('rejectedIdentifier', `${host} resolves only to private, loopback or link-local addresses, which this CA does not validate against`);
    return allowed[0];
  }
}

/** Not loopback, private (RFC 1918, RFC 4193), link-local, CGNAT, multicast, reserved or unspecified. */
export function publicAddress(ip: string): boolean {
  if (isIP(ip) === 4) {
    const [a, b] = ip.split('.').map(Number);
    return !(a === 0 || a === 10 || a === 127 || (a === 100 && b >= 64 && b <= 127) || (a === 169 && b === 254) || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || a >= 224);
  }
  const l = ip.toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(l);
  if (mapped) return publicAddress(mapped[1]);
  if (l === '::' || l === '::1') return false;
  return !/^(fe[89ab]|f[cd]|ff)/.test(l);
}
