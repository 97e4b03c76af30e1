import * as fs from 'node:fs';
import * as path from 'node:path';
import { run, tempDir } from './harness';

export type TestKeyType = 'ec-p256' | 'ec-p384' | 'ec-p521' | 'rsa-1024' | 'rsa-2048' | 'rsa-3072' | 'ed25519';

const keyCache = new Map<string, string>();
const dir = tempDir('hsmca-csr-');

/** A private key made by openssl (cached per type and slot, since RSA generation is slow). */
export function testKey(type: TestKeyType, slot = 0): string {
  const id = `${type}-${slot}`;
  let file = keyCache.get(id);
  if (file) return file;
  file = path.join(dir, `${id}.key`);
  const args: Record<TestKeyType, string[]> = {
    'ec-p256': ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'],
    'ec-p384': ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384'],
    'ec-p521': ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-521'],
    'rsa-1024': ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:1024'],
    'rsa-2048': ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'],
    'rsa-3072': ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:3072'],
    ed25519: ['-algorithm', 'ED25519'],
  };
  run('openssl', ['genpkey', ...args[type], '-out', file]);
  keyCache.set(id, file);
  return file;
}

/** A CSR made by `openssl req` (the client tool a service would use). */
export function makeCsr(o: { key?: TestKeyType; slot?: number; subject?: string; sans?: string; digest?: string } = {}): { csr: string; keyFile: string } {
  const keyFile = testKey(o.key ?? 'ec-p256', o.slot ?? 0);
  const args = ['req', '-new', '-key', keyFile, '-subj', o.subject ?? '/'];
  if (o.sans) args.push('-addext', `subjectAltName=${o.sans}`);
  if (o.digest) args.push(`-${o.digest}`);
  const csr = run('openssl', args);
  return { csr, keyFile };
}

export function writeTemp(name: string, content: string | Buffer): string {
  const f = path.join(dir, `${Date.now()}-${Math.random().toString(16).slice(2)}-${name}`);
  fs.writeFileSync(f, content);
  return f;
}
