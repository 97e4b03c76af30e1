import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker, WorkerOptions } from 'node:worker_threads';

/**
 * Starts a worker thread from one of hsmca's own TypeScript modules (a
 * `*-thread.ts` file beside the code that uses it), so that a thread's body is
 * type-checked, linted and covered like the rest instead of being kept in a
 * string.
 *
 * `modulePath` is the caller's `require.resolve('./x-thread')`, or the path
 * without its extension. Built code runs the compiled `.js` beside the caller.
 * When hsmca runs from its sources (ts-jest), the `.ts` file is transpiled in
 * memory with the TypeScript compiler (a dev dependency, present wherever the
 * sources are) and started as an evaluated CommonJS module; a thread file
 * therefore imports only node's built-ins and what its workerData names.
 */
export function startThread(modulePath: string, options: WorkerOptions = {}): Worker {
  const base = modulePath.replace(/\.(js|ts)$/, '');
  const js = `${base}.js`;
  if (fs.existsSync(js)) return new Worker(js, options);
  const ts = `${base}.ts`;
  if (!fs.existsSync(ts)) throw new Error(`thread module not found: ${base}.js or .ts`);
  return new Worker(transpile(ts), { ...options, eval: true });
}

const transpiled = new Map<string, string>();

function transpile(file: string): string {
  let code = transpiled.get(file);
  if (code === undefined) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const ts = require('typescript') as typeof import('typescript');
    const out = ts.transpileModule(fs.readFileSync(file, 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
      fileName: path.basename(file),
    });
    // an evaluated worker has no module wrapper: give the CommonJS output one
    code = `(function (exports, module) {\n${out.outputText}\n})(module.exports = {}, module);`;
    transpiled.set(file, code);
  }
  return code;
}
