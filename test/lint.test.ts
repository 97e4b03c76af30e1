import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import * as asn from '@peculiar/asn1-x509';
import { ALL_LINTS, CERTIFICATE_LINTS, CRL_LINTS } from '../src/ca/lint/index';
import type { CertificateKind, CertificateLintContext } from '../src/ca/lint/lint';
import { LintGeneralName, LintGeneralNames } from '../src/ca/lint/parsed-certificate';
import { lintCertificateTbs, lintCrlTbs } from '../src/ca/lint/run-lints';
import { ProfileRegistry } from '../src/ca/profiles';
import { ConfigError } from '../src/errors';
import { readCertificate } from '../src/ca/certificate';
import { backends, run, startTestCa, tempDir, TestCa } from './helpers/harness';
import { makeCsr, TestKeyType, writeTemp } from './helpers/csr';

/*
 * Pre-issuance lint. Fixtures are built with the @peculiar/asn1-x509 classes
 * and AsnConvert.serialize, never with hsmca's DER writer: each lint gets a
 * passing structure and one that breaks exactly its rule.
 */

const DAY = 86_400_000;
const ab = (b: Buffer): ArrayBuffer => new Uint8Array(b).buffer;
const ISSUER_KEY_ID = crypto.createHash('sha1').update('issuer').digest();
const ecKey = crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({ format: 'der', type: 'spki' });
const rsaKey = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'der', type: 'spki' });

const ext = (oid: string, value: unknown, critical = false) => new asn.Extension({ extnID: oid, critical, extnValue: new OctetString(AsnConvert.serialize(value)) });
const name = (attrs: [string, Partial<asn.AttributeValue>][]) =>
  new asn.Name(attrs.map(([type, v]) => new asn.RelativeDistinguishedName([new asn.AttributeTypeAndValue({ type, value: new asn.AttributeValue(v) })])));
const dns = (...names: string[]) => names.map((n) => new LintGeneralName()).map((g, i) => Object.assign(g, { dNSName: names[i] }));
const san = (gs: LintGeneralName[], critical = false) => ext(asn.id_ce_subjectAltName, new LintGeneralNames(gs), critical);
const ku = (flags: number) => ext(asn.id_ce_keyUsage, new asn.KeyUsage(flags), true);

interface CertFixture {
  spki?: Buffer;
  serial?: Buffer;
  notBefore?: asn.Time;
  notAfter?: asn.Time;
  subject?: asn.Name;
  version?: number;
  extensions?: (exts: Map<string, asn.Extension[]>) => void;
}

/** A subscriber tls-server TBSCertificate that passes every lint, changed by `f`. */
function certTbs(f: CertFixture = {}, kind: CertificateKind = 'subscriber'): Buffer {
  const spkiDer = f.spki ?? ecKey;
  const spki = AsnConvert.parse(spkiDer, asn.SubjectPublicKeyInfo);
  const now = Date.now();
  const exts = new Map<string, asn.Extension[]>();
  const put = (e: asn.Extension) => exts.set(e.extnID, [e]);
  put(ext(asn.id_ce_basicConstraints, new asn.BasicConstraints({ cA: kind === 'ca' }), true));
  put(ku(kind === 'ca' ? asn.KeyUsageFlags.keyCertSign | asn.KeyUsageFlags.cRLSign : asn.KeyUsageFlags.digitalSignature));
  if (kind === 'subscriber') put(ext(asn.id_ce_extKeyUsage, new asn.ExtendedKeyUsage([asn.id_kp_serverAuth])));
  put(ext(asn.id_ce_subjectKeyIdentifier, new asn.SubjectKeyIdentifier(crypto.createHash('sha1').update(Buffer.from(spki.subjectPublicKey)).digest())));
  put(ext(asn.id_ce_authorityKeyIdentifier, new asn.AuthorityKeyIdentifier({ keyIdentifier: new asn.KeyIdentifier(ISSUER_KEY_ID) })));
  if (kind === 'subscriber') {
    const ip = Object.assign(new LintGeneralName(), { iPAddress: new OctetString(Buffer.from([10, 0, 0, 1])) });
    put(san([...dns('www.example.test', '*.example.test', 'xn--bcher-kva.example.test'), ip]));
  }
  f.extensions?.(exts);
  const tbs = new asn.TBSCertificate({
    version: f.version ?? asn.Version.v3,
    serialNumber: ab(f.serial ?? Buffer.from('40' + '11'.repeat(15), 'hex')),
    signature: new asn.AlgorithmIdentifier({ algorithm: '1.2.840.10045.4.3.2' }),
    issuer: name([['2.5.4.3', { utf8String: 'Test Issuing CA' }]]),
    validity: new asn.Validity({ notBefore: new Date(now), notAfter: new Date(now + 90 * DAY - 1000) }),
    subject: f.subject ?? name([['2.5.4.6', { printableString: 'DE' }], ['2.5.4.10', { utf8String: 'Example' }], ['2.5.4.3', { utf8String: 'www.example.test' }]]),
    subjectPublicKeyInfo: spki,
    extensions: new asn.Extensions([...exts.values()].flat()),
  });
  if (f.notBefore) tbs.validity.notBefore = f.notBefore;
  if (f.notAfter) tbs.validity.notAfter = f.notAfter;
  return Buffer.from(AsnConvert.serialize(tbs));
}

