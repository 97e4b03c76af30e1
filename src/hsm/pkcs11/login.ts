import { timingSafeEqual } from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import { HsmError } from '../hsm';
import { ckrName, isCkr } from './errors';
import { Handle, PKCS11, SlotShared, pinCheckOf } from './module-registry';

/**
 * Logging in and out. PKCS#11 has one login state per application and token:
 * every session of the process shares it, so the registry counts the users of a
 * token's login and checks each new user's PIN against the one in use.
 */

/** CKS_* (pkcs11js does not export them) */
export const CKS_RO_USER_FUNCTIONS = 1;
export const CKS_RW_USER_FUNCTIONS = 3;
export const CKS_RW_SO_FUNCTIONS = 4;

/** C_Login as the user; "already logged in" counts as success. A real login records the PIN check. */
export function loginUser(p11: PKCS11, session: Handle, pin: string, tokenLabel: string, shared: SlotShared): void {
  try {
    p11.C_Login(session, pkcs11js.CKU_USER, pin);
    shared.pinCheck = pinCheckOf(pin);
  } catch (e) {
    if (isCkr(e, pkcs11js.CKR_USER_ALREADY_LOGGED_IN)) return;
    if (isCkr(e, pkcs11js.CKR_PIN_INCORRECT, pkcs11js.CKR_PIN_INVALID, pkcs11js.CKR_PIN_LEN_RANGE)) {
      throw new HsmError('wrongPin', `the user PIN was rejected by PKCS#11 token "${tokenLabel}" (${ckrName(e)})`);
    }
    if (isCkr(e, pkcs11js.CKR_PIN_LOCKED, pkcs11js.CKR_PIN_EXPIRED)) {
      throw new HsmError('wrongPin', `the user PIN of PKCS#11 token "${tokenLabel}" is locked or expired (${ckrName(e)})`);
    }
    if (isCkr(e, pkcs11js.CKR_USER_ANOTHER_ALREADY_LOGGED_IN)) {
      throw new HsmError('hsmUnavailable', `PKCS#11 token "${tokenLabel}" has a security officer logged in`);
    }
    if (isCkr(e, pkcs11js.CKR_USER_PIN_NOT_INITIALIZED)) {
      throw new HsmError('hsmConfig', `PKCS#11 token "${tokenLabel}" has no user PIN set`);
    }
    throw e;
  }
}

/**
 * Logs in for a new user of the token (an instance opening, a bare loop) and makes
 * sure its PIN is the right one even when the process is already logged in.
 */
export function loginChecked(p11: PKCS11, session: Handle, pin: string, tokenLabel: string, shared: SlotShared): void {
  const state = p11.C_GetSessionInfo(session).state;
  if (state === CKS_RW_SO_FUNCTIONS) {
    throw new HsmError('hsmUnavailable', `PKCS#11 token "${tokenLabel}" has a security officer logged in`);
  }
  if (state !== CKS_RO_USER_FUNCTIONS && state !== CKS_RW_USER_FUNCTIONS) {
    loginUser(p11, session, pin, tokenLabel, shared);
    return;
  }
  if (shared.pinCheck) {
    const mine = pinCheckOf(pin);
    if (mine.length !== shared.pinCheck.length || !timingSafeEqual(mine, shared.pinCheck)) {
      throw new HsmError('wrongPin', `the user PIN was rejected for PKCS#11 token "${tokenLabel}" (it differs from the PIN in use)`);
    }
    return;
  }
  if (shared.loginRefs === 0) {
    // logged in by code outside this backend: log in again to have the PIN checked
    try {
      p11.C_Logout(session);
    } catch {
      /* ignore */
    }
    loginUser(p11, session, pin, tokenLabel, shared);
  }
  // else: another user of this backend logged in without a check; nothing more can be known
}

/** The last user of a token in this process is leaving: log out. */
export function logoutLast(p11: PKCS11, session: Handle | undefined, shared: SlotShared): void {
  if (shared.loginRefs > 0) return;
  shared.pinCheck = undefined;
  if (!session) return;
  try {
    p11.C_Logout(session);
  } catch {
    /* not logged in, or the token is gone */
  }
}

