/**
 * The hsmca server under test, in its own process: `node bin/hsmca.js serve`
 * on a data folder of its own, answering on 127.0.0.1 only.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Server, freePort, startServer, tempDir } from './proc';

const ROOT = path.resolve(__dirname, '..', '..');

export interface Hsmca {
  url: string;
  port: number;
  dataDir: string;
  adminToken: string;
  server: Server;
  /** GET/POST helper for set-up calls (not for measurement) */
  api(method: string, p: string, body?: unknown): Promise<{ status: number; body: unknown; raw: Buffer }>;
  stop(): Promise<void>;
}

export interface HsmcaOptions {
  /** an existing data folder (its parent must be 0700); a new temporary one otherwise */
  dataDir?: string;
  /** write a V8 CPU profile of the server into this folder when it stops */
  cpuProfDir?: string;
  env?: Record<string, string>;
}

/** A fresh data folder: <0700 temp dir>/data, created by hsmca itself. */
export function newDataDir(): string {
  return path.join(tempDir('hsmca-bench-ca-'), 'data');
}

export async function startHsmca(o: HsmcaOptions = {}): Promise<Hsmca> {
  const dataDir = o.dataDir ?? newDataDir();
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const nodeArgs = o.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${o.cpuProfDir}`] : [];
  const server = await startServer({
    name: 'hsmca',
    cmd: process.execPath,
    args: [...nodeArgs, path.join(ROOT, 'bin', 'hsmca.js'), 'serve'],
    port,
    cwd: ROOT,
    env: {
      ...process.env,
      HSMCA_DATA_DIR: dataDir,
      HSMCA_HOST: '127.0.0.1',
      HSMCA_PORT: String(port),
      HSMCA_HTTPS_PORT: '0',
      HSMCA_PUBLIC_URL: url,
      HSMCA_LOG_LEVEL: 'warn',
      ...o.env,
    },
    ready: async () => {
      try {
        return (await fetch(`${url}/healthz`)).status === 200;
      } catch {
        return false;
      }
    },
  });
  const adminToken = fs.readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim();
  return {
    url,
    port,
    dataDir,
    adminToken,
    server,
    async api(method, p, body) {
      const res = await fetch(url + p, {
        method,
        headers: { authorization: `Bearer ${adminToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const raw = Buffer.from(await res.arrayBuffer());
      let parsed: unknown = raw;
      if ((res.headers.get('content-type') ?? '').includes('json')) parsed = JSON.parse(raw.toString('utf8'));
      return { status: res.status, body: parsed, raw };
    },
    async stop() {
      const code = await server.stop();
      if (code !== 0) process.stderr.write(`bench: hsmca exited with ${code}:\n${server.output()}\n`);
    },
  };
}

/** Removes a data folder made by newDataDir (and its 0700 parent). */
export function removeDataDir(dataDir: string): void {
  fs.rmSync(path.dirname(dataDir), { recursive: true, force: true });
}
