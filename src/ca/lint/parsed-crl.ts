import { AsnConvert, AsnIntegerArrayBufferConverter, AsnProp, AsnPropTypes, AsnType, AsnTypeTypes } from '@peculiar/asn1-schema';
import { AuthorityKeyIdentifier, Extension, TBSCertList } from '@peculiar/asn1-x509';
import { Tlv, TlvError, childrenOf, derHeader, readTlv } from './tlv-walk';

/** An INTEGER kept as its octets: @peculiar's CRLNumber reads a JS number, which loses digits past 2^53. */
@AsnType({ type: AsnTypeTypes.Choice })
export class LintInteger {
  @AsnProp({ type: AsnPropTypes.Integer, converter: AsnIntegerArrayBufferConverter }) value = new ArrayBuffer(0);
}

export const CRL_OIDS = {
  cRLNumber: '2.5.29.20',
  deltaCRLIndicator: '2.5.29.27',
  authorityKeyIdentifier: '2.5.29.35',
  reasonCode: '2.5.29.21',
} as const;

/** Two's complement INTEGER octets to a bigint. */
export function integerValue(octets: ArrayBuffer | Buffer): bigint {
  const b = Buffer.from(octets as ArrayBuffer);
  if (b.length === 0) return 0n;
  let v = BigInt('0x' + b.toString('hex'));
  if (b[0] & 0x80) v -= 1n << BigInt(8 * b.length);
  return v;
}

/** One revokedCertificates entry as the walker sees it. */
export interface CrlEntryView {
  index: number;
  /** the userCertificate INTEGER's octets */
  serial: Buffer;
  /** 0x17 UTCTime or 0x18 GeneralizedTime */
  timeTag: number;
  timeText: string;
  /** the reasonCode ENUMERATED value; undefined when the entry has none */
  reason: number | undefined;
}

const REASON_CODE_OID = Buffer.from([0x55, 0x1d, 0x15]);

/**
 * A TBSCertList parsed once. Everything but the revoked entries goes through
 * the @peculiar parser (the entries are cut out of the structure it sees);
 * the entries, possibly millions, are read by the lint's own TLV walker.
 */
export class ParsedCrl {
  readonly tbs: TBSCertList;
  readonly extensions: readonly Extension[];
  private readonly revoked?: Tlv;
  private numberOctets?: Buffer | null;

  constructor(readonly der: Buffer) {
    const top = readTlv(der, 0);
    if (top.tag !== 0x30 || top.end !== der.length) throw new TlvError('TBSCertList is not one SEQUENCE');
    const fields = childrenOf(der, top);
    // version?, signature, issuer, thisUpdate, nextUpdate?, revokedCertificates?, [0] crlExtensions?
    const thisUpdateAt = fields.findIndex((f, i) => i >= 2 && (f.tag === 0x17 || f.tag === 0x18));
    this.revoked = fields.find((f, i) => thisUpdateAt >= 0 && i > thisUpdateAt && f.tag === 0x30);
    const shellFields = fields.filter((f) => f !== this.revoked).map((f) => der.subarray(f.start, f.end));
    const content = Buffer.concat(shellFields);
    this.tbs = AsnConvert.parse(Buffer.concat([derHeader(0x30, content.length), content]), TBSCertList);
    this.extensions = this.tbs.crlExtensions ?? [];
  }

  extension(oid: string): Extension | undefined {
    return this.extensions.find((e) => e.extnID === oid);
  }

  /** the cRLNumber's INTEGER octets, null when absent */
  get crlNumberOctets(): Buffer | null {
    if (this.numberOctets === undefined) {
      const e = this.extension(CRL_OIDS.cRLNumber);
      this.numberOctets = e ? Buffer.from(AsnConvert.parse(e.extnValue, LintInteger).value) : null;
    }
    return this.numberOctets;
  }

  get isDelta(): boolean {
    return this.extension(CRL_OIDS.deltaCRLIndicator) !== undefined;
  }

  get authorityKeyIdentifier(): AuthorityKeyIdentifier | undefined {
    const e = this.extension(CRL_OIDS.authorityKeyIdentifier);
    return e ? AsnConvert.parse(e.extnValue, AuthorityKeyIdentifier) : undefined;
  }

  get entryCount(): number {
    return this.revoked ? childrenOf(this.der, this.revoked).length : 0;
  }

  /**
   * Walks the revoked entries (RFC 5280 5.1.2.6): SEQUENCE { userCertificate
   * INTEGER, revocationDate Time, crlEntryExtensions SEQUENCE OF Extension
   * OPTIONAL }. Throws TlvError on a malformed entry.
   */
  *entries(): Generator<CrlEntryView> {
    if (!this.revoked) return;
    const b = this.der;
    let index = 0;
    for (let at = this.revoked.body; at < this.revoked.end; index++) {
      const entry = readTlv(b, at, this.revoked.end);
      at = entry.end;
      if (entry.tag !== 0x30) throw new TlvError(`entry ${index} is not a SEQUENCE`);
      const serial = readTlv(b, entry.body, entry.end);
      if (serial.tag !== 0x02) throw new TlvError(`entry ${index}: userCertificate is not an INTEGER`);
      const time = readTlv(b, serial.end, entry.end);
      if (time.tag !== 0x17 && time.tag !== 0x18) throw new TlvError(`entry ${index}: revocationDate is not a Time`);
      let reason: number | undefined;
      if (time.end < entry.end) {
        const exts = readTlv(b, time.end, entry.end);
        if (exts.tag !== 0x30 || exts.end !== entry.end) throw new TlvError(`entry ${index}: bad crlEntryExtensions`);
        for (const x of childrenOf(b, exts)) {
          const parts = childrenOf(b, x);
          const oid = parts[0];
          if (!oid || oid.tag !== 0x06) throw new TlvError(`entry ${index}: bad extension`);
          if (!b.subarray(oid.body, oid.end).equals(REASON_CODE_OID)) continue;
          const value = parts[parts.length - 1];
          const e = value.tag === 0x04 ? readTlv(b, value.body, value.end) : undefined;
          if (!e || e.tag !== 0x0a || e.end - e.body !== 1 || e.end !== value.end) throw new TlvError(`entry ${index}: reasonCode is not a one-octet ENUMERATED`);
          reason = b[e.body];
        }
      }
      yield { index, serial: b.subarray(serial.body, serial.end), timeTag: time.tag, timeText: b.toString('latin1', time.body, time.end), reason };
    }
  }
}
