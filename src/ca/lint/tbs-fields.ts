import { AsnConvert } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier, Extension, Extensions, Name, SubjectPublicKeyInfo, TBSCertificate, Validity } from '@peculiar/asn1-x509';
import { quickExtension, quickName, quickSpki, quickValidity } from './quick-fields';
import { Tlv, TlvError, childrenOf, readTlv } from './tlv-walk';

/**
 * A TBSCertificate parsed by the @peculiar/asn1-x509 schemas field by field.
 *
 * Parsing the whole structure at once costs more than the rest of issuance
 * together (hundreds of µs), and most of it is the same bytes every time: the
 * signature algorithm, the issuer's name and a profile's fixed extensions.
 * So the outer SEQUENCE is split with the lint's own TLV walker (no code of
 * our DER writer), each field is parsed with its @peculiar schema, and the
 * fields that repeat are parsed once per distinct value (keyed by their
 * bytes, so a value is never taken for another). What varies per certificate
 * (serial, validity, subject, key, subjectAltName, subjectKeyIdentifier) is
 * parsed every time, by the quick readers of quick-fields.ts where the value
 * has a plain layout and by its @peculiar schema otherwise. Anything but the usual v3 layout (unique identifiers,
 * a surprise) goes to the whole-structure parse, which also gives the error
 * for what does not parse.
 */
export function parseTbsCertificate(der: Buffer): TBSCertificate {
  let fields: TBSCertificate | undefined;
  try {
    fields = byFields(der);
  } catch {
    fields = undefined;
  }
  return fields ?? AsnConvert.parse(der, TBSCertificate);
}

/** Extensions whose bytes differ for each certificate (subjectAltName, subjectKeyIdentifier): parsed every time, never kept; with the DER of their extnID, to tell them before parsing. */
const PER_CERTIFICATE = [
  { oid: '2.5.29.17', extnId: Buffer.from('0603551d11', 'hex') },
  { oid: '2.5.29.14', extnId: Buffer.from('0603551d0e', 'hex') },
];

const shared = new Map<string, unknown>();
const MAX_SHARED = 1024;

/** A value parsed once per distinct bytes (per kind), shared read-only by every certificate that repeats it. */
export function parseShared<T>(type: new () => T, kind: string, bytes: Buffer): T {
  const key = `${kind}:${bytes.toString('base64')}`;
  let v = shared.get(key) as T | undefined;
  if (v === undefined) {
    v = AsnConvert.parse(bytes, type);
    if (shared.size >= MAX_SHARED) shared.clear();
    shared.set(key, v);
  }
  return v;
}

const bytesOf = (der: Buffer, t: Tlv) => der.subarray(t.start, t.end);

/** A per-certificate value read by its quick reader, or by its @peculiar schema where the quick reader refuses the layout. */
export function parsePerCertificate<T>(bytes: Buffer, type: new () => T, quick: (b: Buffer) => T): T {
  try {
    return quick(bytes);
  } catch (e) {
    if (!(e instanceof TlvError)) throw e;
    return AsnConvert.parse(bytes, type);
  }
}

function byFields(der: Buffer): TBSCertificate | undefined {
  const top = readTlv(der, 0);
  if (top.tag !== 0x30 || top.end !== der.length) return undefined;
  const f = childrenOf(der, top);
  let version = 0;
  let i = 0;
  if (f[0]?.tag === 0xa0) {
    const inner = childrenOf(der, f[0]);
    if (inner.length !== 1 || inner[0].tag !== 0x02 || inner[0].end - inner[0].body !== 1) return undefined;
    version = der[inner[0].body];
    i = 1;
  }
  const [serial, signature, issuer, validity, subject, spki, ...rest] = f.slice(i);
  if (!spki || serial.tag !== 0x02 || ![signature, issuer, validity, subject, spki].every((t) => t.tag === 0x30)) return undefined;
  let extensions: Extensions | undefined;
  for (const r of rest) {
    if (r.tag !== 0xa3 || extensions) return undefined;
    const seq = childrenOf(der, r);
    if (seq.length !== 1 || seq[0].tag !== 0x30) return undefined;
    extensions = new Extensions(
      childrenOf(der, seq[0]).map((e) => {
        const b = bytesOf(der, e);
        const perCertificate = PER_CERTIFICATE.some((p) => startsWithExtnId(b, p.extnId));
        return perCertificate ? parsePerCertificate(b, Extension, quickExtension) : parseShared(Extension, 'extension', b);
      }),
    );
  }
  return new TBSCertificate({
    version,
    serialNumber: new Uint8Array(der.subarray(serial.body, serial.end)).buffer,
    signature: parseShared(AlgorithmIdentifier, 'algorithm', bytesOf(der, signature)),
    issuer: parseShared(Name, 'issuer', bytesOf(der, issuer)),
    validity: parsePerCertificate(bytesOf(der, validity), Validity, quickValidity),
    subject: parsePerCertificate(bytesOf(der, subject), Name, quickName),
    subjectPublicKeyInfo: parsePerCertificate(bytesOf(der, spki), SubjectPublicKeyInfo, (b) => quickSpki(b, (a) => parseShared(AlgorithmIdentifier, 'algorithm', a))),
    extensions,
  });
}

/** Whether an Extension's DER starts its body with this extnID (its OID element right after the SEQUENCE header). */
function startsWithExtnId(ext: Buffer, oid: Buffer): boolean {
  const header = ext[1] & 0x80 ? 2 + (ext[1] & 0x7f) : 2;
  return ext.subarray(header, header + oid.length).equals(oid);
}

