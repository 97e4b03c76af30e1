/** Reading PKCS#11 values: CK_BBOOL and CK_ULONG attributes, handles and ids as hex. */

export const hex = (b: Buffer) => b.toString('hex');

/** A CK_BBOOL attribute value. */
export function bool(v: Buffer | undefined): boolean {
  return !!v && v.length > 0 && v[0] !== 0;
}

/** A CK_ULONG attribute value (4 or 8 bytes, little-endian here). */
export function ulong(v: Buffer): number {
  if (v.length >= 8) return Number(v.readBigUInt64LE(0));
  if (v.length >= 4) return v.readUInt32LE(0);
  return v[0] ?? 0;
}
