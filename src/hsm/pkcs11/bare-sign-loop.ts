import { createHash } from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import { HsmError } from '../hsm';
import { findObjects } from './attributes';
import { loginChecked, logoutLast } from './login';
import { acquireModule, releaseModule, slotShared } from './module-registry';
import { RW_SESSION, findSlot } from './token';

/**
 * The bare baseline for bench/: a plain synchronous C_SignInit/C_Sign loop on
 * one session with a P-256 key (a fixed SHA-256 digest), no pool, no failover.
 * Returns signatures per second.
 */
export async function bareSignLoop(opts: {
  module: string;
  tokenLabel: string;
  pin: string;
  keyLabel: string;
  seconds: number;
}): Promise<number> {
  const mod = acquireModule(opts.module);
  try {
    const p11 = mod.p11;
    const slot = findSlot(p11, opts.tokenLabel);
    const shared = slotShared(mod, slot);
    const s = p11.C_OpenSession(slot, RW_SESSION);
    let counted = false;
    try {
      loginChecked(p11, s, opts.pin, opts.tokenLabel, shared);
      shared.loginRefs++;
      counted = true;
      const keys = findObjects(p11, s, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
        { type: pkcs11js.CKA_LABEL, value: opts.keyLabel },
      ]);
      if (keys.length !== 1) throw new HsmError('keyNotFound', `no single key labelled "${opts.keyLabel}" on token "${opts.tokenLabel}"`);
      const digest = createHash('sha256').update('hsmca bare sign loop').digest();
      const out = Buffer.alloc(132);
      const mech = { mechanism: pkcs11js.CKM_ECDSA };
      const start = performance.now();
      const end = start + opts.seconds * 1000;
      let n = 0;
      let now = start;
      while (now < end) {
        for (let i = 0; i < 16; i++) {
          p11.C_SignInit(s, mech, keys[0]);
          p11.C_Sign(s, digest, out);
        }
        n += 16;
        now = performance.now();
      }
      return n / ((now - start) / 1000);
    } finally {
      if (counted) {
        shared.loginRefs--;
        logoutLast(p11, s, shared);
      }
      try {
        p11.C_CloseSession(s);
      } catch {
        /* ignore */
      }
    }
  } finally {
    releaseModule(mod);
  }
}
