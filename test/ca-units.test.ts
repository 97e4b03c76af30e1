import * as der from '../src/asn1/der';
import { normalizeSerial, randomSerial, serialHex } from '../src/ca/certificate';
import { ipToBytes, ipToString, parseCsrSync, validDnsName, csrFromPem } from '../src/ca/csr';
import { applyProfile } from '../src/ca/issuance';
import { ProfileRegistry, compileProfile } from '../src/ca/profiles';
import { CaError, ConfigError } from '../src/errors';
import { makeCsr } from './helpers/csr';

describe('serial numbers', () => {
  it('are 16 octets, positive, and never repeat in 100,000 draws', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 100_000; i++) {
      const s = randomSerial();
      expect(s.length).toBe(16);
      expect(s[0] & 0x80).toBe(0);
      expect(s[0] & 0x40).toBe(0x40);
      seen.add(s.toString('hex'));
    }
    expect(seen.size).toBe(100_000);
  });

  it('encode as a positive DER INTEGER of at most 20 octets', () => {
    const s = randomSerial();
    const enc = der.int(s);
    expect(enc[0]).toBe(0x02);
    expect(enc[1]).toBe(16);
    expect(der.readUnsignedInt(der.readTop(enc)).equals(s)).toBe(true);
  });

  it.each([
    ['5ee4d298bc59c0addb66ecd8ccc3b171', '5ee4d298bc59c0addb66ecd8ccc3b171'],
    ['5EE4D298BC59C0ADDB66ECD8CCC3B171', '5ee4d298bc59c0addb66ecd8ccc3b171'],
    ['5E:E4:D2:98:BC:59:C0:AD:DB:66:EC:D8:CC:C3:B1:71', '5ee4d298bc59c0addb66ecd8ccc3b171'],
    ['00:ab', 'ab'],
    ['abc', '0abc'],
    ['xyz', undefined],
    ['', undefined],
    ['a'.repeat(41), undefined],
  ])('normalises %s', (input, out) => {
    expect(normalizeSerial(input)).toBe(out);
  });

  it('writes serials without leading zero octets', () => {
    expect(serialHex(Buffer.from([0, 0, 1, 2]))).toBe('0102');
  });
});

describe('DER writer', () => {
  it.each([
    [[0], '03020780'],
    [[0, 2], '030205a0'],
    [[5, 6], '03020106'],
    [[0, 5, 6], '03020186'],
    [[8], '0303070080'],
  ])('named bits %j', (bits, hex) => {
    expect(der.namedBits(bits).toString('hex')).toBe(hex);
  });
  it.each([
    [0, '020100'],
    [127, '02017f'],
    [128, '02020080'],
    [256, '02020100'],
  ])('INTEGER %d', (n, hex) => expect(der.int(n).toString('hex')).toBe(hex));
  it('switches to GeneralizedTime in 2050', () => {
    expect(der.time(new Date('2049-12-31T23:59:59Z'))[0]).toBe(der.Tag.UTC_TIME);
    expect(der.time(new Date('2050-01-01T00:00:00Z'))[0]).toBe(der.Tag.GENERALIZED_TIME);
  });
  it('rejects indefinite, non-minimal and truncated lengths', () => {
    for (const hex of ['3080', '30810100', '3005020101', '02']) expect(() => der.readTop(Buffer.from(hex, 'hex'))).toThrow(der.DerError);
  });
});

describe('names', () => {
  it.each([
    ['example.com', true],
    ['a.b-c.example', true],
    ['*.example.com', true],
    ['*.com', false],
    ['a.*.example.com', false],
    ['-a.example', false],
    ['a_b.example', false],
    ['Example.com', false],
    ['a'.repeat(64) + '.com', false],
    ['', false],
  ])('DNS name %s is %s', (n, ok) => expect(validDnsName(n)).toBe(ok));

  it.each(['10.0.0.1', '255.255.255.255', '::1', 'fd00::1:2', '2001:db8:0:0:1:0:0:1'])('IP %s round-trips', (ip) => {
    const b = ipToBytes(ip)!;
    expect(b).toBeDefined();
    expect(ipToBytes(ipToString(b))!.equals(b)).toBe(true);
  });
  it.each(['256.0.0.1', '1.2.3', '::1::2', 'fe80::g', 'example.com'])('%s is not an IP', (ip) => expect(ipToBytes(ip)).toBeUndefined());
});

