import * as der from '../asn1/der';
import { OID } from '../asn1/oids';
import { ConfigError } from '../errors';
import { LINT_NAMES } from './lint/index';

/**
 * Profiles are data (STYLE.md practice 6): a spec from code or the config file
 * is validated once at start-up into an immutable Profile that issuance reads.
 */
export type SanType = 'dns' | 'ip' | 'email' | 'uri';
export type KeyUsageName = 'digitalSignature' | 'nonRepudiation' | 'keyEncipherment' | 'dataEncipherment' | 'keyAgreement';

export interface ProfileSpec {
  /** key purposes: serverAuth, clientAuth, codeSigning, emailProtection, or a dotted OID */
  extendedKeyUsage: string[];
  /** keyUsage bits for every key; defaults to digitalSignature */
  keyUsage?: KeyUsageName[];
  /** add keyEncipherment when the subject key is RSA (TLS key transport) */
  rsaKeyEncipherment?: boolean;
  /** SAN types the CSR may ask for */
  sanTypes: SanType[];
  /** at least one SAN of an allowed type is required */
  requireSan?: boolean;
  /** a subject CN, if present, must equal one of the DNS or IP SANs */
  commonNameMustBeSan?: boolean;
  maxValidityDays: number;
  defaultValidityDays: number;
  /** pre-issuance lints lowered to warnings for this profile (a private CA's own policy); default none: strict */
  lintWarnings?: string[];
  /** one line shown to clients, e.g. in the ACME directory's meta.profiles; default: made from the key purposes and validity */
  description?: string;
}

export interface Profile {
  readonly name: string;
  /** ProfileSpec.description, or one made from the key purposes and validity */
  readonly description: string;
  readonly sanTypes: ReadonlySet<SanType>;
  readonly requireSan: boolean;
  readonly commonNameMustBeSan: boolean;
  readonly maxValidityDays: number;
  readonly defaultValidityDays: number;
  /** DER keyUsage extension for EC and RSA subject keys */
  readonly keyUsageExtension: { ec: Buffer; rsa: Buffer };
  /** DER extendedKeyUsage extension */
  readonly extKeyUsageExtension: Buffer;
  /** lints that only warn for this profile */
  readonly lintWarnings: ReadonlySet<string>;
}

export const BUILTIN_PROFILES: Record<string, ProfileSpec> = {
  'tls-server': {
    extendedKeyUsage: ['serverAuth'],
    keyUsage: ['digitalSignature'],
    rsaKeyEncipherment: true,
    sanTypes: ['dns', 'ip'],
    requireSan: true,
    commonNameMustBeSan: true,
    maxValidityDays: 397,
    defaultValidityDays: 90,
  },
  'tls-client': {
    extendedKeyUsage: ['clientAuth'],
    keyUsage: ['digitalSignature'],
    rsaKeyEncipherment: false,
    sanTypes: ['dns', 'email', 'uri'],
    requireSan: false,
    commonNameMustBeSan: false,
    maxValidityDays: 397,
    defaultValidityDays: 90,
  },
};

const EKU_NAMES: Record<string, string> = {
  serverAuth: OID.serverAuth,
  clientAuth: OID.clientAuth,
  codeSigning: '1.3.6.1.5.5.7.3.3',
  emailProtection: '1.3.6.1.5.5.7.3.4',
};

const KEY_USAGE_BITS: Record<KeyUsageName, number> = {
  digitalSignature: 0,
  nonRepudiation: 1,
  keyEncipherment: 2,
  dataEncipherment: 3,
  keyAgreement: 4,
};

export function extension(oid: string, critical: boolean, value: Buffer): Buffer {
  return critical ? der.seq(der.oid(oid), der.bool(true), der.octets(value)) : der.seq(der.oid(oid), der.octets(value));
}

