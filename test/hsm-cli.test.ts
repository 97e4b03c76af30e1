import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { tempDir } from './helpers/harness';
import { createSoftHsmTokens, pkcs11Describe, SoftHsmTokens } from './helpers/softhsm';

const BIN = path.join(__dirname, '..', 'bin', 'hsmca.js');

/** The key ceremony of docs/hsm.md, run with the hsmca command against SoftHSM2 tokens. */
pkcs11Describe()('hsmca hsm commands on PKCS#11', () => {
  let tokens: SoftHsmTokens;
  let env: Record<string, string>;
  beforeAll(async () => {
    tokens = await createSoftHsmTokens(['ca-a', 'ca-b']);
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HSMCA_'))) as Record<string, string>;
    env = {
      ...clean,
      SOFTHSM2_CONF: tokens.confPath,
      HSMCA_DATA_DIR: path.join(tempDir(), 'data'),
      HSMCA_LOG_LEVEL: 'warn',
      HSMCA_HSM: 'pkcs11',
      HSMCA_PKCS11_MODULE: tokens.module,
      HSMCA_PKCS11_PIN: tokens.pin,
      HSMCA_PKCS11_SO_PIN: tokens.soPin,
    };
  });
  afterAll(async () => tokens?.cleanup());

  const hsmca = (args: string[], extra: Record<string, string> = {}) => {
    const r = spawnSync(process.execPath, [BIN, ...args], { env: { ...env, ...extra }, encoding: 'utf8', timeout: 120000 });
    return { status: r.status, out: r.stdout, err: r.stderr };
  };

  it('initialises the CA on one token, clones its keys to a second, and serves from both', () => {
    const one = { HSMCA_PKCS11_TOKEN_LABEL: 'ca-a', HSMCA_PKCS11_CLUSTER: 'true' };
    const init = hsmca(['init'], one);
    expect(init.err).toBe('');
    expect(init.status).toBe(0);
    expect(init.out).toMatch(/initialised \(pkcs11 HSM/);

    const before = hsmca(['hsm', 'list'], one);
    expect(before.status).toBe(0);
    expect(before.out).toMatch(/token "ca-a": ok/);
    for (const label of ['hsmca-root-ca', 'hsmca-issuing-ca']) {
      expect(before.out).toMatch(new RegExp(`key "${label}" id [0-9a-f]+ ecdsa-p256: .*\\bsensitive\\b.*\\bwrapWithTrusted\\b`));
    }

    const add = hsmca(['hsm', 'add-token', 'ca-b'], one);
    expect(add.err).toBe('');
    expect(add.status).toBe(0);

    const both = hsmca(['hsm', 'list', '--json'], { HSMCA_PKCS11_TOKEN_LABEL: 'ca-a,ca-b' });
    expect(both.status).toBe(0);
    const info = JSON.parse(both.out);
    expect(info.health.status).toBe('ok');
    const keysOf = (label: string) => info.tokens.find((t: { label: string }) => t.label === label).keys.map((k: { label: string; id: string }) => `${k.label}/${k.id}`).sort();
    expect(keysOf('ca-b')).toEqual(keysOf('ca-a'));
    expect(keysOf('ca-b').length).toBeGreaterThanOrEqual(3);
    for (const t of info.tokens) for (const k of t.keys) expect(k.attributes).toMatchObject({ sensitive: true, private: true, token: true });

    // a restart on the two-token cluster reuses the hierarchy
    const again = hsmca(['init'], { HSMCA_PKCS11_TOKEN_LABEL: 'ca-a,ca-b' });
    expect(again.status).toBe(0);
  });

  it('generates a key by ceremony and refuses bad arguments', () => {
    const one = { HSMCA_PKCS11_TOKEN_LABEL: 'ca-a' };
    const k = hsmca(['hsm', 'keygen', '--label', 'ceremony-key', '--algorithm', 'ecdsa-p384'], one);
    expect(k.status).toBe(0);
    expect(k.out).toMatch(/generated ecdsa-p384 key "ceremony-key"/);
    expect(hsmca(['hsm', 'keygen', '--label', 'ceremony-key'], one).status).not.toBe(0);
    const bad = hsmca(['hsm', 'keygen', '--label', 'x', '--algorithm', 'dsa'], one);
    expect(bad.status).toBe(1);
    expect(bad.err).toMatch(/--algorithm must be one of/);
    const wrongToken = hsmca(['hsm', 'list'], { HSMCA_PKCS11_TOKEN_LABEL: 'no-such-token' });
    expect(wrongToken.status).toBe(1);
    expect(wrongToken.err.trim().split('\n')).toHaveLength(1);
    expect(wrongToken.err).toMatch(/no-such-token/);
  });
});