const ctxFor = (kind: CertificateKind = 'subscriber'): CertificateLintContext => ({ kind, profile: 'tls-server', maxValidityDays: 397, issuerKeyId: ISSUER_KEY_ID });
const utc = (d: Date) => new asn.Time({ utcTime: d });
const gen = (d: Date) => new asn.Time({ generalTime: d });

/** Each certificate lint: a fixture that breaks its rule (and the kind it is checked as). */
const CERT_FAILURES: Record<string, { kind?: CertificateKind; tbs: () => Buffer; ctx?: Partial<CertificateLintContext> }> = {
  e_cert_extensions_version_not_3: { tbs: () => certTbs({ version: asn.Version.v2 }) },
  e_serial_number_not_positive: { tbs: () => certTbs({ serial: Buffer.from('f0' + '11'.repeat(15), 'hex') }) },
  e_serial_number_longer_than_20_octets: { tbs: () => certTbs({ serial: Buffer.from('40' + '11'.repeat(20), 'hex') }) },
  e_serial_number_low_entropy: { tbs: () => certTbs({ serial: Buffer.from('0102030405060708', 'hex') }) },
  e_wrong_time_format_pre2050: { tbs: () => certTbs({ notAfter: gen(new Date(Date.now() + 30 * DAY)) }) },
  e_validity_not_after_before_not_before: { tbs: () => certTbs({ notBefore: utc(new Date(Date.now() + 2 * DAY)), notAfter: utc(new Date(Date.now() + DAY)) }) },
  e_tls_server_cert_valid_time_longer_than_398_days: { tbs: () => certTbs({ notAfter: utc(new Date(Date.now() + 399 * DAY)) }), ctx: { maxValidityDays: 825 } },
  e_validity_longer_than_profile_maximum: { tbs: () => certTbs({ notAfter: utc(new Date(Date.now() + 31 * DAY)) }), ctx: { maxValidityDays: 30 } },
  e_ext_san_missing: { tbs: () => certTbs({ extensions: (m) => m.delete(asn.id_ce_subjectAltName) }) },
  e_ext_san_no_entries: { tbs: () => certTbs({ extensions: (m) => m.set(asn.id_ce_subjectAltName, [san([])]) }) },
  e_dnsname_bad_character_in_label: { tbs: () => certTbs({ extensions: (m) => m.set(asn.id_ce_subjectAltName, [san(dns('www.ex ample.test'))]) }) },
  e_underscore_not_permissible_in_dnsname: { tbs: () => certTbs({ extensions: (m) => m.set(asn.id_ce_subjectAltName, [san(dns('_acme.example.test'))]) }) },
  e_dnsname_wildcard_only_in_left_label: { tbs: () => certTbs({ extensions: (m) => m.set(asn.id_ce_subjectAltName, [san(dns('www.*.example.test'))]) }) },
  e_dnsname_left_label_wildcard_correct: { tbs: () => certTbs({ extensions: (m) => m.set(asn.id_ce_subjectAltName, [san(dns('w*.example.test'))]) }) },
  e_dnsname_empty_label: { tbs: () => certTbs({ extensions: (m) => m.set(asn.id_ce_subjectAltName, [san(dns('www.example.test.'))]) }) },
  e_dnsname_label_too_long: { tbs: () => certTbs({ extensions: (m) => m.set(asn.id_ce_subjectAltName, [san(dns('a'.repeat(64) + '.example.test'))]) }) },
  e_idn_dnsname_malformed_unicode: { tbs: () => certTbs({ extensions: (m) => m.set(asn.id_ce_subjectAltName, [san(dns('xn--zz.example.test'))]) }) },
  e_ext_san_ip_address_wrong_length: {
    tbs: () => certTbs({ extensions: (m) => m.set(asn.id_ce_subjectAltName, [san([...dns('www.example.test'), Object.assign(new LintGeneralName(), { iPAddress: new OctetString(Buffer.alloc(5, 1)) })])]) }),
  },
  e_subject_common_name_not_from_san: { tbs: () => certTbs({ subject: name([['2.5.4.3', { utf8String: 'other.example.test' }]]) }) },
  e_ecdsa_ee_invalid_ku: { tbs: () => certTbs({ extensions: (m) => m.set(asn.id_ce_keyUsage, [ku(asn.KeyUsageFlags.digitalSignature | asn.KeyUsageFlags.keyEncipherment)]) }) },
  e_sub_cert_key_usage_cert_sign_bit_set: { tbs: () => certTbs({ extensions: (m) => m.set(asn.id_ce_keyUsage, [ku(asn.KeyUsageFlags.digitalSignature | asn.KeyUsageFlags.keyCertSign)]) }) },
  e_ca_key_cert_sign_not_set: { kind: 'ca', tbs: () => certTbs({ extensions: (m) => m.set(asn.id_ce_keyUsage, [ku(asn.KeyUsageFlags.digitalSignature)]) }, 'ca') },
  e_sub_cert_eku_any_present: { tbs: () => certTbs({ extensions: (m) => m.set(asn.id_ce_extKeyUsage, [ext(asn.id_ce_extKeyUsage, new asn.ExtendedKeyUsage([asn.id_kp_serverAuth, asn.anyExtendedKeyUsage]))]) }) },
  e_basic_constraints_not_critical: { tbs: () => certTbs({ extensions: (m) => m.set(asn.id_ce_basicConstraints, [ext(asn.id_ce_basicConstraints, new asn.BasicConstraints({ cA: false }), false)]) }) },
  e_sub_cert_basic_constraints_ca_true: { tbs: () => certTbs({ extensions: (m) => m.set(asn.id_ce_basicConstraints, [ext(asn.id_ce_basicConstraints, new asn.BasicConstraints({ cA: true }), true)]) }) },
  e_ca_basic_constraints_ca_false: { kind: 'ca', tbs: () => certTbs({ extensions: (m) => m.set(asn.id_ce_basicConstraints, [ext(asn.id_ce_basicConstraints, new asn.BasicConstraints({ cA: false }), true)]) }, 'ca') },
  e_ext_authority_key_identifier_missing: { tbs: () => certTbs({ extensions: (m) => m.delete(asn.id_ce_authorityKeyIdentifier) }) },
  e_ext_authority_key_identifier_mismatch: { tbs: () => certTbs(), ctx: { issuerKeyId: Buffer.alloc(20, 7) } },
  e_ext_subject_key_identifier_missing: { tbs: () => certTbs({ extensions: (m) => m.delete(asn.id_ce_subjectKeyIdentifier) }) },
  e_ext_subject_key_identifier_mismatch: { tbs: () => certTbs({ extensions: (m) => m.set(asn.id_ce_subjectKeyIdentifier, [ext(asn.id_ce_subjectKeyIdentifier, new asn.SubjectKeyIdentifier(Buffer.alloc(20, 3)))]) }) },
  e_ext_duplicate_extension: { tbs: () => certTbs({ extensions: (m) => m.set(asn.id_ce_extKeyUsage, [...m.get(asn.id_ce_extKeyUsage)!, ...m.get(asn.id_ce_extKeyUsage)!]) }) },
  e_subject_dn_attribute_max_length: { tbs: () => certTbs({ subject: name([['2.5.4.10', { utf8String: 'O'.repeat(65) }], ['2.5.4.3', { utf8String: 'www.example.test' }]]) }) },
  e_subject_dn_string_type: { tbs: () => certTbs({ subject: name([['2.5.4.3', { bmpString: 'www.example.test' }]]) }) },
  e_subject_printable_string_badalpha: { tbs: () => certTbs({ subject: name([['2.5.4.10', { printableString: 'Ex@mple' }], ['2.5.4.3', { utf8String: 'www.example.test' }]]) }) },
};

