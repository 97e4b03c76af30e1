import { OctetString } from '@peculiar/asn1-schema';
import {
  AlgorithmIdentifier,
  AttributeTypeAndValue,
  AttributeValue,
  Extension,
  Name,
  RelativeDistinguishedName,
  SubjectKeyIdentifier,
  SubjectPublicKeyInfo,
  Time,
  Validity,
} from '@peculiar/asn1-x509';
import { LintGeneralName, LintGeneralNames } from './lint-general-name';
import { Tlv, TlvError, childrenOf, readTlv } from './tlv-walk';

/**
 * The fields that differ for every certificate (validity, subject, key,
 * subjectAltName, subjectKeyIdentifier), read straight into the
 * @peculiar/asn1-x509 objects the rules use, with the lint's own TLV walker.
 *
 * The @peculiar schema parser costs 13-26 µs per field (it builds an asn1js
 * tree and walks a schema over it); these readers cost about a tenth of that.
 * They take only the plain DER layouts hsmca writes and a CSR can carry, and
 * refuse (TlvError) anything else: another string type, a time that is not
 * the strict DER form, UTF-8 that does not round-trip, a BIT STRING with
 * unused bits, a GeneralName of another kind. A refused field is parsed by
 * the @peculiar schema instead (tbs-fields.ts), so an unusual value gets the
 * same reading as before and a malformed one the same error. The test
 * "quick readers agree with the @peculiar schemas" holds the two to the same
 * result.
 */

const refuse = (why: string): never => {
  throw new TlvError(why);
};

const whole = (b: Buffer): Tlv => {
  const t = readTlv(b, 0);
  if (t.end !== b.length) refuse('trailing bytes');
  return t;
};

const oids = new Map<string, string>();

/** An OBJECT IDENTIFIER's content octets as dotted text (minimal base-128 subidentifiers only). */
export function oidText(b: Buffer, t: Tlv): string {
  if (t.tag !== 0x06 || t.end === t.body) refuse('not an OBJECT IDENTIFIER');
  const key = b.toString('latin1', t.body, t.end);
  const known = oids.get(key);
  if (known !== undefined) return known;
  const arcs: number[] = [];
  let v = 0;
  let fresh = true;
  for (let i = t.body; i < t.end; i++) {
    const o = b[i];
    if (fresh && o === 0x80) refuse('OID subidentifier not minimal');
    if (v > 0x1fffffffffff) refuse('OID arc too large');
    v = v * 128 + (o & 0x7f);
    fresh = !(o & 0x80);
    if (fresh) {
      if (arcs.length === 0) arcs.push(v < 80 ? Math.floor(v / 40) : 2, v < 80 ? v % 40 : v - 80);
      else arcs.push(v);
      v = 0;
    }
  }
  if (!fresh) refuse('OID ends inside a subidentifier');
  const text = arcs.join('.');
  if (oids.size > 4096) oids.clear();
  oids.set(key, text);
  return text;
}

const arrayBuffer = (b: Buffer, from: number, to: number): ArrayBuffer => new Uint8Array(b.subarray(from, to)).buffer;

const digits = (s: string, at: number, n: number): number => {
  let v = 0;
  for (let i = at; i < at + n; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) refuse('a time with a non-digit');
    v = v * 10 + c;
  }
  return v;
};

/** UTCTime YYMMDDHHMMSSZ or GeneralizedTime YYYYMMDDHHMMSSZ, the only forms DER allows in a certificate (RFC 5280 4.1.2.5). */
function quickTime(b: Buffer, t: Tlv): Time {
  const s = b.toString('latin1', t.body, t.end);
  const utc = t.tag === 0x17;
  if (!(utc ? s.length === 13 : t.tag === 0x18 && s.length === 15) || s[s.length - 1] !== 'Z') refuse('not a DER time');
  let year = utc ? digits(s, 0, 2) : digits(s, 0, 4);
  if (utc) year += year < 50 ? 2000 : 1900;
  const o = utc ? 2 : 4;
  const [mo, d, h, mi, se] = [digits(s, o, 2), digits(s, o + 2, 2), digits(s, o + 4, 2), digits(s, o + 6, 2), digits(s, o + 8, 2)];
  const date = new Date(Date.UTC(year, mo - 1, d, h, mi, se));
  if (year < 100) date.setUTCFullYear(year);
  if (date.getUTCMonth() !== mo - 1 || date.getUTCDate() !== d || date.getUTCHours() !== h || date.getUTCMinutes() !== mi || date.getUTCSeconds() !== se) refuse('a time that is not a calendar date');
  return new Time(utc ? { utcTime: date } : { generalTime: date });
}

