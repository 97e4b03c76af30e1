/** Buffers handed to pkcs11js: two of its habits the backend works around. */

/**
 * An empty message as a zero-length view into a live buffer: pkcs11js passes a
 * zero-length Buffer.alloc(0) as a NULL pointer, which modules reject with
 * CKR_ARGUMENTS_BAD; a view keeps a valid pointer with length 0.
 */
const EMPTY_BACKING = Buffer.alloc(8);
export const EMPTY_INPUT = EMPTY_BACKING.subarray(0, 0);

/**
 * Keeps `refs` reachable until `p` settles: pkcs11js' asynchronous calls hand the
 * module raw pointers into the input buffers without holding a reference.
 */
export function keepAlive<T>(p: Promise<T>, ...refs: unknown[]): Promise<T> {
  return p.then(
    (v) => {
      void refs;
      return v;
    },
    (e) => {
      void refs;
      throw e;
    },
  );
}