interface CrlFixture {
  number?: number | null;
  thisUpdate?: asn.Time;
  nextUpdate?: asn.Time | null;
  entries?: asn.RevokedCertificate[];
  delta?: boolean;
  aki?: Buffer | null;
}

const entry = (serialHex: string, reason?: number, at: asn.Time = utc(new Date())) =>
  new asn.RevokedCertificate({
    userCertificate: ab(Buffer.from(serialHex, 'hex')),
    revocationDate: at,
    crlEntryExtensions: reason === undefined ? undefined : [ext(asn.id_ce_cRLReasons, new asn.CRLReason(reason))],
  });

function crlTbs(f: CrlFixture = {}): Buffer {
  const now = Date.now();
  const exts: asn.Extension[] = [];
  if (f.aki !== null) exts.push(ext(asn.id_ce_authorityKeyIdentifier, new asn.AuthorityKeyIdentifier({ keyIdentifier: new asn.KeyIdentifier(f.aki ?? ISSUER_KEY_ID) })));
  if (f.number !== null) exts.push(ext(asn.id_ce_cRLNumber, new asn.CRLNumber(f.number ?? 10)));
  if (f.delta) exts.push(ext(asn.id_ce_deltaCRLIndicator, new asn.CRLNumber(9), true));
  const tbs = new asn.TBSCertList({
    version: asn.Version.v2,
    signature: new asn.AlgorithmIdentifier({ algorithm: '1.2.840.10045.4.3.2' }),
    issuer: name([['2.5.4.3', { utf8String: 'Test Issuing CA' }]]),
    thisUpdate: f.thisUpdate ?? utc(new Date(now)),
    nextUpdate: f.nextUpdate === null ? undefined : (f.nextUpdate ?? utc(new Date(now + DAY))),
    revokedCertificates: f.entries ?? [entry('40' + '22'.repeat(15), 1), entry('41' + '33'.repeat(15))],
    crlExtensions: exts,
  });
  return Buffer.from(AsnConvert.serialize(tbs));
}

