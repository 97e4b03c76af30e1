import * as pkcs11js from 'pkcs11js';
import { HsmError } from '../hsm';
import { describe, quote } from './errors';
import { Semaphore } from './locks';
import { Handle, PKCS11, SlotShared } from './module-registry';

/** Tokens: found by label (never by slot index), and the state hsmca keeps for each one it uses. */

/** The sessions hsmca opens: serial, read/write. */
export const RW_SESSION = pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION;

export const trimLabel = (s: string) => s.replace(/[\s\0]+$/, '');

/** Slots by token label. A broken token (C_GetTokenInfo failing) is skipped, not fatal. */
export function enumerateTokens(p11: PKCS11): Map<string, Handle[]> {
  const out = new Map<string, Handle[]>();
  let slots: Handle[];
  try {
    slots = p11.C_GetSlotList(true);
  } catch (e) {
    throw new HsmError('hsmUnavailable', `the PKCS#11 module cannot list its slots: ${describe(e)}`);
  }
  for (const slot of slots) {
    try {
      const label = trimLabel(p11.C_GetTokenInfo(slot).label);
      if (!label) continue;
      out.set(label, [...(out.get(label) ?? []), slot]);
    } catch {
      /* a token that does not answer cannot be matched by label */
    }
  }
  return out;
}

export function findSlot(p11: PKCS11, label: string): Handle {
  const all = enumerateTokens(p11);
  const slots = all.get(label);
  if (!slots || slots.length === 0) {
    const seen = [...all.keys()];
    throw new HsmError(
      'hsmConfig',
      `no PKCS#11 token labelled "${label}" was found (tokens present: ${seen.length ? quote(seen) : 'none'})`,
    );
  }
  if (slots.length > 1) throw new HsmError('hsmConfig', `more than one PKCS#11 token is labelled "${label}"`);
  return slots[0];
}

// ------------------------------------------------------------------ the state of one token

export interface IdleSession {
  h: Handle;
  epoch: number;
}

/** One configured token: its slot, its session pool and its cached key handles. */
export class Token {
  state: 'up' | 'down' = 'up';
  lastError?: string;
  nextProbeAt = 0;
  probing = false;
  /** the user PIN was rejected at runtime: never retried automatically (it would lock the token) */
  pinRejected = false;
  /** this instance holds a login reference on the slot */
  loginRef = false;
  idle: IdleSession[] = [];
  /** every session this instance has open on the token */
  open = new Map<string, Handle>();
  /** bumped when a fault suggests every session may be dead: older idle sessions are dropped */
  epoch = 0;
  permits: Semaphore;
  /** private key handles by key label, checked against the key's CKA_ID and public key */
  keyHandles = new Map<string, Handle>();
  kek?: { handle: Handle; id: Buffer };

  constructor(
    readonly label: string,
    public slot: Handle,
    public shared: SlotShared,
    readonly poolSize: number,
  ) {
    this.permits = new Semaphore(poolSize);
  }
}

