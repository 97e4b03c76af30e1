/**
 * What the main thread and a signing thread (sign-thread.ts) send each other.
 * Types only: the thread file imports them with `import type`, which the
 * compiler erases, so the thread still needs nothing but node's built-ins.
 */

/** What a signing thread is started with. */
export interface SignThreadData {
  /** the resolved path of pkcs11js, for the thread to require */
  pkcs11js: string;
  /** the PKCS#11 module, loaded again (the same library) by the thread */
  module: string;
}

/**
 * One signature: C_SignInit(s, { mechanism: m }, k) and C_Sign(s, d) into n
 * bytes. The main side sends Buffers; they arrive as Uint8Arrays (structured
 * clone).
 */
export interface SignJob {
  id: number;
  /** the session, lent to exactly this job */
  s: Uint8Array;
  /** the private key handle */
  k: Uint8Array;
  /** the mechanism (CKM_*) */
  m: number;
  /** the data (a digest for ECDSA) */
  d: Uint8Array;
  /** the length of the raw signature */
  n: number;
}

/** The signature, or the error (a CKR code and a short message). */
export interface SignResult {
  id: number;
  sig?: Uint8Array;
  code?: number;
  msg?: string;
}