const CRL_FAILURES: Record<string, { tbs: () => Buffer; previous?: bigint }> = {
  e_crl_number_missing: { tbs: () => crlTbs({ number: null }) },
  e_crl_number_longer_than_20_octets: { tbs: () => crlTbs({ number: -5 }) },
  e_crl_number_not_increasing: { tbs: () => crlTbs({ number: 10 }), previous: 10n },
  e_crl_next_update_not_after_this_update: { tbs: () => crlTbs({ nextUpdate: utc(new Date(Date.now() - DAY)) }) },
  e_crl_wrong_time_format_pre2050: { tbs: () => crlTbs({ entries: [entry('40' + '22'.repeat(15), 1, gen(new Date()))] }) },
  e_crl_entry_serial_number_invalid: { tbs: () => crlTbs({ entries: [entry('ff' + '22'.repeat(15), 1)] }) },
  e_crl_invalid_reason_code: { tbs: () => crlTbs({ entries: [entry('40' + '22'.repeat(15), 8)] }) },
  e_crl_missing_authority_key_identifier: { tbs: () => crlTbs({ aki: null }) },
};

describe('pre-issuance lint rules', () => {
  it('every lint has a failing fixture, a unique zlint-style name and a source', () => {
    const names = ALL_LINTS.map((l) => l.name);
    expect(new Set(names).size).toBe(names.length);
    expect(Object.keys(CERT_FAILURES).sort()).toEqual(CERTIFICATE_LINTS.map((l) => l.name).sort());
    expect(Object.keys(CRL_FAILURES).sort()).toEqual(CRL_LINTS.map((l) => l.name).sort());
    for (const l of ALL_LINTS) {
      expect(l.name).toMatch(/^e_[a-z0-9_]+$/);
      expect(l.source).toBeTruthy();
      expect(l.citation).toBeTruthy();
    }
  });

  it.each(['subscriber', 'ocsp-responder', 'ca'] as CertificateKind[])('the passing %s fixture passes every lint', (kind) => {
    expect(lintCertificateTbs(certTbs({}, kind), ctxFor(kind))).toMatchObject({ errors: [], warnings: [] });
  });

  it('the passing fixtures parse with openssl asn1parse (the outside judge of their structure)', () => {
    const f = writeTemp('tbs.der', certTbs());
    expect(run('openssl', ['asn1parse', '-inform', 'DER', '-in', f])).toMatch(/prim: UTCTIME/);
    const c = writeTemp('crl-tbs.der', crlTbs());
    expect(run('openssl', ['asn1parse', '-inform', 'DER', '-in', c])).toMatch(/X509v3 CRL Number|2\.5\.29\.20|CRL Number/);
  });

  it.each(Object.entries(CERT_FAILURES))('%s fails its fixture (and only its own rule is needed to refuse it)', (lintName, f) => {
    const kind = f.kind ?? 'subscriber';
    const r = lintCertificateTbs(f.tbs(), { ...ctxFor(kind), ...f.ctx });
    expect(r.errors.map((e) => e.lint)).toContain(lintName);
    // lowered to a warning, the same finding no longer refuses
    const lowered = lintCertificateTbs(f.tbs(), { ...ctxFor(kind), ...f.ctx, warnings: new Set([lintName]) });
    expect(lowered.errors.map((e) => e.lint)).not.toContain(lintName);
    expect(lowered.warnings.map((e) => e.lint)).toContain(lintName);
  });

  it('the RSA passing fixture passes, and keyEncipherment is fine for RSA', () => {
    const tbs = certTbs({ spki: rsaKey, extensions: (m) => m.set(asn.id_ce_keyUsage, [ku(asn.KeyUsageFlags.digitalSignature | asn.KeyUsageFlags.keyEncipherment)]) });
    expect(lintCertificateTbs(tbs, ctxFor()).errors).toEqual([]);
  });

  it('the passing CRL fixture passes every lint, complete and delta with removeFromCRL', () => {
    expect(lintCrlTbs(crlTbs(), { issuerKeyId: ISSUER_KEY_ID, previousNumber: 9n })).toEqual({ errors: [], warnings: [] });
    expect(lintCrlTbs(crlTbs({ delta: true, entries: [entry('40' + '22'.repeat(15), 8)] }), { issuerKeyId: ISSUER_KEY_ID }).errors).toEqual([]);
  });

  it.each(Object.entries(CRL_FAILURES))('%s fails its fixture', (lintName, f) => {
    const r = lintCrlTbs(f.tbs(), { issuerKeyId: ISSUER_KEY_ID, previousNumber: f.previous });
    expect(r.errors.map((e) => e.lint)).toContain(lintName);
  });

  it.each([
    ['not DER at all', Buffer.from('hello')],
    ['a truncated TBSCertificate', certTbs().subarray(0, 60)],
  ])('a structure the independent parser cannot read is refused: %s', (_what, der) => {
    expect(lintCertificateTbs(der, ctxFor()).errors.map((e) => e.lint)).toEqual(['e_tbs_unparseable']);
    expect(lintCrlTbs(der, { issuerKeyId: ISSUER_KEY_ID }).errors.map((e) => e.lint)).toEqual(['e_tbs_unparseable']);
  });

  it('profiles validate lintWarnings at start-up', () => {
    const spec = { extendedKeyUsage: ['serverAuth'], sanTypes: ['dns'] as 'dns'[], maxValidityDays: 10, defaultValidityDays: 5 };
    const ok = new ProfileRegistry({ lenient: { ...spec, lintWarnings: ['e_underscore_not_permissible_in_dnsname'] } });
    expect([...ok.get('lenient')!.lintWarnings]).toEqual(['e_underscore_not_permissible_in_dnsname']);
    expect(ok.get('tls-server')!.lintWarnings.size).toBe(0);
    expect(() => new ProfileRegistry({ bad: { ...spec, lintWarnings: ['e_no_such_lint'] } })).toThrow(ConfigError);
    expect(() => new ProfileRegistry({ bad: { ...spec, lintWarnings: ['e_no_such_lint'] } })).toThrow(/unknown lint "e_no_such_lint"/);
  });
});

