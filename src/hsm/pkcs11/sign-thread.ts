/**
 * The body of a signing thread (started by sign-threads.ts with startThread).
 * It loads the same module (dlopen gives the same library, already initialised
 * by the main thread: PKCS#11 initialisation and sessions belong to the process)
 * and never calls C_Initialize or C_Finalize. Jobs arrive in batches; each is
 * C_SignInit + C_Sign on a session that the main thread has lent to exactly this
 * job.
 *
 * A thread file imports only node's built-ins and what workerData names (here
 * pkcs11js, by the path the main thread resolved); `import type` is erased.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type * as Pkcs11js from 'pkcs11js';
import type { SignJob, SignResult, SignThreadData } from './sign-job';

const data = workerData as SignThreadData;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const pkcs11js = require(data.pkcs11js) as typeof Pkcs11js;
const p11 = new pkcs11js.PKCS11();
p11.load(data.module);
const empty = Buffer.alloc(8).subarray(0, 0);
const buf = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

if (!parentPort) throw new Error('sign-thread runs as a worker thread');
const port = parentPort;
port.on('message', (jobs: SignJob[]) => {
  const out: SignResult[] = [];
  for (const j of jobs) {
    try {
      const session = buf(j.s);
      p11.C_SignInit(session, { mechanism: j.m }, buf(j.k));
      const sig = p11.C_Sign(session, j.d.byteLength ? buf(j.d) : empty, Buffer.allocUnsafe(j.n));
      out.push({ id: j.id, sig });
    } catch (e) {
      const err = e as { code?: unknown; message?: unknown } | null | undefined;
      out.push({
        id: j.id,
        code: err && typeof err.code === 'number' ? err.code : 0,
        msg: String((err && err.message) || e).slice(0, 200),
      });
    }
  }
  port.postMessage(out);
});
