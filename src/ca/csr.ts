import { createPublicKey, verify as cryptoVerify, KeyObject } from 'node:crypto';
import * as der from '../asn1/der';
import { OID } from '../asn1/oids';
import { CaError } from '../errors';
import { validALabel } from './lint/rules/e_idn_dnsname_malformed_unicode';
import { ATTRIBUTES as SUBJECT_ATTRIBUTES, StringType } from './lint/rules/subject-attributes';
import { checkKeyQuality } from './goodkey/key-quality';
import { SanType } from './profiles';

/** Largest CSR accepted (contract section 4). */
export const MAX_CSR_BYTES = 64 * 1024;
export const MAX_SANS = 100;
/** RFC 5280 ub-common-name */
export const MAX_CN_LENGTH = 64;
const MAX_NAME_VALUE = 256;
const MAX_DNS_LENGTH = 253;

export interface SubjectKey {
  kind: 'rsa' | 'ec';
  /** RSA modulus bits, or the curve's size */
  bits: number;
  curve?: 'P-256' | 'P-384';
}

export interface Sans {
  dns: string[];
  ip: string[];
  email: string[];
  uri: string[];
}

export interface ParsedCsr {
  /** the subject Name, DER, exactly as in the CSR */
  subject: Buffer;
  /** RFC 4514-style text, for records and display */
  subjectText: string;
  commonNames: string[];
  /** DER SubjectPublicKeyInfo */
  spki: Buffer;
  /** contents of the subjectPublicKey BIT STRING (for the subject key identifier) */
  publicKeyBits: Buffer;
  key: SubjectKey;
  sans: Sans;
  /** SAN types present that no profile can carry (otherName, directoryName, ...) */
  otherSanTypes: string[];
}

const malformed = (detail: string) => new CaError('badRequest', 'malformedCsr', `the CSR is malformed: ${detail}`);

const SIGNATURE_HASH: Record<string, string> = {
  [OID.ecdsaWithSHA256]: 'sha256',
  [OID.ecdsaWithSHA384]: 'sha384',
  [OID.ecdsaWithSHA512]: 'sha512',
  [OID.sha256WithRSAEncryption]: 'sha256',
  [OID.sha384WithRSAEncryption]: 'sha384',
  [OID.sha512WithRSAEncryption]: 'sha512',
};

const NAME_ATTRS: Record<string, string> = {
  '2.5.4.3': 'CN',
  '2.5.4.6': 'C',
  '2.5.4.7': 'L',
  '2.5.4.8': 'ST',
  '2.5.4.10': 'O',
  '2.5.4.11': 'OU',
  '2.5.4.5': 'serialNumber',
  '0.9.2342.19200300.100.1.25': 'DC',
  '0.9.2342.19200300.100.1.1': 'UID',
  [OID.emailAddress]: 'emailAddress',
};

/** Decodes the PEM text of a CSR; 400 when it is not one, 413 when it is too large. */
export function csrFromPem(pem: unknown): Buffer {
  if (typeof pem !== 'string' || pem.length === 0) {
    throw new CaError('badRequest', 'malformedCsr', 'field "csr" must be a PEM-encoded PKCS#10 certificate request');
  }
  if (pem.length > MAX_CSR_BYTES) throw new CaError('tooLarge', 'csrTooLarge', `the CSR is larger than ${MAX_CSR_BYTES} bytes`);
  const derBytes = der.pemDecode(pem, ['CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST']);
  if (!derBytes) throw new CaError('badRequest', 'malformedCsr', 'field "csr" holds no PEM "CERTIFICATE REQUEST" block');
  return derBytes;
}

interface CheckedCsr {
  csr: ParsedCsr;
  tbs: Buffer;
  hash: string;
  signature: Buffer;
  keyObject: KeyObject;
}

/** Structure, accepted key types and algorithms: everything but the signature itself. */
function checkCsr(der: Buffer): CheckedCsr {
  let parsed: Omit<ParsedCsr, 'key'> & { tbs: Buffer; sigOid: string; signature: Buffer };
  try {
    parsed = parseStructure(der);
  } catch (e) {
    if (e instanceof CaError) throw e;
    throw malformed((e as Error).message);
  }
  // Weak keys (sizes, exponent, small factors, Fermat, ROCA, points off the curve) before the key is imported.
  checkKeyQuality(parsed.spki, malformed);
  let keyObject: KeyObject;
  try {
    keyObject = publicKeyOf(parsed.spki);
  } catch {
    throw malformed('its public key cannot be read');
  }
  const key = checkKey(keyObject);
  const hash = SIGNATURE_HASH[parsed.sigOid];
  if (!hash) {
    throw new CaError('policy', 'unsupportedSignatureAlgorithm', `the CSR is signed with an algorithm hsmca does not accept (${parsed.sigOid})`);
  }
  const expectEc = parsed.sigOid.startsWith('1.2.840.10045.');
  if (expectEc !== (key.kind === 'ec')) throw malformed('its signature algorithm does not match its key');
  const { tbs, sigOid: _s, signature, ...rest } = parsed;
  return { csr: { ...rest, key }, tbs, hash, signature, keyObject };
}

