import { createHash } from 'node:crypto';
import { parseShared, parsePerCertificate, parseTbsCertificate } from './tbs-fields';
import { LintGeneralName, LintGeneralNames } from './lint-general-name';
import { quickGeneralNames, quickKeyIdentifier } from './quick-fields';
import {
  AuthorityKeyIdentifier,
  BasicConstraints,
  ExtendedKeyUsage,
  Extension,
  KeyUsage,
  KeyUsageFlags,
  SubjectKeyIdentifier,
  TBSCertificate,
  id_kp_serverAuth,
} from '@peculiar/asn1-x509';

export { LintGeneralName, LintGeneralNames };

export const OIDS = {
  subjectAltName: '2.5.29.17',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  subjectKeyIdentifier: '2.5.29.14',
  ecPublicKey: '1.2.840.10045.2.1',
  rsaEncryption: '1.2.840.113549.1.1.1',
  commonName: '2.5.4.3',
} as const;

/** The extension values that differ for every certificate, with their quick readers (quick-fields.ts). */
const PER_CERTIFICATE_VALUES: Record<string, (b: Buffer) => unknown> = {
  [OIDS.subjectAltName]: quickGeneralNames,
  [OIDS.subjectKeyIdentifier]: quickKeyIdentifier,
};

/**
 * A TBSCertificate parsed once, with its extensions decoded on first use and
 * kept, so that no rule parses anything twice.
 */
export class ParsedCertificate {
  readonly tbs: TBSCertificate;
  readonly extensions: readonly Extension[];
  private readonly decoded = new Map<string, unknown>();

  constructor(readonly der: Buffer) {
    this.tbs = parseTbsCertificate(der);
    this.extensions = this.tbs.extensions ?? [];
  }

  extension(oid: string): Extension | undefined {
    return this.extensions.find((e) => e.extnID === oid);
  }

  private decode<T>(oid: string, type: new () => T): T | undefined {
    if (this.decoded.has(oid)) return this.decoded.get(oid) as T | undefined;
    const e = this.extension(oid);
    // a profile's fixed extensions are the same bytes every time: decoded once (tbs-fields.ts)
    const value = e && Buffer.from(e.extnValue.buffer);
    const v = value ? (oid in PER_CERTIFICATE_VALUES ? parsePerCertificate(value, type, PER_CERTIFICATE_VALUES[oid] as (b: Buffer) => T) : parseShared(type, `extension ${oid}`, value)) : undefined;
    this.decoded.set(oid, v);
    return v;
  }

  get subjectAltNames(): LintGeneralName[] | undefined {
    return this.decode<LintGeneralName[]>(OIDS.subjectAltName, LintGeneralNames);
  }
  get dnsNames(): string[] {
    return (this.subjectAltNames ?? []).flatMap((g) => (g.dNSName === undefined ? [] : [g.dNSName]));
  }
  get keyUsage(): KeyUsage | undefined {
    return this.decode(OIDS.keyUsage, KeyUsage);
  }
  /** keyUsage bits as KeyUsageFlags (0 when absent) */
  get keyUsageFlags(): number {
    return this.keyUsage?.toNumber() ?? 0;
  }
  get extKeyUsage(): string[] | undefined {
    return this.decode(OIDS.extKeyUsage, ExtendedKeyUsage);
  }
  get basicConstraints(): BasicConstraints | undefined {
    return this.decode(OIDS.basicConstraints, BasicConstraints);
  }
  get authorityKeyIdentifier(): AuthorityKeyIdentifier | undefined {
    return this.decode(OIDS.authorityKeyIdentifier, AuthorityKeyIdentifier);
  }
  get subjectKeyIdentifier(): SubjectKeyIdentifier | undefined {
    return this.decode(OIDS.subjectKeyIdentifier, SubjectKeyIdentifier);
  }
  /** a TLS server certificate in the Baseline Requirements' sense: its EKU names serverAuth */
  get isTlsServer(): boolean {
    return this.extKeyUsage?.includes(id_kp_serverAuth) ?? false;
  }
  get keyType(): 'ec' | 'rsa' | 'other' {
    const a = this.tbs.subjectPublicKeyInfo.algorithm.algorithm;
    return a === OIDS.ecPublicKey ? 'ec' : a === OIDS.rsaEncryption ? 'rsa' : 'other';
  }
  /** RFC 5280 4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING's bits */
  get expectedKeyIdentifier(): Buffer {
    return createHash('sha1').update(Buffer.from(this.tbs.subjectPublicKeyInfo.subjectPublicKey)).digest();
  }
  get serial(): Buffer {
    return Buffer.from(this.tbs.serialNumber);
  }
  get commonNames(): string[] {
    const out: string[] = [];
    for (const rdn of this.tbs.subject) for (const atv of rdn) if (atv.type === OIDS.commonName) out.push(atv.value.toString());
    return out;
  }
}

export { KeyUsageFlags };
