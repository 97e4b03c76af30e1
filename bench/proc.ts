/**
 * Child processes of the benchmark: servers under test (hsmca and its peers),
 * started, awaited and stopped by their own process handle. Every process
 * started here is remembered and ended (by pid) if the benchmark stops early.
 */
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

const live = new Set<ChildProcess>();

/**
 * Signals the process group whose id is the server's pid: the group a server
 * that forks workers makes for itself. For a server that made none there is no
 * such group and nothing happens (it is never the benchmark's own group).
 */
function signalGroup(proc: ChildProcess, sig: NodeJS.Signals): void {
  if (proc.pid === undefined) return;
  try {
    process.kill(-proc.pid, sig);
  } catch {
    // no such process group: everything in it has exited
  }
}

function killAll(): void {
  for (const c of live) signalGroup(c, 'SIGKILL');
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    killAll();
    process.exit(130);
  });
}

export function tempDir(prefix = 'hsmca-bench-'): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.chmodSync(d, 0o700);
  return d;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** True once something accepts TCP connections on 127.0.0.1:port. */
export function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Whether a command is on the PATH. */
export function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

export interface Server {
  name: string;
  proc: ChildProcess;
  port: number;
  /** the last few KB of the process's output, for error messages */
  output(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code */
  stop(graceMs?: number): Promise<number | null>;
}

/**
 * Starts a server process and waits until `ready` says it answers (by default:
 * until it accepts a TCP connection on `port`). Fails with the process's output
 * when it exits first.
 *
 * A server that a bare connect-and-close upsets needs a `ready` that sends a
 * real request: `openssl ocsp -multi` spins one worker at 100% CPU for good
 * after a client closes without sending a request (openssl/openssl#23934, #31129).
 */
export async function startServer(o: {
  name: string;
  cmd: string;
  args: string[];
  port: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  timeoutMs?: number;
  ready?: () => Promise<boolean>;
}): Promise<Server> {
  // Not detached: `openssl ocsp -multi` puts itself and its workers in a process
  // group of its own (setpgid, which fails in a new session), and stop() ends that group.
  const proc = spawn(o.cmd, o.args, { env: o.env ?? process.env, cwd: o.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);
  let out = '';
  const keep = (b: Buffer) => {
    out = (out + b.toString('utf8')).slice(-8192);
  };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  const exited = new Promise<number | null>((resolve) => {
    proc.once('exit', (code) => resolve(code));
  });
  const server: Server = {
    name: o.name,
    proc,
    port: o.port,
    output: () => out,
    async stop(graceMs = 20_000) {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        // openssl ocsp -multi waits on its workers and notices SIGTERM only when one of them ends
        signalGroup(proc, 'SIGTERM');
        const t = setTimeout(() => signalGroup(proc, 'SIGKILL'), graceMs);
        await exited;
        clearTimeout(t);
      }
      // whatever the server forked and left behind
      signalGroup(proc, 'SIGKILL');
      live.delete(proc);
      return proc.exitCode;
    },
  };
  const deadline = Date.now() + (o.timeoutMs ?? 60_000);
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw new Error(`${o.name} exited (${proc.exitCode ?? proc.signalCode}) before it listened on port ${o.port}:\n${out.trim()}`);
    }
    if (await (o.ready ? o.ready() : portOpen(o.port))) return server;
    if (Date.now() > deadline) {
      await server.stop(2000);
      throw new Error(`${o.name} did not listen on port ${o.port} in time:\n${out.trim()}`);
    }
    await sleep(100);
  }
}

/** Runs a command to completion; throws with its output on failure. */
export function runCommand(cmd: string, args: string[], opts: { cwd?: string; input?: string | Buffer; env?: NodeJS.ProcessEnv } = {}): string {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, input: opts.input, env: opts.env, maxBuffer: 256 << 20 });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}):\n${r.stdout?.toString() ?? ''}${r.stderr?.toString() ?? ''}`.trim());
  }
  return r.stdout.toString();
}