const SIGNATURE_INVALID = () => new CaError('badRequest', 'csrSignatureInvalid', "the CSR's signature does not verify with its own public key (no proof of possession)");

/**
 * Parses and checks a PKCS#10 request (RFC 2986): structure, accepted key
 * types, and the request's own signature (proof of possession), verified with
 * node:crypto rather than the HSM. Synchronous: a P-256 verification costs
 * about 55 µs, no more than a round trip to the thread pool and back, which
 * also wakes another thread (measured: issuance is faster this way).
 */
export function parseCsrSync(der: Buffer): ParsedCsr {
  const c = checkCsr(der);
  let ok = false;
  try {
    ok = cryptoVerify(c.hash, c.tbs, { key: c.keyObject, dsaEncoding: 'der' }, c.signature);
  } catch {
    ok = false;
  }
  if (!ok) throw SIGNATURE_INVALID();
  return c.csr;
}

const EC_CURVES: Record<string, { crv: string; size: number }> = {
  [OID.prime256v1]: { crv: 'P-256', size: 32 },
  [OID.secp384r1]: { crv: 'P-384', size: 48 },
};

/**
 * The CSR's public key as a KeyObject. OpenSSL's DER decoder costs about three
 * times as much as importing the same key from its JWK form, so the common
 * shapes (uncompressed EC points, RSA) are taken apart here; anything else
 * goes through the decoder, which also produces the errors.
 */
function publicKeyOf(spki: Buffer): KeyObject {
  try {
    const [algId, bitsEl] = der.children(der.readTop(spki), 2);
    const [algOid, param] = der.children(algId, 2);
    const bits = der.content(bitsEl).subarray(1);
    const alg = der.readOid(algOid);
    if (alg === OID.ecPublicKey && param?.tag === der.Tag.OID) {
      const curve = EC_CURVES[der.readOid(param)];
      if (curve && bits.length === 1 + 2 * curve.size && bits[0] === 0x04) {
        const x = bits.subarray(1, 1 + curve.size).toString('base64url');
        const y = bits.subarray(1 + curve.size).toString('base64url');
        return createPublicKey({ key: { kty: 'EC', crv: curve.crv, x, y }, format: 'jwk' });
      }
    } else if (alg === OID.rsaEncryption) {
      const [n, e] = der.children(der.readTop(bits), 2);
      const strip = (b: Buffer) => (b.length > 1 && b[0] === 0 ? b.subarray(1) : b);
      return createPublicKey({
        key: { kty: 'RSA', n: strip(der.content(n)).toString('base64url'), e: strip(der.content(e)).toString('base64url') },
        format: 'jwk',
      });
    }
  } catch {
    // fall through to the full decoder
  }
  return createPublicKey({ key: spki, format: 'der', type: 'spki' });
}

function checkKey(k: KeyObject): SubjectKey {
  const d = k.asymmetricKeyDetails ?? {};
  if (k.asymmetricKeyType === 'rsa') {
    // size and exponent were checked with the modulus itself (checkKeyQuality)
    return { kind: 'rsa', bits: d.modulusLength ?? 0 };
  }
  if (k.asymmetricKeyType === 'ec') {
    if (d.namedCurve === 'prime256v1') return { kind: 'ec', bits: 256, curve: 'P-256' };
    if (d.namedCurve === 'secp384r1') return { kind: 'ec', bits: 384, curve: 'P-384' };
    throw new CaError('policy', 'unsupportedKey', `ECDSA keys must be on P-256 or P-384; this one is on ${d.namedCurve ?? 'an unnamed curve'}`);
  }
  throw new CaError('policy', 'unsupportedKey', `key type ${k.asymmetricKeyType ?? 'unknown'} is not accepted (RSA 2048-8192, ECDSA P-256 or P-384)`);
}

