import { CaError } from '../errors';
import { ipToBytes, validDnsName } from '../ca/csr';
import { IssuanceIntent, IssuancePolicy } from '../ca/issuance';
import { SubjectAttributeScope, parseSubjectAttributeScope, scopedSubject } from '../ca/subject';

/**
 * What a requester token may do, beyond its role. Absent fields do not limit.
 * - names: DNS patterns ("api.example.com", "*.svc.internal" for any name
 *   below svc.internal), IP ranges in CIDR form ("10.0.0.0/8", "fd00::/8"),
 *   email domains ("*@example.com") and URI prefixes ("spiffe://example.org/*")
 * - profiles: profile names it may use
 * - maxValidityDays: the longest validity it may ask for
 * - canRevoke: it may revoke the certificates it was issued
 * - subjectAttributes: for a token limited to names, the subject attributes
 *   besides CN and emailAddress it may put in a subject, with their values
 *   ({"O": ["Example Corp"], "OU": ["*"]}); none by default
 */
export interface TokenScope {
  names?: string[];
  profiles?: string[];
  maxValidityDays?: number;
  canRevoke?: boolean;
  subjectAttributes?: SubjectAttributeScope;
}

const SCOPE_FIELDS = ['names', 'profiles', 'maxValidityDays', 'canRevoke', 'subjectAttributes'];

/**
 * URIs compare as RFC 3986 6.2.2.1 says: the scheme and the host without
 * regard to case, the rest exactly (a SPIFFE ID's path is case-sensitive).
 */
export function normalizeUri(u: string): string {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)(.*)$/s.exec(u);
  return m ? `${m[1].toLowerCase()}://${m[2].toLowerCase()}${m[3]}` : u;
}

const isUriPattern = (p: string) => /^[a-z][a-z0-9+.-]*:\/\//i.test(p);

const MAX_PATTERNS = 100;

/** Validates a scope once, at token creation; throws 400 naming the bad field. */
export function parseScope(input: unknown): TokenScope | null {
  if (input === undefined || input === null) return null;
  if (typeof input !== 'object' || Array.isArray(input)) throw new CaError('badRequest', 'invalidScope', 'scope must be an object');
  const s = input as Record<string, unknown>;
  const out: TokenScope = {};
  for (const k of Object.keys(s)) {
    if (!SCOPE_FIELDS.includes(k)) throw new CaError('badRequest', 'invalidScope', `unknown scope field "${k.slice(0, 40)}"`);
  }
  if (s.names !== undefined) {
    if (!Array.isArray(s.names) || s.names.length === 0 || s.names.length > MAX_PATTERNS || !s.names.every((n) => typeof n === 'string')) {
      throw new CaError('badRequest', 'invalidScope', `scope.names must be a list of 1 to ${MAX_PATTERNS} patterns`);
    }
    for (const n of s.names as string[]) if (!validPattern(n)) throw new CaError('badRequest', 'invalidScope', `"${n.slice(0, 80)}" is not a name pattern`);
    out.names = (s.names as string[]).map((n) => (isUriPattern(n) ? normalizeUri(n) : n.toLowerCase()));
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
  if (s.subjectAttributes !== undefined) out.subjectAttributes = parseSubjectAttributeScope(s.subjectAttributes);
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
    for (const u of intent.sans.uri) if (!uriAllowed(u, patterns)) throw refuse(u);
  },

  /** A token limited to names gets a subject built from what its scope allows (ca/subject.ts); others get the CSR's. */
  subjectFor(intent: IssuanceIntent, csrSubject: Buffer): Buffer {
    const scope = (intent.principal.role === 'admin' ? null : intent.principal.scope) as TokenScope | null;
    const patterns = scope?.names;
    if (!patterns) return csrSubject;
    return scopedSubject(csrSubject, (kind, value) => (kind === 'email' ? emailAllowed(value, patterns) : nameInScope(value, patterns)), scope.subjectAttributes);
  },
};

function uriAllowed(u: string, patterns: string[]): boolean {
  const n = normalizeUri(u);
  return patterns.some((p) => isUriPattern(p) && (p.endsWith('*') ? n.startsWith(p.slice(0, -1)) : n === p));
}

function emailAllowed(m: string, patterns: string[]): boolean {
  const at = m.lastIndexOf('@');
  return at > 0 && patterns.includes(`*@${m.slice(at + 1).toLowerCase()}`);
}

/** A common name is in scope only as a name the scope grants: a DNS name, an address, an email address or a URI. */
function nameInScope(cn: string, patterns: string[]): boolean {
  const c = cn.toLowerCase();
  if (ipToBytes(c)) return ipAllowed(c, patterns);
  if (validDnsName(c)) return dnsAllowed(c, patterns);
  if (c.includes('@')) return emailAllowed(cn, patterns);
  if (isUriPattern(cn)) return uriAllowed(cn, patterns);
  return false;
}

export function scopeAllowsRevoke(scope: unknown): boolean {
  return !!(scope && typeof scope === 'object' && (scope as TokenScope).canRevoke === true);
}
