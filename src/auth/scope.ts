import { CaError } from '../errors';
import { ipToBytes, validDnsName } from '../ca/csr';
import { IssuanceIntent, IssuancePolicy } from '../ca/issuance';

/**
 * What a requester token may do, beyond its role. Absent fields do not limit.
 * - names: DNS patterns ("api.example.com", "*.svc.internal" for any name
 *   below svc.internal), IP ranges in CIDR form ("10.0.0.0/8", "fd00::/8"),
 *   email domains ("*@example.com") and URI prefixes ("spiffe://example.org/*")
 * - profiles: profile names it may use
 * - maxValidityDays: the longest validity it may ask for
 * - canRevoke: it may revoke the certificates it was issued
 */
export interface TokenScope {
  names?: string[];
  profiles?: string[];
  maxValidityDays?: number;
  canRevoke?: boolean;
}

const MAX_PATTERNS = 100;

/** Validates a scope once, at token creation; throws 400 naming the bad field. */
export function parseScope(input: unknown): TokenScope | null {
  if (input === undefined || input === null) return null;
  if (typeof input !== 'object' || Array.isArray(input)) throw new CaError('badRequest', 'invalidScope', 'scope must be an object');
  const s = input as Record<string, unknown>;
  const out: TokenScope = {};
  for (const k of Object.keys(s)) {
    if (!['names', 'profiles', 'maxValidityDays', 'canRevoke'].includes(k)) throw new CaError('badRequest', 'invalidScope', `unknown scope field "${k.slice(0, 40)}"`);
  }
  if (s.names !== undefined) {
    if (!Array.isArray(s.names) || s.names.length === 0 || s.names.length > MAX_PATTERNS || !s.names.every((n) => typeof n === 'string')) {
      throw new CaError('badRequest', 'invalidScope', `scope.names must be a list of 1 to ${MAX_PATTERNS} patterns`);
    }
    for (const n of s.names as string[]) if (!validPattern(n)) throw new CaError('badRequest', 'invalidScope', `"${n.slice(0, 80)}" is not a name pattern`);
    out.names = (s.names as string[]).map((n) => n.toLowerCase());
  }
  if (s.profiles !== undefined) {
    if (!Array.isArray(s.profiles) || !s.profiles.every((p) => typeof p === 'string' && /^[a-z0-9-]{1,64}$/.test(p))) {
      throw new CaError('badRequest', 'invalidScope', 'scope.profiles must be a list of profile names');
    }
    out.profiles = s.profiles as string[];
  }
  if (s.maxValidityDays !== undefined) {
    if (typeof s.maxValidityDays !== 'number' || !Number.isInteger(s.maxValidityDays) || s.maxValidityDays < 1) {
      throw new CaError('badRequest', 'invalidScope', 'scope.maxValidityDays must be a whole number of days');
    }
    out.maxValidityDays = s.maxValidityDays;
  }
  if (s.canRevoke !== undefined) {
    if (typeof s.canRevoke !== 'boolean') throw new CaError('badRequest', 'invalidScope', 'scope.canRevoke must be true or false');
    out.canRevoke = s.canRevoke;
  }
  return out;
}

function validPattern(p: string): boolean {
  const l = p.toLowerCase();
  if (l.includes('/') && !l.includes('://')) return parseCidr(l) !== undefined;
  if (l.startsWith('*@')) return validDnsName(l.slice(2));
  if (/^[a-z][a-z0-9+.-]*:\/\//.test(l)) return l.endsWith('*') || l.length > 3;
  if (l.startsWith('*.')) return validDnsName(l.slice(2));
  return validDnsName(l) || ipToBytes(l) !== undefined;
}

function parseCidr(p: string): { net: Buffer; bits: number } | undefined {
  const [addr, bitsText] = p.split('/');
  const net = ipToBytes(addr);
  if (!net || !/^\d{1,3}$/.test(bitsText ?? '')) return undefined;
  const bits = Number(bitsText);
  if (bits > net.length * 8) return undefined;
  return { net, bits };
}

function inCidr(ip: Buffer, cidr: { net: Buffer; bits: number }): boolean {
  if (ip.length !== cidr.net.length) return false;
  for (let i = 0; i < cidr.bits; i++) {
    const mask = 0x80 >> i % 8;
    if ((ip[i >> 3] & mask) !== (cidr.net[i >> 3] & mask)) return false;
  }
  return true;
}

function dnsAllowed(name: string, patterns: string[]): boolean {
  return patterns.some((p) => (p.startsWith('*.') ? name.endsWith(p.slice(1)) : name === p));
}

function ipAllowed(ip: string, patterns: string[]): boolean {
  const b = ipToBytes(ip);
  if (!b) return false;
  return patterns.some((p) => {
    if (p.includes('/')) {
      const c = parseCidr(p);
      return !!c && inCidr(b, c);
    }
    const q = ipToBytes(p);
    return !!q && q.equals(b);
  });
}

/** Checks each intent against the requester token's scope; admins are not limited. */
export const scopePolicy: IssuancePolicy = {
  check(intent: IssuanceIntent): void {
    const scope = (intent.principal.role === 'admin' ? null : intent.principal.scope) as TokenScope | null;
    if (!scope) return;
    if (scope.profiles && !scope.profiles.includes(intent.profile.name)) {
      throw new CaError('forbidden', 'profileNotAllowed', `this token may not use profile ${intent.profile.name}`);
    }
    if (scope.maxValidityDays !== undefined && intent.validityDays > scope.maxValidityDays) {
      throw new CaError('forbidden', 'validityNotAllowed', `this token may ask for at most ${scope.maxValidityDays} days`);
    }
    const patterns = scope.names;
    if (!patterns) return;
    const refuse = (n: string) => new CaError('forbidden', 'nameNotAllowed', `this token may not request the name "${n.slice(0, 80)}"`);
    for (const d of intent.sans.dns) if (!dnsAllowed(d, patterns)) throw refuse(d);
    for (const i of intent.sans.ip) if (!ipAllowed(i, patterns)) throw refuse(i);
    for (const m of intent.sans.email) {
      const domain = m.slice(m.lastIndexOf('@') + 1).toLowerCase();
      if (!patterns.includes(`*@${domain}`)) throw refuse(m);
    }
    for (const u of intent.sans.uri) {
      if (!patterns.some((p) => p.includes('://') && (p.endsWith('*') ? u.toLowerCase().startsWith(p.slice(0, -1)) : u.toLowerCase() === p))) throw refuse(u);
    }
    for (const cn of intent.commonNames) {
      const c = cn.toLowerCase();
      if (validDnsName(c) && !dnsAllowed(c, patterns)) throw refuse(cn);
      if (ipToBytes(c) && !ipAllowed(c, patterns)) throw refuse(cn);
    }
  },
};

export function scopeAllowsRevoke(scope: unknown): boolean {
  return !!(scope && typeof scope === 'object' && (scope as TokenScope).canRevoke === true);
}
