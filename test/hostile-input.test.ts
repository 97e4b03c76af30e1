import * as fc from 'fast-check';
import * as der from '../src/asn1/der';
import { backends, startTestCa, TestCa } from './helpers/harness';
import { makeCsr } from './helpers/csr';
import * as http from 'node:http';

function rawGet(url: string): Promise<{ status: number; body: Buffer }> {
  const u = new URL(url);
  const path = url.slice(u.origin.length);
  return new Promise((resolve, reject) => {
    http
      .get({ host: u.hostname, port: u.port, path }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

/**
 * Property-based hostile input over real HTTP: random and mutated CSRs, OCSP
 * requests and JSON bodies. Every answer is a contract error (or an OCSP
 * response), the process never crashes, and valid state is never changed by
 * an invalid request. Case counts are in the `numRuns` of each property.
 */
const RUNS = { json: 2500, csr: 2500, ocspPost: 2500, ocspGet: 1500, paths: 1500 };

describe.each(backends().slice(0, 1))('hostile input ($name)', (backend) => {
  let ca: TestCa;
  let requester: string;
  let goodCsrDer: Buffer;
  let state: () => Promise<string>;

  beforeAll(async () => {
    ca = await startTestCa(backend, { env: { HSMCA_ISSUE_RATE_PER_TOKEN: '0', HSMCA_ISSUE_RATE_PER_ADDRESS: '0' } });
    requester = (await ca.svc.core.tokens.create({ role: 'requester', name: 'fuzz' })).token;
    const { csr } = makeCsr({ subject: '/CN=fuzz.example', sans: 'DNS:fuzz.example' });
    goodCsrDer = der.pemDecode(csr, ['CERTIFICATE REQUEST'])!;
    const issued = await ca.api('POST', '/api/v1/certificates', { token: requester, body: { csr } });
    expect(issued.status).toBe(201);
    state = async () => {
      const k = ca.svc.core.db.knex;
      const certs = await k('certificates').where({ state: 'issued' }).select('serial', 'revoked_at').orderBy('serial');
      const tokens = await k('tokens').select('id', 'revoked_at').orderBy('id');
      return JSON.stringify({ certs, tokens });
    };
  });
  afterAll(async () => ca?.stop());

  const isContractError = (r: { status: number; body: any }) =>
    r.status >= 400 && r.status < 500 && r.body && typeof r.body === 'object' && typeof r.body.error?.code === 'string' && typeof r.body.error?.message === 'string';

  it(`answers ${RUNS.json} random JSON bodies with contract errors and changes nothing`, async () => {
    const before = await state();
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.jsonValue().map((v) => JSON.stringify(v)),
          fc.record({ csr: fc.oneof(fc.string(), fc.jsonValue()), profile: fc.oneof(fc.string(), fc.jsonValue()), validityDays: fc.oneof(fc.integer(), fc.double(), fc.string()) }, { requiredKeys: [] }).map((v) => JSON.stringify(v)),
          fc.string({ maxLength: 200 }),
          fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b).toString('latin1')),
        ),
        fc.constantFrom('/api/v1/certificates', '/api/v1/certificates/01/revoke', '/api/v1/tokens'),
        fc.boolean(),
        async (body, path, admin) => {
          const r = await ca.api('POST', path, { token: admin ? ca.adminToken : requester, rawBody: body, headers: { 'content-type': 'application/json' } });
          // A random body can be a valid token request from an admin: that is a real change, made on purpose.
          if (r.status === 201 && path === '/api/v1/tokens') return;
          expect(isContractError(r)).toBe(true);
        },
      ),
      { numRuns: RUNS.json },
    );
    const tokensNow = await ca.svc.core.db.knex('tokens').count<{ n: number }[]>({ n: '*' });
    const after = JSON.parse(await state());
    expect(after.certs).toEqual(JSON.parse(before).certs);
    expect(Number(tokensNow[0].n)).toBeGreaterThanOrEqual(JSON.parse(before).tokens.length);
  });

  it(`refuses ${RUNS.csr} mutated CSRs cleanly`, async () => {
    const before = (await state()).length;
    let issued = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          // flip bytes
          fc.array(fc.tuple(fc.nat(goodCsrDer.length - 1), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }).map((flips) => {
            const b = Buffer.from(goodCsrDer);
            for (const [i, x] of flips) b[i] ^= x;
            return b;
          }),
          // truncate or extend
          fc.nat(goodCsrDer.length).map((n) => goodCsrDer.subarray(0, n)),
          fc.uint8Array({ minLength: 1, maxLength: 64 }).map((extra) => Buffer.concat([goodCsrDer, Buffer.from(extra)])),
          // splice random bytes in
          fc.tuple(fc.nat(goodCsrDer.length), fc.uint8Array({ minLength: 1, maxLength: 32 })).map(([at, ins]) => Buffer.concat([goodCsrDer.subarray(0, at), Buffer.from(ins), goodCsrDer.subarray(at)])),
          // random DER-ish bytes
          fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.concat([Buffer.from([0x30, 0x82, 0x01, 0x00]), Buffer.from(b)])),
        ),
        async (bytes) => {
          const pem = der.pemEncode('CERTIFICATE REQUEST', bytes);
          const r = await ca.api('POST', '/api/v1/certificates', { token: requester, body: { csr: pem } });
          if (r.status === 201) {
            issued++;
            return;
          }
          expect(isContractError(r)).toBe(true);
          expect([400, 413, 422]).toContain(r.status);
        },
      ),
      { numRuns: RUNS.csr },
    );
    // Only a mutation that left the CSR valid (a changed bit the signature does not cover) may issue.
    const after = await ca.svc.core.certificates.count();
    expect(after).toBe(1 + issued);
    expect((await state()).length).toBeGreaterThanOrEqual(before);
  });

  it(`answers ${RUNS.ocspPost} random OCSP POST bodies with an OCSP response`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 400 }), async (bytes) => {
        const res = await fetch(`${ca.url}/ocsp`, { method: 'POST', body: Buffer.from(bytes) });
        expect(res.status).toBe(200);
        expect(res.headers.get('content-type')).toBe('application/ocsp-response');
        const body = Buffer.from(await res.arrayBuffer());
        const top = der.children(der.readTop(body));
        expect(top[0].tag).toBe(der.Tag.ENUMERATED);
      }),
      { numRuns: RUNS.ocspPost },
    );
  });

  it(`answers ${RUNS.ocspGet} random OCSP GET paths with an OCSP response`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.string({ maxLength: 200 }), fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString('base64'))), async (s) => {
        // node:http sends the path as written; fetch would resolve "." and ".." segments away before the server saw them
        const res = await rawGet(`${ca.url}/ocsp/${encodeURIComponent(s) || 'x'}`);
        expect(res.status).toBe(200);
        expect(der.children(der.readTop(res.body))[0].tag).toBe(der.Tag.ENUMERATED);
      }),
      { numRuns: RUNS.ocspGet, examples: [['.'], ['..'], ['/'], ['%2e%2E'], ['../../api/v1/health']] },
    );
  });

  it(`answers ${RUNS.paths} random serials and queries with contract errors`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 80 }), fc.string({ maxLength: 40 }), async (serial, q) => {
        const a = await ca.api('GET', `/api/v1/certificates/${encodeURIComponent(serial) || '%20'}`);
        expect(a.status === 200 || isContractError(a)).toBe(true);
        const b = await ca.api('GET', `/api/v1/certificates?limit=${encodeURIComponent(q)}&cursor=${encodeURIComponent(serial)}`);
        expect(b.status === 200 || isContractError(b)).toBe(true);
      }),
      { numRuns: RUNS.paths },
    );
    const h = await ca.api('GET', '/healthz', { token: null });
    expect(h.status).toBe(200);
  });

  it('refuses deep JSON, huge headers and many SANs without falling over', async () => {
    const deep = '['.repeat(100_000) + ']'.repeat(100_000);
    const r1 = await ca.api('POST', '/api/v1/certificates', { token: requester, rawBody: deep, headers: { 'content-type': 'application/json' } });
    expect(isContractError(r1)).toBe(true);
    const r2 = await fetch(`${ca.url}/api/v1/ca`, { headers: { 'x-big': 'a'.repeat(64 * 1024) } }).then((r) => r.status).catch(() => 431);
    expect(r2).toBe(431);
    const sans = Array.from({ length: 101 }, (_, i) => `DNS:n${i}.example`).join(',');
    const r3 = await ca.api('POST', '/api/v1/certificates', { token: requester, body: { csr: makeCsr({ sans }).csr } });
    expect([r3.status, r3.body.error.code]).toEqual([422, 'tooManySans']);
    expect((await ca.api('GET', '/healthz', { token: null })).status).toBe(200);
  });
});