export function quickValidity(b: Buffer): Validity {
  const f = childrenOf(b, whole(b));
  if (f.length !== 2) refuse('Validity is not two times');
  const v = new Validity();
  v.notBefore = quickTime(b, f[0]);
  v.notAfter = quickTime(b, f[1]);
  return v;
}

/** DirectoryString and IA5String values (PrintableString and IA5String one octet per character, as asn1js reads them); any other type is refused. */
function quickValue(b: Buffer, t: Tlv): AttributeValue {
  switch (t.tag) {
    case 0x0c: {
      const s = b.toString('utf8', t.body, t.end);
      if (Buffer.byteLength(s) !== t.end - t.body || s.includes('\ufffd')) refuse('UTF8String that does not round-trip');
      return new AttributeValue({ utf8String: s });
    }
    case 0x13:
      return new AttributeValue({ printableString: b.toString('latin1', t.body, t.end) });
    case 0x16:
      return new AttributeValue({ ia5String: b.toString('latin1', t.body, t.end) });
    default:
      return refuse('another string type');
  }
}

export function quickName(b: Buffer): Name {
  const top = whole(b);
  if (top.tag !== 0x30) refuse('Name is not a SEQUENCE');
  return new Name(
    childrenOf(b, top).map((set) => {
      if (set.tag !== 0x31) refuse('RDN is not a SET');
      return new RelativeDistinguishedName(
        childrenOf(b, set).map((atv) => {
          const p = atv.tag === 0x30 ? childrenOf(b, atv) : refuse('attribute is not a SEQUENCE');
          if (p.length !== 2) refuse('attribute is not a type and a value');
          return new AttributeTypeAndValue({ type: oidText(b, p[0]), value: quickValue(b, p[1]) });
        }),
      );
    }),
  );
}

export function quickSpki(b: Buffer, algorithm: (der: Buffer) => AlgorithmIdentifier): SubjectPublicKeyInfo {
  const top = whole(b);
  const f = top.tag === 0x30 ? childrenOf(b, top) : refuse('SPKI is not a SEQUENCE');
  if (f.length !== 2 || f[0].tag !== 0x30 || f[1].tag !== 0x03 || f[1].end === f[1].body || b[f[1].body] !== 0) refuse('not a plain SPKI');
  return new SubjectPublicKeyInfo({ algorithm: algorithm(b.subarray(f[0].start, f[0].end)), subjectPublicKey: arrayBuffer(b, f[1].body + 1, f[1].end) });
}

/** Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE (DER: present only as TRUE), extnValue OCTET STRING }. */
export function quickExtension(b: Buffer): Extension {
  const top = whole(b);
  const f = top.tag === 0x30 ? childrenOf(b, top) : refuse('Extension is not a SEQUENCE');
  let critical = false;
  if (f.length === 3) {
    if (f[1].tag !== 0x01 || f[1].end - f[1].body !== 1 || b[f[1].body] !== 0xff) refuse('critical is not DER TRUE');
    critical = true;
  } else if (f.length !== 2) refuse('Extension is not two or three fields');
  const value = f[f.length - 1];
  if (value.tag !== 0x04) refuse('extnValue is not an OCTET STRING');
  return new Extension({ extnID: oidText(b, f[0]), critical, extnValue: new OctetString(b.subarray(value.body, value.end)) });
}

/** GeneralNames with rfc822Name, dNSName, URI (IA5, one octet per character) and iPAddress; any other kind is refused. */
export function quickGeneralNames(b: Buffer): LintGeneralNames {
  const top = whole(b);
  if (top.tag !== 0x30) refuse('GeneralNames is not a SEQUENCE');
  const names = childrenOf(b, top).map((g) => {
    const n = new LintGeneralName();
    const text = () => b.toString('latin1', g.body, g.end);
    if (g.tag === 0x81) n.rfc822Name = text();
    else if (g.tag === 0x82) n.dNSName = text();
    else if (g.tag === 0x86) n.uniformResourceIdentifier = text();
    else if (g.tag === 0x87) n.iPAddress = new OctetString(b.subarray(g.body, g.end));
    else refuse('another kind of GeneralName');
    return n;
  });
  return new LintGeneralNames(names);
}

export function quickKeyIdentifier(b: Buffer): SubjectKeyIdentifier {
  const t = whole(b);
  if (t.tag !== 0x04) refuse('keyIdentifier is not an OCTET STRING');
  return new SubjectKeyIdentifier(b.subarray(t.body, t.end));
}
