import { ChildProcess, spawn } from 'node:child_process';
import { freePort } from './harness';

/**
 * Debian's pebble-challtestsrv as the authoritative DNS server of the tests:
 * every A query answers 127.0.0.1; TXT records are set through its
 * management API (POST /set-txt), as lego's exec DNS provider does.
 */
export interface ChallTestSrv {
  dnsPort: number;
  managementPort: number;
  setTxt(host: string, value: string): Promise<void>;
  clearTxt(host: string): Promise<void>;
  stop(): Promise<void>;
}

export async function startChallTestSrv(): Promise<ChallTestSrv> {
  const dnsPort = await freePort();
  const managementPort = await freePort();
  const proc: ChildProcess = spawn(
    'pebble-challtestsrv',
    ['-dns01', `127.0.0.1:${dnsPort}`, '-management', `127.0.0.1:${managementPort}`, '-http01', '', '-https01', '', '-tlsalpn01', '', '-defaultIPv4', '127.0.0.1', '-defaultIPv6', ''],
    { stdio: 'ignore' },
  );
  const mgmt = `http://127.0.0.1:${managementPort}`;
  for (let i = 0; ; i++) {
    try {
      await fetch(`${mgmt}/clear-txt`, { method: 'POST', body: JSON.stringify({ host: 'ready.test.' }) });
      break;
    } catch {
      if (i > 100) throw new Error('pebble-challtestsrv did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const fqdn = (h: string) => (h.endsWith('.') ? h : `${h}.`);
  return {
    dnsPort,
    managementPort,
    setTxt: async (host, value) => void (await fetch(`${mgmt}/set-txt`, { method: 'POST', body: JSON.stringify({ host: fqdn(host), value }) })),
    clearTxt: async (host) => void (await fetch(`${mgmt}/clear-txt`, { method: 'POST', body: JSON.stringify({ host: fqdn(host) }) })),
    stop: () =>
      new Promise((resolve) => {
        if (proc.exitCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
      }),
  };
}