describe('profiles', () => {
  const reg = new ProfileRegistry();
  const csr = async (o: Parameters<typeof makeCsr>[0]) => parseCsrSync(csrFromPem(makeCsr(o).csr));

  it.each<[string, Parameters<typeof makeCsr>[0], string | null]>([
    ['tls-server', { subject: '/CN=a.example', sans: 'DNS:a.example' }, null],
    ['tls-server', { subject: '/CN=10.0.0.1', sans: 'DNS:a.example,IP:10.0.0.1' }, null],
    ['tls-server', { sans: 'DNS:A.Example' }, null],
    ['tls-server', { subject: '/CN=b.example', sans: 'DNS:a.example' }, 'commonNameNotInSans'],
    ['tls-server', { subject: '/CN=a.example' }, 'sanRequired'],
    ['tls-server', { sans: 'URI:https://a.example' }, 'sanTypeNotAllowed'],
    ['tls-client', { subject: '/CN=anything' }, null],
    ['tls-client', { sans: 'email:a@example.com,URI:spiffe://x/y' }, null],
    ['tls-client', { sans: 'IP:10.0.0.1' }, 'sanTypeNotAllowed'],
    ['tls-client', { sans: 'email:not-an-email' }, 'invalidEmail'],
    ['tls-client', {}, 'nameRequired'],
  ])('%s with %j -> %s', async (profile, o, code) => {
    const p = reg.get(profile)!;
    const c = await csr(o);
    if (code === null) {
      const sans = applyProfile(c, p);
      expect(sans.dns.every((d) => d === d.toLowerCase())).toBe(true);
    } else {
      let err: unknown;
      try {
        applyProfile(c, p);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(CaError);
      expect((err as CaError).code).toBe(code);
    }
  });

  it('adds keyEncipherment for RSA keys on tls-server only', () => {
    const server = reg.get('tls-server')!;
    expect(server.keyUsageExtension.rsa.equals(server.keyUsageExtension.ec)).toBe(false);
    const client = reg.get('tls-client')!;
    expect(client.keyUsageExtension.rsa.equals(client.keyUsageExtension.ec)).toBe(true);
  });

  it.each([
    [{ extendedKeyUsage: [], sanTypes: ['dns'], maxValidityDays: 10, defaultValidityDays: 5 }],
    [{ extendedKeyUsage: ['nonsense'], sanTypes: ['dns'], maxValidityDays: 10, defaultValidityDays: 5 }],
    [{ extendedKeyUsage: ['serverAuth'], sanTypes: ['fax'], maxValidityDays: 10, defaultValidityDays: 5 }],
    [{ extendedKeyUsage: ['serverAuth'], sanTypes: ['dns'], maxValidityDays: 10, defaultValidityDays: 11 }],
    [{ extendedKeyUsage: ['serverAuth'], sanTypes: ['dns'], maxValidityDays: 0, defaultValidityDays: 0 }],
  ])('refuses a bad profile spec %j at start-up', (spec) => {
    expect(() => compileProfile('custom', spec as never)).toThrow(ConfigError);
  });

  it('takes extra profiles from configuration but never replaces the built-in ones', () => {
    const r = new ProfileRegistry({ workload: { extendedKeyUsage: ['clientAuth', 'serverAuth'], sanTypes: ['uri'], maxValidityDays: 1, defaultValidityDays: 1 } });
    expect(r.names()).toEqual(['tls-server', 'tls-client', 'workload']);
    expect(() => new ProfileRegistry({ 'tls-server': { extendedKeyUsage: ['clientAuth'], sanTypes: ['dns'], maxValidityDays: 9999, defaultValidityDays: 1 } })).toThrow(ConfigError);
  });
});
