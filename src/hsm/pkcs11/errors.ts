import * as pkcs11js from 'pkcs11js';
import { HsmError } from '../hsm';

/** Errors of the PKCS#11 backend, and how they are named in messages. */

/** A key is missing or differs on one token: fail over, but the token itself is fine. */
export class TokenKeyError extends Error {}

/** The CKR_* name of a PKCS#11 error, or undefined for any other error. */
export function ckrName(e: unknown): string | undefined {
  if (e instanceof pkcs11js.Pkcs11Error || (e instanceof Error && /^CKR_[A-Z0-9_]+$/.test(e.message))) {
    return (e as Error).message;
  }
  return undefined;
}

export function isCkr(e: unknown, ...codes: number[]): boolean {
  return e instanceof pkcs11js.Pkcs11Error && codes.includes(e.code);
}

/** An error as text for messages and health: CKR names and our own messages, never data. */
export function describe(e: unknown): string {
  const ckr = ckrName(e);
  if (ckr) return ckr;
  if (e instanceof HsmError || e instanceof TokenKeyError) return e.message;
  const msg = e instanceof Error ? e.message : String(e);
  // A native error message is short library text; cap it so nothing long can leak through.
  return msg.length > 200 ? `${msg.slice(0, 200)}...` : msg;
}

/** Labels for a message: "a", "b". */
export const quote = (labels: string[]) => labels.map((l) => `"${l}"`).join(', ');
