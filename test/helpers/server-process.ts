import { ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';

/** The built CLI: tests that start `hsmca serve` as its own process run the compiled code (npm test builds first). */
export const BIN = path.join(__dirname, '..', '..', 'bin', 'hsmca.js');

/** `hsmca serve` in a process of its own with `env`, once `url`/healthz answers 200 (30 s at most; its stderr in the error otherwise). */
export async function startServer(env: Record<string, string>, url: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [BIN, 'serve'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.status === 200) return child;
    } catch {
      /* not up yet */
    }
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`server did not start: ${err}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Sends `sig` and waits for the process to exit (at once if it already has). */
export async function stopServer(child: ChildProcess, sig: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill(sig);
  await exited;
}