function parseStructure(csr: Buffer) {
  const top = der.readTop(csr);
  const [info, sigAlg, sig, ...extra] = der.children(der.expect(top, der.Tag.SEQUENCE, 'a CertificationRequest SEQUENCE'), 3);
  if (extra.length) throw new der.DerError('extra fields');
  der.expect(info, der.Tag.SEQUENCE, 'certificationRequestInfo');
  der.expect(sigAlg, der.Tag.SEQUENCE, 'signatureAlgorithm');
  der.expect(sig, der.Tag.BIT_STRING, 'signature BIT STRING');
  const sigOid = der.readOid(der.children(sigAlg, 2)[0]);
  const sigContent = der.content(sig);
  if (sigContent.length < 2 || sigContent[0] !== 0) throw new der.DerError('bad signature BIT STRING');

  const fields = der.children(info, 4);
  if (fields.length < 3) throw new der.DerError('certificationRequestInfo is incomplete');
  const [version, subject, spki, attrs] = fields;
  if (der.readSmallInt(version) !== 0) throw new der.DerError('unsupported CSR version');
  der.expect(subject, der.Tag.SEQUENCE, 'subject Name');
  der.expect(spki, der.Tag.SEQUENCE, 'subjectPKInfo');
  const spkiParts = der.children(spki, 2);
  const bitString = der.expect(spkiParts[1], der.Tag.BIT_STRING, 'subjectPublicKey');
  const bitContent = der.content(bitString);
  if (bitContent.length < 2 || bitContent[0] !== 0) throw new der.DerError('bad subjectPublicKey');

  const { text, commonNames } = readName(subject);
  const sans: Sans = { dns: [], ip: [], email: [], uri: [] };
  const otherSanTypes: string[] = [];
  if (attrs) {
    if (attrs.tag !== 0xa0) throw new der.DerError('expected attributes [0]');
    for (const attr of der.children(attrs, 32)) {
      const [type, values] = der.children(der.expect(attr, der.Tag.SEQUENCE, 'Attribute'), 2);
      if (der.readOid(type) !== OID.extensionRequest) continue;
      const exts = der.children(der.expect(values, der.Tag.SET, 'attribute values'), 1)[0];
      for (const ext of der.children(der.expect(exts, der.Tag.SEQUENCE, 'Extensions'), 64)) {
        const parts = der.children(der.expect(ext, der.Tag.SEQUENCE, 'Extension'), 3);
        if (der.readOid(parts[0]) !== OID.subjectAltName) continue;
        const value = der.expect(parts[parts.length - 1], der.Tag.OCTET_STRING, 'extnValue');
        readGeneralNames(der.content(value), sans, otherSanTypes);
      }
    }
  }
  return {
    tbs: der.raw(info),
    sigOid,
    signature: sigContent.subarray(1),
    subject: der.raw(subject),
    subjectText: text,
    commonNames,
    spki: der.raw(spki),
    publicKeyBits: bitContent.subarray(1),
    sans,
    otherSanTypes,
  };
}

const STRING_TYPE_OF_TAG: Record<number, StringType> = { [der.Tag.UTF8_STRING]: 'utf8String', [der.Tag.PRINTABLE_STRING]: 'printableString', [der.Tag.IA5_STRING]: 'ia5String' };
const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

/**
 * A subject attribute as a certificate may carry it (RFC 5280 4.1.2.6 and
 * appendix A): the string types its attribute allows, its upper bound, a
 * PrintableString's alphabet, a two-letter country. These are the rules the
 * pre-issuance lint holds certificates to (lint/rules/subject-attributes.ts):
 * checked here, a client's CSR that breaks one gets 422 naming it, not a
 * refused signature.
 */
function checkSubjectAttribute(oid: string, tag: number, value: string): void {
  const spec = SUBJECT_ATTRIBUTES[oid];
  const name = spec?.name ?? NAME_ATTRS[oid] ?? oid;
  const allowed = spec?.types ?? ['utf8String', 'printableString'];
  const type = STRING_TYPE_OF_TAG[tag];
  if (!type || !allowed.includes(type)) {
    throw new CaError('policy', 'invalidSubject', `the subject's ${name} must be a ${allowed.map((t) => t.replace('String', ' string').replace('utf8', 'UTF-8')).join(' or ')}`);
  }
  if (spec && [...value].length > spec.max) throw new CaError('policy', 'nameTooLong', `the subject's ${name} is longer than ${spec.max} characters`);
  if (type === 'printableString' && !PRINTABLE.test(value)) throw new CaError('policy', 'invalidSubject', `the subject's ${name} has characters a printable string cannot hold`);
  if (spec?.name === 'countryName' && !/^[A-Za-z]{2}$/.test(value)) throw new CaError('policy', 'invalidSubject', 'the subject\'s countryName must be two letters');
}

/** A DER Name as the API shows subjects (RFC 4514 order, most significant last). */
export function nameText(name: Buffer): string {
  return readName(der.readTop(name)).text;
}

