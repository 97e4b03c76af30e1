/**
 * Keep-alive load with wrk (Debian's package `wrk`): a C load generator, so
 * that on a two-CPU machine the load takes less of the CPU the server under
 * test needs than the node-based autocannon does. Requests rotate through a
 * list (path and body per line of a file, bodies in hex), each wrk thread
 * from its own starting point; the Lua `done` hook prints the counts as JSON.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tempDir } from './proc';

export interface WrkRequest {
  method: 'GET' | 'POST';
  path: string;
  body?: Buffer;
}

export interface WrkSpec {
  /** base URL, e.g. http://127.0.0.1:18080 */
  url: string;
  connections: number;
  seconds: number;
  headers?: Record<string, string>;
  requests: WrkRequest[];
  /** wrk threads (default 2, never more than the connections) */
  threads?: number;
}

export interface WrkResult {
  /** answers with a status below 400 */
  ok: number;
  /** answers with a status of 400 or more, connection errors and timeouts */
  errors: number;
  seconds: number;
}

export const hasWrk = (): boolean => spawnSync('wrk', ['--version'], { encoding: 'utf8' }).error === undefined;

const luaString = (s: string) => JSON.stringify(s);

const SCRIPT = (requestsFile: string, headers: Record<string, string>) => `
local reqs = {}
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end
function init(args)
  local headers = { ${Object.entries(headers)
    .map(([k, v]) => `[${luaString(k)}] = ${luaString(v)}`)
    .join(', ')} }
  for line in io.lines(${luaString(requestsFile)}) do
    local method, p, hex = line:match("^(%S+) (%S+) ?(%x*)$")
    local body = nil
    if hex ~= "" then body = (hex:gsub("..", function(cc) return string.char(tonumber(cc, 16)) end)) end
    table.insert(reqs, wrk.format(method, p, headers, body))
  end
  i = ((tid or 1) * 7919) % #reqs
end
function request()
  i = i % #reqs + 1
  return reqs[i]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout))
end
`;

/** One wrk run; resolves with its counts (a run wrk could not make is all errors, no answers). */
export async function wrk(spec: WrkSpec): Promise<WrkResult> {
  const dir = tempDir('hsmca-wrk-');
  try {
    const requestsFile = path.join(dir, 'requests.txt');
    fs.writeFileSync(requestsFile, spec.requests.map((r) => `${r.method} ${r.path}${r.body ? ` ${r.body.toString('hex')}` : ''}`).join('\n') + '\n');
    const script = path.join(dir, 'rotate.lua');
    fs.writeFileSync(script, SCRIPT(requestsFile, spec.headers ?? {}));
    const threads = Math.min(spec.threads ?? 2, spec.connections);
    const args = ['-t', String(threads), '-c', String(spec.connections), '-d', `${spec.seconds}s`, '--timeout', '10s', '-s', script, spec.url];
    const stdout = await new Promise<string>((resolve) => {
      const p = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      p.stderr.on('data', (d: Buffer) => (out += d.toString()));
      p.on('error', (e) => resolve(`${out}\n${e.message}`));
      p.on('close', () => resolve(out));
    });
    const m = /WRK (\{.*\})/.exec(stdout);
    if (!m) return { ok: 0, errors: 1, seconds: spec.seconds };
    const r = JSON.parse(m[1]) as { requests: number; duration_us: number; connect: number; read: number; write: number; status: number; timeout: number };
    return { ok: r.requests - r.status, errors: r.status + r.connect + r.read + r.write + r.timeout, seconds: r.duration_us / 1e6 };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
