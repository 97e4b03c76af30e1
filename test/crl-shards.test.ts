import 'reflect-metadata';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  CRLDistributionPoints,
  CRLNumber,
  Certificate,
  CertificateList,
  IssuingDistributionPoint,
  id_ce_cRLDistributionPoints,
  id_ce_cRLNumber,
  id_ce_issuingDistributionPoint,
} from '@peculiar/asn1-x509';
import * as der from '../src/asn1/der';
import { CrlShardPlan } from '../src/ca/crl-shards';
import { makeCsr } from './helpers/csr';
import { TestCa, backends, runStatus, startTestCa, tempDir } from './helpers/harness';

const SHARDS = 4;

interface Issued {
  serialNumber: string;
  certificate: string;
  chain: string[];
  der: Buffer;
  shard: number;
}

const certDer = (pem: string): Buffer => der.pemDecode(pem, ['CERTIFICATE'])!;
const crlNumberOf = (crl: Buffer): bigint => {
  const e = AsnConvert.parse(crl, CertificateList).tbsCertList.crlExtensions!.find((x) => x.extnID === id_ce_cRLNumber)!;
  return BigInt(AsnConvert.parse(e.extnValue, CRLNumber).value);
};
const listedSerials = (crl: Buffer) =>
  (AsnConvert.parse(crl, CertificateList).tbsCertList.revokedCertificates ?? []).map((r) => Buffer.from(r.userCertificate).toString('hex').replace(/^00/, ''));

/** The cRLDistributionPoints of a certificate: the DER of its one DistributionPointName, and its URI. */
function cdpOf(cert: Buffer): { name: Buffer; uri: string } {
  const c = AsnConvert.parse(cert, Certificate);
  const e = c.tbsCertificate.extensions!.find((x) => x.extnID === id_ce_cRLDistributionPoints)!;
  const dps = AsnConvert.parse(e.extnValue, CRLDistributionPoints);
  expect(dps).toHaveLength(1);
  const name = dps[0].distributionPoint!;
  return { name: Buffer.from(AsnConvert.serialize(name)), uri: name.fullName![0].uniformResourceIdentifier! };
}

/** The issuingDistributionPoint of a CRL: critical, the DER of its DistributionPointName, onlyContainsUserCerts. */
function idpOf(crl: Buffer): { critical: boolean; name: Buffer; uri: string; onlyContainsUserCerts: boolean } {
  const e = AsnConvert.parse(crl, CertificateList).tbsCertList.crlExtensions!.find((x) => x.extnID === id_ce_issuingDistributionPoint)!;
  const idp = AsnConvert.parse(e.extnValue, IssuingDistributionPoint);
  const name = idp.distributionPoint!;
  return { critical: e.critical, name: Buffer.from(AsnConvert.serialize(name)), uri: name.fullName![0].uniformResourceIdentifier!, onlyContainsUserCerts: idp.onlyContainsUserCerts };
}

async function fetchCrl(ca: TestCa, p: string): Promise<Buffer> {
  const r = await fetch(ca.url + p);
  expect(r.status).toBe(200);
  expect(r.headers.get('content-type')).toBe('application/pkix-crl');
  return Buffer.from(await r.arrayBuffer());
}

