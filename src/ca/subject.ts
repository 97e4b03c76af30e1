import * as der from '../asn1/der';
import { OID } from '../asn1/oids';
import { CaError } from '../errors';

/** The subject attributes a scope may allow by short name (RFC 5280 4.1.2.4, appendix A). */
export const SUBJECT_ATTRIBUTE_OIDS: Record<string, string> = {
  C: '2.5.4.6',
  ST: '2.5.4.8',
  L: '2.5.4.7',
  O: '2.5.4.10',
  OU: '2.5.4.11',
  serialNumber: '2.5.4.5',
};
const SHORT_NAME_OF: Record<string, string> = Object.fromEntries(Object.entries(SUBJECT_ATTRIBUTE_OIDS).map(([k, v]) => [v, k]));

/** One AttributeTypeAndValue of a Name, with its DER as sent. */
export interface NameAttribute {
  oid: string;
  /** the value as text (a value that is not a string reads as '#' and its hex) */
  value: string;
  /** the AttributeTypeAndValue DER */
  der: Buffer;
}

/** The attributes of a DER Name, in order (the RDNs of a multi-valued RDN one after another). */
export function nameAttributes(name: Buffer): NameAttribute[] {
  const out: NameAttribute[] = [];
  for (const rdn of der.children(der.readTop(name), 32)) {
    for (const atv of der.children(der.expect(rdn, der.Tag.SET, 'RelativeDistinguishedName'), 8)) {
      const [type, value] = der.children(der.expect(atv, der.Tag.SEQUENCE, 'AttributeTypeAndValue'), 2);
      if (!value) throw new der.DerError('attribute without a value');
      let text: string;
      try {
        text = der.readString(value);
      } catch {
        text = '#' + der.raw(value).toString('hex');
      }
      out.push({ oid: der.readOid(type), value: text, der: der.raw(atv) });
    }
  }
  return out;
}

/** A Name of the given attributes, one per RDN, in order. */
export function buildName(attributes: NameAttribute[]): Buffer {
  return der.seq(...attributes.map((a) => der.set(a.der)));
}

/**
 * A Name as RFC 5280 7.1 compares names, near enough to catch look-alikes:
 * attribute types in order, values case-folded with white space collapsed,
 * whatever string type carried them.
 */
function comparableName(name: Buffer): string {
  return JSON.stringify(nameAttributes(name).map((a) => [a.oid, a.value.normalize('NFKC').toLowerCase().replace(/\s+/g, ' ').trim()]));
}

/**
 * Refuses a subject that names one of the CA's own certificates: a leaf
 * whose subject equals its issuer's looks self-issued to path builders and
 * confuses every tool that chains by name (RFC 5280 6.1: names chain
 * certificates). Applies to every caller, admins too.
 */
export function caSubjectGuard(caNames: Buffer[]): (subject: Buffer) => void {
  const taken = new Set(caNames.map(comparableName));
  return (subject) => {
    if (subject.length > 2 && taken.has(comparableName(subject))) {
      throw new CaError('policy', 'subjectIsCa', 'the subject names one of this CA’s own certificates');
    }
  };
}

/** What a scope says of subjects: which attribute values it allows besides the names it is limited to. */
export type SubjectAttributeScope = Record<string, string[]>;

/** Validates a scope's `subjectAttributes` at token creation: short names from SUBJECT_ATTRIBUTE_OIDS to lists of values ('*' for any). */
export function parseSubjectAttributeScope(input: unknown): SubjectAttributeScope {
  const bad = (why: string) => new CaError('badRequest', 'invalidScope', `scope.subjectAttributes ${why}`);
  if (!input || typeof input !== 'object' || Array.isArray(input)) throw bad('must be an object of attribute names to lists of values');
  const out: SubjectAttributeScope = {};
  for (const [k, v] of Object.entries(input as Record<string, unknown>)) {
    if (!(k in SUBJECT_ATTRIBUTE_OIDS)) throw bad(`names "${k.slice(0, 20)}"; allowed: ${Object.keys(SUBJECT_ATTRIBUTE_OIDS).join(', ')}`);
    if (!Array.isArray(v) || v.length === 0 || v.length > 100 || !v.every((x) => typeof x === 'string' && x.length > 0 && x.length <= 128)) {
      throw bad(`.${k} must be a list of 1 to 100 values (each 1 to 128 characters, or "*" for any)`);
    }
    out[k] = v as string[];
  }
  return out;
}

/**
 * The subject of a certificate for a token limited to names: built from the
 * CSR's attributes, each of which must be allowed. A common name or an
 * emailAddress is a name the token asks for, so it must be in scope
 * (`nameAllowed`); any other attribute must be listed with its value in the
 * scope's subjectAttributes. Anything else refuses the request, naming it:
 * a scoped token never chooses an organisation or a unit that its scope does
 * not grant (a Kubernetes API server reads O as the group: O=system:masters
 * would make its holder a cluster admin).
 */
export function scopedSubject(csrSubject: Buffer, nameAllowed: (kind: 'cn' | 'email', value: string) => boolean, allowed: SubjectAttributeScope | undefined): Buffer {
  const attributes = nameAttributes(csrSubject);
  // the names first: they are what the request is for
  for (const a of attributes) {
    const kind = a.oid === OID.commonName ? 'cn' : a.oid === OID.emailAddress ? 'email' : undefined;
    if (kind && !nameAllowed(kind, a.value)) throw new CaError('forbidden', 'nameNotAllowed', `this token may not request the name "${a.value.slice(0, 80)}"`);
  }
  for (const a of attributes) {
    if (a.oid === OID.commonName || a.oid === OID.emailAddress) continue;
    const short = SHORT_NAME_OF[a.oid];
    const values = short ? allowed?.[short] : undefined;
    if (!values || !(values.includes('*') || values.includes(a.value))) {
      throw new CaError('forbidden', 'subjectNotAllowed', `this token may not put ${short ?? a.oid}=${a.value.slice(0, 80)} in a subject`);
    }
  }
  return buildName(attributes);
}
