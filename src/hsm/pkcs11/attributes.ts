import * as pkcs11js from 'pkcs11js';
import { Handle, PKCS11 } from './module-registry';

/** Reading objects: searches, attributes, CK_BBOOL and CK_ULONG values, handles and ids as hex. */

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

export function findObjects(p11: PKCS11, session: Handle, template: pkcs11js.Template): Handle[] {
  p11.C_FindObjectsInit(session, template);
  const out: Handle[] = [];
  try {
    for (;;) {
      const batch = p11.C_FindObjects(session, 64);
      if (batch.length === 0) break;
      out.push(...batch);
      if (out.length > 100000) break;
    }
  } finally {
    try {
      p11.C_FindObjectsFinal(session);
    } catch {
      /* the search ends with the session anyway */
    }
  }
  return out;
}

export function getAttrs(p11: PKCS11, session: Handle, obj: Handle, types: number[]): Map<number, Buffer> {
  const res = p11.C_GetAttributeValue(
    session,
    obj,
    types.map((type) => ({ type })),
  );
  const m = new Map<number, Buffer>();
  for (const a of res) m.set(a.type, a.value);
  return m;
}
