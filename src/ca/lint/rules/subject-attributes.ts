import type { AttributeValue, Name } from '@peculiar/asn1-x509';

/** Attribute types hsmca knows, with the RFC 5280 Appendix A upper bounds (ub-*) and the string types allowed. */
export const ATTRIBUTES: Record<string, { name: string; max: number; types: readonly StringType[] }> = {
  '2.5.4.3': { name: 'commonName', max: 64, types: ['utf8String', 'printableString'] },
  '2.5.4.4': { name: 'surname', max: 32768, types: ['utf8String', 'printableString'] },
  '2.5.4.5': { name: 'serialNumber', max: 64, types: ['printableString'] },
  '2.5.4.6': { name: 'countryName', max: 2, types: ['printableString'] },
  '2.5.4.7': { name: 'localityName', max: 128, types: ['utf8String', 'printableString'] },
  '2.5.4.8': { name: 'stateOrProvinceName', max: 128, types: ['utf8String', 'printableString'] },
  '2.5.4.9': { name: 'streetAddress', max: 128, types: ['utf8String', 'printableString'] },
  '2.5.4.10': { name: 'organizationName', max: 64, types: ['utf8String', 'printableString'] },
  '2.5.4.11': { name: 'organizationalUnitName', max: 64, types: ['utf8String', 'printableString'] },
  '2.5.4.12': { name: 'title', max: 64, types: ['utf8String', 'printableString'] },
  '2.5.4.42': { name: 'givenName', max: 32768, types: ['utf8String', 'printableString'] },
  '2.5.4.17': { name: 'postalCode', max: 40, types: ['utf8String', 'printableString'] },
  '1.2.840.113549.1.9.1': { name: 'emailAddress', max: 255, types: ['ia5String'] },
  '0.9.2342.19200300.100.1.25': { name: 'domainComponent', max: 63, types: ['ia5String'] },
};

export type StringType = 'utf8String' | 'printableString' | 'ia5String' | 'teletexString' | 'bmpString' | 'universalString';
const TYPES: StringType[] = ['utf8String', 'printableString', 'ia5String', 'teletexString', 'bmpString', 'universalString'];

export function stringTypeOf(v: AttributeValue): StringType | undefined {
  return TYPES.find((t) => v[t] !== undefined);
}

/** Each attribute of a Name: its type, string type and text. */
export function* attributesOf(name: Name): Generator<{ type: string; stringType: StringType | undefined; text: string }> {
  for (const rdn of name) for (const atv of rdn) {
    const stringType = stringTypeOf(atv.value);
    yield { type: atv.type, stringType, text: stringType ? (atv.value[stringType] as string) : '' };
  }
}