/** Everything hsmca signs today passes every lint: all profiles and key types, the CA certificates, the responder certificate and the CRLs. */
describe.each(['ecdsa-p256', 'ecdsa-p384', 'rsa-2048'])('what hsmca signs passes the lints (CA key %s)', (caAlg) => {
  let ca: TestCa;
  let chainFile: string;
  beforeAll(async () => {
    ca = await startTestCa(backends()[0], { env: { HSMCA_KEY_ALGORITHM: caAlg } });
    const r = await ca.api('GET', '/api/v1/ca', { token: null });
    chainFile = writeTemp('chain.pem', r.body.issuer + r.body.root);
  });
  afterAll(async () => ca?.stop());

  const certCtx = (kind: CertificateKind, issuerKeyId?: Buffer): CertificateLintContext => ({ kind, issuerKeyId });

  it('the root, issuing and OCSP responder certificates', async () => {
    const { root, issuing } = ca.svc.core.hierarchy;
    expect(lintCertificateTbs(readCertificate(root.certificate).tbs, certCtx('ca'))).toMatchObject({ errors: [], warnings: [] });
    expect(lintCertificateTbs(readCertificate(issuing.certificate).tbs, certCtx('ca', root.keyId))).toMatchObject({ errors: [], warnings: [] });
    const ocsp = (await ca.svc.core.caStore.current('ocsp'))!.der;
    expect(lintCertificateTbs(readCertificate(ocsp).tbs, certCtx('ocsp-responder', issuing.keyId))).toMatchObject({ errors: [], warnings: [] });
    const f = writeTemp('ocsp.der', ocsp);
    expect(run('openssl', ['x509', '-inform', 'DER', '-in', f, '-noout', '-text'])).toMatch(/OCSP Signing/);
  });

  it.each<[string, TestKeyType, string, string]>([
    ['tls-server', 'ec-p256', '/CN=a.example.test', 'DNS:a.example.test,DNS:*.example.test,IP:10.0.0.1,IP:fd00::1'],
    ['tls-server', 'ec-p384', '/CN=b.example.test', 'DNS:b.example.test'],
    ['tls-server', 'rsa-2048', '/CN=c.example.test/O=Example/C=DE', 'DNS:c.example.test,DNS:xn--bcher-kva.example.test'],
    ['tls-server', 'rsa-3072', '/CN=10.0.0.2', 'IP:10.0.0.2'],
    ['tls-client', 'ec-p256', '/CN=client-1', 'email:ops@example.test,URI:spiffe://example.test/client-1'],
    ['tls-client', 'ec-p384', '/CN=client-2/O=Example', 'DNS:client-2.example.test'],
    ['tls-client', 'rsa-2048', '/CN=client-3', ''],
  ])('%s for a %s key (%s): issued, passes every lint, openssl reads and verifies it', async (profile, key, subject, sans) => {
    const { csr } = makeCsr({ key, subject, sans: sans || undefined });
    const r = await ca.api('POST', '/api/v1/certificates', { token: ca.adminToken, body: { csr, profile } });
    expect(r.status).toBe(201);
    const der = Buffer.from(r.body.certificate.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    const lint = lintCertificateTbs(readCertificate(der).tbs, { ...certCtx('subscriber', ca.svc.core.hierarchy.issuing.keyId), maxValidityDays: 397 });
    expect(lint).toMatchObject({ errors: [], warnings: [] });
    const f = writeTemp('leaf.pem', r.body.certificate);
    expect(run('openssl', ['verify', '-CAfile', chainFile, f])).toMatch(/: OK/);
  });

  it('the full and delta CRLs, with revocations of several reasons', async () => {
    for (const [i, reason] of ['keyCompromise', 'superseded', 'unspecified'].entries()) {
      // a key revoked for keyCompromise is blocked: each certificate gets its own key
      const { csr } = makeCsr({ key: 'ec-p256', slot: 100 + i, subject: '/CN=r.example.test', sans: 'DNS:r.example.test' });
      const issued = await ca.api('POST', '/api/v1/certificates', { token: ca.adminToken, body: { csr } });
      expect((await ca.api('POST', `/api/v1/certificates/${issued.body.serialNumber}/revoke`, { token: ca.adminToken, body: { reason } })).status).toBe(200);
    }
    expect((await ca.api('POST', '/api/v1/crl/refresh', { token: ca.adminToken })).status).toBe(200);
    for (const kind of ['full', 'delta'] as const) {
      const crl = ca.svc.core.crls.current(kind)!.record;
      const tbs = AsnConvert.parse(crl.der, asn.CertificateList).tbsCertList;
      const tbsDer = Buffer.from(AsnConvert.serialize(tbs));
      expect(lintCrlTbs(tbsDer, { issuerKeyId: ca.svc.core.hierarchy.issuing.keyId, previousNumber: crl.crlNumber - 1n })).toEqual({ errors: [], warnings: [] });
      const f = writeTemp(`${kind}.crl`, crl.der);
      expect(run('openssl', ['crl', '-inform', 'DER', '-in', f, '-CAfile', chainFile, '-noout', '-text'])).toMatch(/verify OK|X509v3 CRL Number/);
    }
  });
});

/** A lint failure refuses issuance end to end: a profile configured past what the Baseline Requirements allow. */
describe.each(backends())('a lint refuses issuance over HTTP ($name)', (backend) => {
  let ca: TestCa;
  beforeAll(async () => {
    const cfg = path.join(tempDir(), 'hsmca.json');
    const longServer = { extendedKeyUsage: ['serverAuth'], sanTypes: ['dns'], requireSan: true, commonNameMustBeSan: true, maxValidityDays: 825, defaultValidityDays: 90 };
    fs.writeFileSync(cfg, JSON.stringify({ profiles: { 'long-server': longServer, 'long-server-private': { ...longServer, lintWarnings: ['e_tls_server_cert_valid_time_longer_than_398_days'] } } }));
    ca = await startTestCa(backend, { env: { HSMCA_CONFIG: cfg } });
  });
  afterAll(async () => ca?.stop());

  it('answers 500 lintFailed naming the lint, stores no certificate and audits the refusal', async () => {
    const before = await ca.svc.core.certificates.count();
    const { csr } = makeCsr({ key: 'ec-p256', subject: '/CN=long.example.test', sans: 'DNS:long.example.test' });
    const r = await ca.api('POST', '/api/v1/certificates', { token: ca.adminToken, body: { csr, profile: 'long-server', validityDays: 500 } });
    expect(r.status).toBe(500);
    expect(r.body).toEqual({ error: { code: 'lintFailed', message: 'the certificate failed pre-issuance checks: e_tls_server_cert_valid_time_longer_than_398_days' } });
    expect(JSON.stringify(r.body)).not.toMatch(/\bat \w|\.ts:\d/);
    expect(await ca.svc.core.certificates.count()).toBe(before);
    const rows = await ca.svc.core.db.knex('certificates').where({ profile: 'long-server' }).select('state', 'der');
    expect(rows.map((x: { state: string; der: unknown }) => [x.state, x.der ?? null])).toEqual([['failed', null]]);
    const audit = await ca.api('GET', '/api/v1/audit?limit=500', { token: ca.adminToken });
    const ev = audit.body.items.find((e: { type: string }) => e.type === 'lintFailed');
    expect(ev).toBeDefined();
    expect(ev.details).toMatchObject({ target: 'certificate', kind: 'subscriber', profile: 'long-server', lints: ['e_tls_server_cert_valid_time_longer_than_398_days'] });
    expect(ev.subject).toMatch(/^[0-9a-f]{32}$/);
    // within the Baseline Requirements the same profile issues
    const ok = await ca.api('POST', '/api/v1/certificates', { token: ca.adminToken, body: { csr, profile: 'long-server', validityDays: 398 } });
    expect(ok.status).toBe(201);
  });

  it('a profile that lowers the lint to a warning issues (a private CA policy)', async () => {
    const { csr } = makeCsr({ key: 'ec-p256', subject: '/CN=long.example.test', sans: 'DNS:long.example.test' });
    const r = await ca.api('POST', '/api/v1/certificates', { token: ca.adminToken, body: { csr, profile: 'long-server-private', validityDays: 500 } });
    expect(r.status).toBe(201);
    expect(new Date(r.body.notAfter).getTime() - new Date(r.body.notBefore).getTime()).toBe(500 * DAY - 1000);
  });
});
