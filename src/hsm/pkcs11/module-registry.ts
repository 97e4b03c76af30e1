import { createHmac, randomBytes } from 'node:crypto';
import { realpathSync } from 'node:fs';
import * as pkcs11js from 'pkcs11js';
import { HsmError } from '../hsm';
import { hex } from './attributes';
import { describe, isCkr } from './errors';
import { RwLock } from './locks';

/**
 * The process-wide registry of loaded PKCS#11 modules: one pkcs11js instance
 * per module, C_Initialize/C_Finalize reference-counted, and per token the state
 * that every user in the process shares (login references, the token lock, the
 * PIN check).
 */

export type Handle = Buffer;
export type PKCS11 = pkcs11js.PKCS11;

/** State shared by everything in this process that uses one token of one module. */
export interface SlotShared {
  /** Pkcs11Hsm instances (and bare loops) that count on the user being logged in */
  loginRefs: number;
  lock: RwLock;
  /**
   * A keyed hash of the PIN the token was logged in with. The login is shared by
   * the whole process and C_Login answers CKR_USER_ALREADY_LOGGED_IN without
   * looking at the PIN, so a second instance's PIN is checked against this.
   */
  pinCheck?: Buffer;
}

/** The key of the PIN check: random per process, never stored. */
const PIN_CHECK_KEY = randomBytes(32);
export const pinCheckOf = (pin: string) => createHmac('sha256', PIN_CHECK_KEY).update(pin, 'utf8').digest();

export interface ModuleEntry {
  key: string;
  path: string;
  p11: PKCS11;
  refs: number;
  /** we called C_Initialize (not CKR_CRYPTOKI_ALREADY_INITIALIZED), so we finalize */
  ownsInit: boolean;
  slots: Map<string, SlotShared>;
}

/**
 * One loaded PKCS#11 instance per module path. C_Initialize runs once, on first
 * use; C_Finalize runs once, when the last user closes. SoftHSM2 reads
 * SOFTHSM2_CONF at C_Initialize, so a finalize on last close lets the next
 * initialize pick up a new configuration.
 */
const modules = new Map<string, ModuleEntry>();

export function acquireModule(path: string): ModuleEntry {
  if (!path) throw new HsmError('hsmConfig', 'no PKCS#11 module path is configured');
  let key = path;
  try {
    key = realpathSync(path);
  } catch {
    throw new HsmError('hsmConfig', `the PKCS#11 module ${path} does not exist`);
  }
  const existing = modules.get(key);
  if (existing) {
    existing.refs++;
    return existing;
  }
  let p11: PKCS11;
  try {
    p11 = new pkcs11js.PKCS11();
    p11.load(path);
  } catch (e) {
    throw new HsmError('hsmConfig', `cannot load the PKCS#11 module ${path}: ${describe(e)}`);
  }
  let ownsInit = true;
  try {
    // CKF_OS_LOCKING_OK: signatures run on libuv worker threads, so the module must lock.
    p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (e) {
    if (isCkr(e, pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
      ownsInit = false;
    } else {
      try {
        p11.close();
      } catch {
        /* ignore */
      }
      throw new HsmError('hsmConfig', `the PKCS#11 module ${path} failed to initialise: ${describe(e)}`);
    }
  }
  const entry: ModuleEntry = { key, path, p11, refs: 1, ownsInit, slots: new Map() };
  modules.set(key, entry);
  return entry;
}

export function releaseModule(entry: ModuleEntry): void {
  entry.refs--;
  if (entry.refs > 0) return;
  modules.delete(entry.key);
  if (entry.ownsInit) {
    try {
      entry.p11.C_Finalize();
    } catch {
      /* already finalised by someone else */
    }
  }
  try {
    entry.p11.close();
  } catch {
    /* ignore */
  }
}

export function slotShared(entry: ModuleEntry, slot: Handle): SlotShared {
  const k = hex(slot);
  let s = entry.slots.get(k);
  if (!s) {
    s = { loginRefs: 0, lock: new RwLock() };
    entry.slots.set(k, s);
  }
  return s;
}
