import { createHash, randomBytes } from 'node:crypto';
import * as der from '../asn1/der';
import { OID } from '../asn1/oids';
import type { Signer } from '../hsm/hsm';
import { keyAlgorithmInfo } from '../hsm/key-algorithm';
import { extension } from './profiles';

/**
 * Certificates written directly in DER (RFC 5280 section 4.1). Only the fields
 * that vary per certificate are encoded per request; the issuer's name, key
 * identifier and links are encoded once (see IssuerContext).
 */
export interface TbsFields {
  serial: Buffer;
  signatureAlgorithm: Buffer;
  issuer: Buffer;
  notBefore: Date;
  notAfter: Date;
  subject: Buffer;
  spki: Buffer;
  extensions: Buffer[];
}

const VERSION_3 = der.ctx(0, der.int(2));

export function tbsCertificate(f: TbsFields): Buffer {
  return der.seq(
    VERSION_3,
    der.int(f.serial),
    f.signatureAlgorithm,
    f.issuer,
    der.seq(der.time(f.notBefore), der.time(f.notAfter)),
    f.subject,
    f.spki,
    der.ctx(3, der.seq(...f.extensions)),
  );
}

/** Signs a TBSCertificate with an HSM signer and wraps it into a Certificate. */
export async function signCertificate(tbs: Buffer, signer: Signer): Promise<Buffer> {
  const sig = await signer.sign(tbs);
  return der.seq(tbs, keyAlgorithmInfo(signer.algorithm).signatureAlgorithm, der.bits(sig));
}

/**
 * A serial number (RFC 5280 4.1.2.2, CA/Browser Forum 7.1): 16 octets from the
 * CSPRNG, top bit cleared so it is positive and the next one set so the
 * encoding is always 16 octets: 126 random bits.
 */
export function randomSerial(): Buffer {
  if (randomPool.length - randomAt < 16) {
    randomPool = randomBytes(4096);
    randomAt = 0;
  }
  // a copy: the pool's bytes are handed out once
  const b = Buffer.from(randomPool.subarray(randomAt, randomAt + 16));
  randomPool.fill(0, randomAt, randomAt + 16);
  randomAt += 16;
  b[0] = (b[0] & 0x7f) | 0x40;
  return b;
}

// CSPRNG output drawn 4 KiB at a time: one call into OpenSSL per 256 serials
// rather than one each (each call costs far more than the 16 bytes).
let randomPool = Buffer.alloc(0);
let randomAt = 0;

/** Key identifier, RFC 5280 4.2.1.2 method (1): SHA-1 of the subjectPublicKey bits. */
export function keyIdentifier(publicKeyBits: Buffer): Buffer {
  return createHash('sha1').update(publicKeyBits).digest();
}

/** Contract spelling of a serial: lowercase hex without leading zero octets. */
export function serialHex(serial: Buffer): string {
  let i = 0;
  while (i < serial.length - 1 && serial[i] === 0) i++;
  return serial.subarray(i).toString('hex');
}

/** Accepts lowercase, uppercase and colon-separated hex; undefined when it is not a serial. */
export function normalizeSerial(input: string): string | undefined {
  const s = input.trim().replace(/:/g, '').toLowerCase();
  if (!/^[0-9a-f]{1,40}$/.test(s)) return undefined;
  const even = s.length % 2 ? '0' + s : s;
  return serialHex(Buffer.from(even, 'hex'));
}

// ---------------------------------------------------------------- extensions

export const ext = {
  basicConstraintsEndEntity: extension(OID.basicConstraints, true, der.seq()),
  basicConstraintsCa: (pathLen?: number) =>
    extension(OID.basicConstraints, true, der.seq(der.bool(true), ...(pathLen === undefined ? [] : [der.int(pathLen)]))),
  caKeyUsage: extension(OID.keyUsage, true, der.namedBits([0, 5, 6])), // digitalSignature, keyCertSign, cRLSign
  subjectKeyIdentifier: (keyId: Buffer) => extension(OID.subjectKeyIdentifier, false, der.octets(keyId)),
  authorityKeyIdentifier: (keyId: Buffer) => extension(OID.authorityKeyIdentifier, false, der.seq(der.ctx(0, keyId, false))),
  authorityInfoAccess: (ocspUrl: string | undefined, caIssuersUrl: string) =>
    extension(
      OID.authorityInfoAccess,
      false,
      der.seq(
        ...(ocspUrl ? [der.seq(der.oid(OID.ocsp), der.ctx(6, Buffer.from(ocspUrl, 'latin1'), false))] : []),
        der.seq(der.oid(OID.caIssuers), der.ctx(6, Buffer.from(caIssuersUrl, 'latin1'), false)),
      ),
    ),
  crlDistributionPoints: (url: string) =>
    extension(OID.cRLDistributionPoints, false, der.seq(der.seq(der.ctx(0, der.ctx(0, der.ctx(6, Buffer.from(url, 'latin1'), false)))))),
  extKeyUsage: (oids: string[]) => extension(OID.extKeyUsage, false, der.seq(...oids.map((o) => der.oid(o)))),
  ocspNoCheck: extension(OID.ocspNoCheck, false, der.nul()),
};

// ---------------------------------------------------------------- reading

export interface CertificateBasics {
  tbs: Buffer;
  serial: Buffer;
  issuer: Buffer;
  subject: Buffer;
  spki: Buffer;
  publicKeyBits: Buffer;
  notBefore: Date;
  notAfter: Date;
}

/** Reads the fields hsmca needs from one of its own certificates. */
export function readCertificate(cert: Buffer): CertificateBasics {
  const top = der.readTop(cert);
  const [tbs] = der.children(top);
  const f = der.children(tbs);
  const off = f[0].tag === 0xa0 ? 1 : 0;
  const [serial, , issuer, validity, subject, spki] = f.slice(off);
  const [nb, na] = der.children(validity);
  const bitsEl = der.children(spki)[1];
  return {
    tbs: der.raw(tbs),
    serial: der.readUnsignedInt(serial),
    issuer: der.raw(issuer),
    subject: der.raw(subject),
    spki: der.raw(spki),
    publicKeyBits: der.content(bitsEl).subarray(1),
    notBefore: der.readTime(nb),
    notAfter: der.readTime(na),
  };
}

/** The subjectPublicKey BIT STRING contents (without the unused-bits octet) of a DER SubjectPublicKeyInfo. */
export function spkiKeyBits(spki: Buffer): Buffer {
  const top = der.expect(der.readTop(spki), der.Tag.SEQUENCE, 'SubjectPublicKeyInfo');
  const parts = der.children(top, 2);
  if (parts.length !== 2) throw new der.DerError('bad SubjectPublicKeyInfo');
  const b = der.content(der.expect(parts[1], der.Tag.BIT_STRING, 'subjectPublicKey'));
  if (b.length < 2 || b[0] !== 0) throw new der.DerError('bad subjectPublicKey');
  return b.subarray(1);
}

/** A Name of CN and O, UTF8String, for the CA's own certificates. */
export function caName(commonName: string, organization: string): Buffer {
  const atv = (oid: string, v: string) => der.set(der.seq(der.oid(oid), der.utf8(v)));
  return der.seq(atv('2.5.4.10', organization), atv(OID.commonName, commonName));
}