/** `openssl verify -crl_check` of a certificate against its chain and one CRL: the outside judge. */
function verify(dir: string, cert: Issued, crl: Buffer, name: string): { status: number; out: string } {
  const certFile = path.join(dir, `${cert.serialNumber}.pem`);
  const chainFile = path.join(dir, 'chain.pem');
  const crlFile = path.join(dir, `${name}.crl.pem`);
  fs.writeFileSync(certFile, cert.certificate);
  fs.writeFileSync(chainFile, cert.chain.join(''));
  fs.writeFileSync(crlFile, der.pemEncode('X509 CRL', crl));
  return runStatus('openssl', ['verify', '-crl_check', '-CAfile', chainFile, '-CRLfile', crlFile, certFile]);
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * Partitioned CRLs (HSMCA_CRL_SHARDS): each certificate names its shard's CRL,
 * each shard CRL is a scope of its own whose issuingDistributionPoint is the
 * certificates' distribution point byte for byte (RFC 5280 5.2.5, 6.3.3), a
 * revocation rebuilds only its shard, and the full CRL keeps listing
 * everything. openssl verify -crl_check judges each shard CRL.
 */
describe.each(backends())(`partitioned CRLs, ${SHARDS} shards ($name)`, (backend) => {
  let ca: TestCa;
  let dir: string;
  const certs: Issued[] = [];
  let plan: CrlShardPlan;

  beforeAll(async () => {
    dir = tempDir('hsmca-crl-shards-');
    ca = await startTestCa(backend, { env: { HSMCA_CRL_SHARDS: String(SHARDS), HSMCA_CRL_REFRESH_SECONDS: '3600' } });
    plan = new CrlShardPlan(SHARDS, `${ca.url}/crl`);
    // certificates in at least two shards (each lands in a shard at random)
    for (let i = 0; i < 40 && (certs.length < 6 || new Set(certs.map((c) => c.shard)).size < 2); i++) {
      const r = await ca.api('POST', '/api/v1/certificates', { body: { csr: makeCsr({ sans: `DNS:shard${i}.example` }).csr } });
      expect(r.status).toBe(201);
      const d = certDer(r.body.certificate);
      certs.push({ ...r.body, der: d, shard: plan.shardOf(Buffer.from(r.body.serialNumber.padStart(32, '0'), 'hex')) });
    }
    expect(new Set(certs.map((c) => c.shard)).size).toBeGreaterThanOrEqual(2);
  }, 120_000);
  afterAll(async () => {
    await ca?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('gives each certificate its shard, stored, and names that shard CRL in its cRLDistributionPoints', async () => {
    for (const c of certs) {
      expect(cdpOf(c.der).uri).toBe(`${ca.url}/crl/${c.shard}`);
      const row = await ca.svc.core.db.knex('certificates').where({ serial: c.serialNumber }).first('crl_shard');
      expect(Number(row.crl_shard)).toBe(c.shard);
    }
  });

  it('lists the shard URLs in /crl/shards.json (the CCADB JSON array form)', async () => {
    const r = await ca.api('GET', '/crl/shards.json', { token: null });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^application\/json/);
    expect(r.body).toEqual(Array.from({ length: SHARDS }, (_, k) => `${ca.url}/crl/${k}`));
  });

  it.each([['4'], ['1024'], ['01'], ['-1'], ['abc'], ['1.0'], ['%zz']])('answers an unknown shard /crl/%s with 404 or 400 and the contract error body', async (shard) => {
    const r = await ca.api('GET', `/crl/${shard}`, { token: null });
    if (shard === '%zz') {
      expect(r.status).toBe(400);
      expect(r.body.error.code).toBe('badRequest');
    } else {
      expect(r.status).toBe(404);
      expect(r.body).toEqual({ error: { code: 'unknownCrlShard', message: expect.stringContaining('0 to 3') } });
    }
  });

  it('makes every shard CRL a scope of its own: critical IDP equal, DER for DER, to its certificates\' distribution point', async () => {
    for (let k = 0; k < SHARDS; k++) {
      const crl = await fetchCrl(ca, `/crl/${k}`);
      const idp = idpOf(crl);
      expect(idp.critical).toBe(true);
      expect(idp.uri).toBe(`${ca.url}/crl/${k}`);
      expect(idp.onlyContainsUserCerts).toBe(true);
      for (const c of certs.filter((x) => x.shard === k)) expect(idp.name.equals(cdpOf(c.der).name)).toBe(true);
    }
    // the full CRL keeps its own scope
    expect(idpOf(await fetchCrl(ca, '/crl')).uri).toBe(`${ca.url}/crl`);
  });

  it('openssl accepts a good certificate with its shard CRL, and refuses a CRL of another shard (another scope)', async () => {
    const [a] = certs;
    const own = verify(dir, a, await fetchCrl(ca, `/crl/${a.shard}`), 'own');
    expect(own.out).toMatch(/: OK/);
    expect(own.status).toBe(0);
    const other = (a.shard + 1) % SHARDS;
    const wrong = verify(dir, a, await fetchCrl(ca, `/crl/${other}`), 'other');
    expect(wrong.status).not.toBe(0);
    expect(wrong.out).toMatch(/different CRL scope/);
  });

  it('a revocation rebuilds only its shard (other shards keep their CRL numbers); openssl then says revoked', async () => {
    const a = certs[0];
    const b = certs.find((c) => c.shard !== a.shard)!;
    const before = await Promise.all(Array.from({ length: SHARDS }, async (_, k) => crlNumberOf(await fetchCrl(ca, `/crl/${k}`))));
    const fullBefore = crlNumberOf(await fetchCrl(ca, '/crl'));

    expect((await ca.api('POST', `/api/v1/certificates/${a.serialNumber}/revoke`, { body: { reason: 'keyCompromise' } })).status).toBe(200);
    // the debounced job (no refresh call): the shard CRL gets a new number
    const crlA = await until('the shard CRL', async () => {
      const crl = await fetchCrl(ca, `/crl/${a.shard}`);
      return crlNumberOf(crl) > before[a.shard] ? crl : undefined;
    });
    expect(crlNumberOf(crlA)).toBe(before[a.shard] + 1n);
    expect(listedSerials(crlA)).toEqual([a.serialNumber]);
    for (let k = 0; k < SHARDS; k++) if (k !== a.shard) expect(crlNumberOf(await fetchCrl(ca, `/crl/${k}`))).toBe(before[k]);
    const full = await fetchCrl(ca, '/crl');
    expect(crlNumberOf(full)).toBeGreaterThan(fullBefore);
    expect(listedSerials(full)).toContain(a.serialNumber);

    const revoked = verify(dir, a, crlA, 'revoked');
    expect(revoked.status).not.toBe(0);
    expect(revoked.out).toMatch(/certificate revoked/);
    // b, in another shard, is still good by its own shard CRL
    expect(verify(dir, b, await fetchCrl(ca, `/crl/${b.shard}`), 'b-good').status).toBe(0);

    // b revoked too: each shard lists only its own; the full CRL lists both
    expect((await ca.api('POST', `/api/v1/certificates/${b.serialNumber}/revoke`, { body: { reason: 'superseded' } })).status).toBe(200);
    const crlB = await until('the second shard CRL', async () => {
      const crl = await fetchCrl(ca, `/crl/${b.shard}`);
      return crlNumberOf(crl) > before[b.shard] ? crl : undefined;
    });
    expect(listedSerials(crlB)).toEqual([b.serialNumber]);
    expect(listedSerials(await fetchCrl(ca, `/crl/${a.shard}`))).toEqual([a.serialNumber]);
    expect(verify(dir, b, crlB, 'b-revoked').out).toMatch(/certificate revoked/);
    await until('the full CRL', async () => {
      const serials = listedSerials(await fetchCrl(ca, '/crl'));
      return serials.includes(a.serialNumber) && serials.includes(b.serialNumber) ? true : undefined;
    });

    // each shard CRL made is audited with its shard
    const events = await ca.svc.core.db.knex('audit_events').where({ type: 'crlGenerated' }).select('subject', 'details');
    const shardEvents = events.map((e: { details: string }) => JSON.parse(e.details)).filter((d: { kind: string }) => d.kind === 'shard');
    expect(shardEvents.some((d: { shard: number; crlNumber: unknown }) => d.shard === a.shard && String(d.crlNumber) === String(before[a.shard] + 1n))).toBe(true);
  });

  it('POST /api/v1/crl/refresh rebuilds every shard, each in its own number sequence', async () => {
    const before = await Promise.all(Array.from({ length: SHARDS }, async (_, k) => crlNumberOf(await fetchCrl(ca, `/crl/${k}`))));
    const r = await ca.api('POST', '/api/v1/crl/refresh');
    expect(r.status).toBe(200);
    const after = await Promise.all(Array.from({ length: SHARDS }, async (_, k) => crlNumberOf(await fetchCrl(ca, `/crl/${k}`))));
    for (let k = 0; k < SHARDS; k++) expect(after[k]).toBeGreaterThan(before[k]);
    // the shard sequences are their own, not the full CRL's
    expect(BigInt(r.body.crlNumber)).not.toBe(after[0]);
  });
});

describe('partitioned CRLs across a crash (sqlite+soft)', () => {
  it('rebuilds at start a shard whose CRL is older than a revocation of its own', async () => {
    const backend = backends({ pkcs11: false })[0];
    const first = await startTestCa(backend, { env: { HSMCA_CRL_SHARDS: String(SHARDS), HSMCA_CRL_REFRESH_SECONDS: '3600' }, keepData: true });
    const env = { HSMCA_CRL_SHARDS: String(SHARDS), HSMCA_CRL_REFRESH_SECONDS: '3600', HSMCA_PUBLIC_URL: first.env.HSMCA_PUBLIC_URL, HSMCA_PORT: first.env.HSMCA_PORT };
    let second: TestCa | undefined;
    try {
      const r = await first.api('POST', '/api/v1/certificates', { body: { csr: makeCsr({ sans: 'DNS:crash.example' }).csr } });
      expect(r.status).toBe(201);
      const shard = cdpOf(certDer(r.body.certificate)).uri.split('/').pop()!;
      const numberBefore = crlNumberOf(await fetchCrl(first, `/crl/${shard}`));
      // a revocation committed, and then the process gone before any CRL was made (what SIGKILL leaves)
      await first.svc.core.db.knex('certificates').where({ serial: r.body.serialNumber }).update({ revoked_at: Date.now(), revocation_reason: 1 });
      await first.stop();
      second = await startTestCa(backend, { env, dataDir: first.dataDir });
      const crl = await fetchCrl(second, `/crl/${shard}`);
      expect(crlNumberOf(crl)).toBe(numberBefore + 1n);
      expect(listedSerials(crl)).toEqual([r.body.serialNumber]);
    } finally {
      await second?.stop();
    }
  }, 60_000);
});

describe('unpartitioned CRL, the default (sqlite+soft)', () => {
  let ca: TestCa;
  beforeAll(async () => {
    ca = await startTestCa(backends({ pkcs11: false })[0]);
  });
  afterAll(async () => {
    await ca?.stop();
  });

  it('names the full CRL in certificates, serves no shards, and stores no shard CRLs', async () => {
    const r = await ca.api('POST', '/api/v1/certificates', { body: { csr: makeCsr({ sans: 'DNS:unsharded.example' }).csr } });
    expect(r.status).toBe(201);
    expect(cdpOf(certDer(r.body.certificate)).uri).toBe(`${ca.url}/crl`);
    const row = await ca.svc.core.db.knex('certificates').where({ serial: r.body.serialNumber }).first('crl_shard');
    expect(row.crl_shard).toBeNull();
    for (const p of ['/crl/0', '/crl/shards.json']) {
      const g = await ca.api('GET', p, { token: null });
      expect(g.status).toBe(404);
      expect(g.body.error.code).toBe('notFound');
    }
    expect(await ca.svc.core.db.knex('crls').whereNotNull('shard').first()).toBeUndefined();
    expect(idpOf(await fetchCrl(ca, '/crl')).uri).toBe(`${ca.url}/crl`);
  });
});