function readName(name: der.Element): { text: string; commonNames: string[] } {
  const parts: string[] = [];
  const commonNames: string[] = [];
  for (const rdn of der.children(name, 32)) {
    for (const atv of der.children(der.expect(rdn, der.Tag.SET, 'RelativeDistinguishedName'), 8)) {
      const [type, value] = der.children(der.expect(atv, der.Tag.SEQUENCE, 'AttributeTypeAndValue'), 2);
      const oid = der.readOid(type);
      if (!value) throw new der.DerError('attribute without a value');
      let v: string;
      try {
        v = der.readString(value);
      } catch {
        v = '#' + der.raw(value).toString('hex');
      }
      if (v.length > MAX_NAME_VALUE) throw new CaError('policy', 'nameTooLong', `a subject attribute is longer than ${MAX_NAME_VALUE} characters`);
      if (oid === OID.commonName) {
        if (v.length > MAX_CN_LENGTH) throw new CaError('policy', 'nameTooLong', `the subject common name is longer than ${MAX_CN_LENGTH} characters`);
        commonNames.push(v);
      }
      checkSubjectAttribute(oid, value.tag, v);
      parts.push(`${NAME_ATTRS[oid] ?? oid}=${v.replace(/([,+"\\<>;=])/g, '\\$1')}`);
    }
  }
  return { text: parts.reverse().join(','), commonNames };
}

function readGeneralNames(value: Buffer, sans: Sans, other: string[]): void {
  const seq = der.readTop(value);
  der.expect(seq, der.Tag.SEQUENCE, 'GeneralNames');
  const names = der.children(seq, 10 * MAX_SANS);
  if (names.length > MAX_SANS) throw new CaError('policy', 'tooManySans', `the CSR asks for more than ${MAX_SANS} subject alternative names`);
  for (const n of names) {
    const c = der.content(n);
    switch (n.tag) {
      case 0x82:
        sans.dns.push(ascii(c, 'dNSName'));
        break;
      case 0x81:
        sans.email.push(ascii(c, 'rfc822Name'));
        break;
      case 0x86:
        sans.uri.push(ascii(c, 'uniformResourceIdentifier'));
        break;
      case 0x87:
        sans.ip.push(ipToString(c));
        break;
      default:
        other.push(`[${n.tag & 0x1f}]`);
    }
  }
}

function ascii(b: Buffer, what: string): string {
  if (b.length === 0 || b.length > 1024) throw new der.DerError(`empty or over-long ${what}`);
  for (const x of b) if (x < 0x20 || x > 0x7e) throw new der.DerError(`${what} must be printable ASCII`);
  return b.toString('latin1');
}

export function ipToString(b: Buffer): string {
  if (b.length === 4) return [...b].join('.');
  if (b.length === 16) {
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
    // RFC 5952: compress the longest run of zero groups
    let best = -1,
      bestLen = 0;
    for (let i = 0; i < 8; ) {
      if (groups[i] !== '0') {
        i++;
        continue;
      }
      let j = i;
      while (j < 8 && groups[j] === '0') j++;
      if (j - i > bestLen && j - i > 1) {
        best = i;
        bestLen = j - i;
      }
      i = j;
    }
    if (best < 0) return groups.join(':');
    return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
  }
  throw new der.DerError('iPAddress must be 4 or 16 octets');
}

export function ipToBytes(ip: string): Buffer | undefined {
  const v4 = ip.match(/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/);
  if (v4) {
    const parts = v4.slice(1).map(Number);
    return parts.every((p) => p <= 255) ? Buffer.from(parts) : undefined;
  }
  if (!ip.includes(':')) return undefined;
  const halves = ip.split('::');
  if (halves.length > 2) return undefined;
  const parse = (s: string) => (s ? s.split(':') : []);
  const head = parse(halves[0]);
  const tail = halves.length === 2 ? parse(halves[1]) : [];
  const fill = 8 - head.length - tail.length;
  if ((halves.length === 2 && fill < 1) || (halves.length === 1 && fill !== 0)) return undefined;
  const groups = [...head, ...Array(halves.length === 2 ? fill : 0).fill('0'), ...tail];
  if (groups.length !== 8 || !groups.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) return undefined;
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** A DNS name as RFC 5280 4.2.1.6 and the CA/Browser Forum allow: LDH labels, one leading wildcard at most. */
export function validDnsName(name: string): boolean {
  if (name.length === 0 || name.length > MAX_DNS_LENGTH) return false;
  const labels = name.split('.');
  if (labels.length < 1) return false;
  // an xn-- label must be a valid A-label (RFC 5890 2.3.2.1), as the lint checks
  return labels.every((l, i) => (i === 0 && l === '*' && labels.length > 2) || (/^(?!-)[a-z0-9-]{1,63}(?<!-)$/.test(l) && (!/^xn--/.test(l) || validALabel(l))));
}

export function sanTypesPresent(s: Sans): SanType[] {
  return (Object.keys(s) as SanType[]).filter((k) => s[k].length > 0);
}
