import { AsnArray, AsnProp, AsnPropTypes, AsnType, AsnTypeTypes, OctetString } from '@peculiar/asn1-schema';

/**
 * GeneralName as RFC 5280 4.2.1.6 defines it, but keeping iPAddress as its
 * octets: @peculiar/asn1-x509's GeneralName turns them into text, which hides
 * a wrong length (8 and 32 octets become CIDR notation).
 */
@AsnType({ type: AsnTypeTypes.Choice })
export class LintGeneralName {
  @AsnProp({ type: AsnPropTypes.Any, context: 0, implicit: true, repeated: 'sequence' }) otherName?: ArrayBuffer[];
  @AsnProp({ type: AsnPropTypes.IA5String, context: 1, implicit: true }) rfc822Name?: string;
  @AsnProp({ type: AsnPropTypes.IA5String, context: 2, implicit: true }) dNSName?: string;
  @AsnProp({ type: AsnPropTypes.Any, context: 3, implicit: true }) x400Address?: ArrayBuffer;
  @AsnProp({ type: AsnPropTypes.Any, context: 4, implicit: false }) directoryName?: ArrayBuffer;
  @AsnProp({ type: AsnPropTypes.Any, context: 5 }) ediPartyName?: ArrayBuffer;
  @AsnProp({ type: AsnPropTypes.IA5String, context: 6, implicit: true }) uniformResourceIdentifier?: string;
  @AsnProp({ type: OctetString, context: 7, implicit: true }) iPAddress?: OctetString;
  @AsnProp({ type: AsnPropTypes.ObjectIdentifier, context: 8, implicit: true }) registeredID?: string;
}

@AsnType({ type: AsnTypeTypes.Sequence, itemType: LintGeneralName })
export class LintGeneralNames extends AsnArray<LintGeneralName> {}