export function compileProfile(name: string, spec: ProfileSpec): Profile {
  const where = `HSMCA_CONFIG (profile "${name}")`;
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(name)) throw new ConfigError(where, 'a profile name is lowercase letters, digits and dashes');
  if (!Array.isArray(spec.extendedKeyUsage) || spec.extendedKeyUsage.length === 0) {
    throw new ConfigError(where, 'extendedKeyUsage must list at least one key purpose');
  }
  const ekuOids = spec.extendedKeyUsage.map((e) => {
    const o = EKU_NAMES[e] ?? (/^\d+(\.\d+)+$/.test(e) ? e : undefined);
    if (!o) throw new ConfigError(where, `unknown extendedKeyUsage "${e}"`);
    return o;
  });
  const usages = spec.keyUsage ?? ['digitalSignature'];
  for (const u of usages) if (!(u in KEY_USAGE_BITS)) throw new ConfigError(where, `unknown keyUsage "${u}"`);
  const sanTypes = spec.sanTypes ?? [];
  for (const t of sanTypes) if (!['dns', 'ip', 'email', 'uri'].includes(t)) throw new ConfigError(where, `unknown SAN type "${t}"`);
  const maxV = spec.maxValidityDays;
  const defV = spec.defaultValidityDays;
  if (!Number.isInteger(maxV) || maxV < 1 || maxV > 3650) throw new ConfigError(where, 'maxValidityDays must be 1 to 3650');
  if (!Number.isInteger(defV) || defV < 1 || defV > maxV) throw new ConfigError(where, 'defaultValidityDays must be 1 to maxValidityDays');
  const lintWarnings = spec.lintWarnings ?? [];
  if (!Array.isArray(lintWarnings)) throw new ConfigError(where, 'lintWarnings must be a list of lint names');
  for (const l of lintWarnings) if (!LINT_NAMES.has(l)) throw new ConfigError(where, `unknown lint "${String(l).slice(0, 80)}" in lintWarnings`);
  if (spec.description !== undefined && (typeof spec.description !== 'string' || spec.description.length > 200)) throw new ConfigError(where, 'description must be text of at most 200 characters');
  const description = spec.description ?? `${spec.extendedKeyUsage.join(', ')} certificates, ${defV} days by default, at most ${maxV}`;
  const bitsFor = (rsa: boolean) => {
    const b = usages.map((u) => KEY_USAGE_BITS[u]);
    if (rsa && spec.rsaKeyEncipherment && !b.includes(KEY_USAGE_BITS.keyEncipherment)) b.push(KEY_USAGE_BITS.keyEncipherment);
    return der.namedBits(b);
  };
  return Object.freeze({
    name,
    description,
    sanTypes: new Set(sanTypes),
    requireSan: !!spec.requireSan,
    commonNameMustBeSan: !!spec.commonNameMustBeSan,
    maxValidityDays: maxV,
    defaultValidityDays: defV,
    keyUsageExtension: { ec: extension(OID.keyUsage, true, bitsFor(false)), rsa: extension(OID.keyUsage, true, bitsFor(true)) },
    extKeyUsageExtension: extension(OID.extKeyUsage, false, der.seq(...ekuOids.map((o) => der.oid(o)))),
    lintWarnings: new Set(lintWarnings),
  });
}

export class ProfileRegistry {
  private readonly profiles: ReadonlyMap<string, Profile>;

  constructor(extra: Record<string, ProfileSpec> = {}) {
    for (const name of Object.keys(extra)) {
      if (name in BUILTIN_PROFILES) throw new ConfigError(`HSMCA_CONFIG (profile "${name}")`, 'the built-in profiles tls-server and tls-client cannot be replaced');
    }
    const all = new Map<string, Profile>();
    for (const [name, spec] of Object.entries({ ...BUILTIN_PROFILES, ...extra })) all.set(name, compileProfile(name, spec));
    this.profiles = all;
  }

  get(name: string): Profile | undefined {
    return this.profiles.get(name);
  }

  names(): string[] {
    return [...this.profiles.keys()];
  }
}
