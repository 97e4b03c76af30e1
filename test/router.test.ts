import * as http from 'node:http';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import * as zlib from 'node:zlib';
import { CaError } from '../src/errors';
import { sendJson } from '../src/http/errors';
import { ADMIN, ANY_ROLE, LOCALHOST, PUBLIC, Route } from '../src/http/route';
import { createRouter } from '../src/http/router';
import { silentLogger } from '../src/log';
import { Metrics } from '../src/metrics';

/**
 * The route table and its router, on a small table of its own: every stage a
 * request goes through (match, headers, authentication, admission, body,
 * handler, errors), in that order.
 */
describe('router', () => {
  let server: http.Server;
  let base: string;
  const metrics = new Metrics();
  const failures: { code: string; path: string }[] = [];
  const seen: { route: string; body?: unknown; params?: Record<string, string>; query?: unknown }[] = [];
  let admitted = 0;

  const routes: Route[] = [
    { method: 'GET', path: '/open', access: PUBLIC, handle: ({ res }) => sendJson(res, 200, { ok: true }) },
    { method: 'GET', path: '/local', access: LOCALHOST, handle: ({ res }) => sendJson(res, 200, { local: true }) },
    { method: 'GET', path: '/api/v1/things/:id', access: ANY_ROLE, handle: ({ res, params, query }) => (seen.push({ route: 'thing', params, query }), sendJson(res, 200, { id: params.id })) },
    {
      method: 'POST',
      path: '/api/v1/things',
      access: ANY_ROLE,
      body: 'json',
      admit: () => {
        if (++admitted > 1000) throw new CaError('rateLimited', 'rateLimited', 'slow down', { 'Retry-After': '7' });
      },
      handle: ({ res, body }) => (seen.push({ route: 'post', body }), sendJson(res, 201, { body: body ?? null })),
    },
    { method: 'POST', path: '/api/v1/admin', access: ADMIN, body: 'json', handle: ({ res }) => sendJson(res, 200, {}) },
    { method: 'GET', path: '/api/v1/boom', access: PUBLIC, handle: () => Promise.reject(new Error('secret detail')) },
    {
      method: 'GET',
      path: '/raw/*',
      access: PUBLIC,
      ownHeaders: true,
      metered: false,
      handle: ({ req, res }) => {
        res.setHeader('Content-Type', 'text/plain');
        res.end(req.url);
      },
    },
  ];

  beforeAll(async () => {
    const listener = createRouter(routes, {
      authenticate: async (authorization) => {
        if (authorization === 'Bearer admin') return { id: 'a', name: 'root', role: 'admin', scope: null };
        if (authorization === 'Bearer requester') return { id: 'r', name: 'svc', role: 'requester', scope: null };
        throw new CaError('unauthorized', authorization ? 'invalidToken' : 'unauthorized', 'no');
      },
      hooks: { failed: (e) => failures.push({ code: e.error.code, path: e.path }) },
      metrics,
      log: silentLogger,
      maxBodyBytes: 1024,
    });
    server = http.createServer(listener);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const call = async (method: string, p: string, o: { token?: string; body?: string | Buffer; headers?: Record<string, string> } = {}) => {
    const headers: Record<string, string> = { ...(o.headers ?? {}) };
    if (o.token) headers.authorization = `Bearer ${o.token}`;
    const res = await fetch(base + p, { method, headers, body: o.body });
    const text = await res.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, json, text, headers: res.headers };
  };

  it('matches paths without regard to case or a trailing slash, decodes parameters and parses the query', async () => {
    seen.length = 0;
    const r = await call('GET', '/API/v1/Things/a%20b/?limit=5&tag=x&tag=y', { token: 'requester' });
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ id: 'a b' });
    expect(seen[0].query).toEqual({ limit: '5', tag: ['x', 'y'] });
  });

  it('answers HEAD with the GET route, without a body', async () => {
    const r = await call('HEAD', '/open');
    expect(r.status).toBe(200);
    expect(r.text).toBe('');
    expect(r.headers.get('content-type')).toBe('application/json; charset=utf-8');
  });

  it.each([
    ['an unknown path', 'GET', '/nowhere'],
    ['a known path with another method', 'DELETE', '/open'],
    ['a POST to a GET route', 'POST', '/open'],
  ])('answers %s with 404 and the contract JSON', async (_name, method, p) => {
    const r = await call(method, p);
    expect(r.status).toBe(404);
    expect(r.json).toEqual({ error: { code: 'notFound', message: `no route for ${method} ${p}` } });
    expect(r.headers.get('x-content-type-options')).toBe('nosniff');
  });

  it('answers a parameter that is not valid percent-encoding with 400, not a 500', async () => {
    const r = await call('GET', '/api/v1/things/%E0%A4%A', { token: 'requester' });
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe('badRequest');
  });

  it('puts the security headers on every answer and no-store under /api; a route with its own headers gets none of them', async () => {
    const api = await call('GET', '/api/v1/things/1', { token: 'admin' });
    expect(api.headers.get('cache-control')).toBe('no-store');
    expect(api.headers.get('content-security-policy')).toBe("default-src 'none'; frame-ancestors 'none'");
    const open = await call('GET', '/open');
    expect(open.headers.get('cache-control')).toBeNull();
    expect(open.headers.get('x-frame-options')).toBe('DENY');
    const raw = await call('GET', '/raw/a/b+c==');
    expect(raw.text).toBe('/raw/a/b+c==');
    expect(raw.headers.get('x-frame-options')).toBeNull();
  });

  it('authenticates before it reads a body: a stranger’s oversized body gets 401 and the failure is reported, without the token', async () => {
    failures.length = 0;
    const r = await call('POST', '/api/v1/things', { token: 'forged', body: 'x'.repeat(10_000) });
    expect(r.status).toBe(401);
    expect(r.json.error.code).toBe('invalidToken');
    expect(failures).toEqual([{ code: 'invalidToken', path: '/api/v1/things' }]);
  });

  it('refuses a token of another role with 403, and that is no authentication failure', async () => {
    failures.length = 0;
    const r = await call('POST', '/api/v1/admin', { token: 'requester', body: '{}' });
    expect(r.status).toBe(403);
    expect(r.json.error.message).toBe('this needs the admin role; the token has requester');
    expect(failures).toEqual([]);
  });

  it('admits before the body is read: a refusal carries its headers', async () => {
    admitted = 1000;
    const r = await call('POST', '/api/v1/things', { token: 'requester', body: 'x'.repeat(10_000) });
    admitted = 0;
    expect(r.status).toBe(429);
    expect(r.headers.get('retry-after')).toBe('7');
  });

  it('reads no body from a request that has none (no Content-Length, no Transfer-Encoding)', async () => {
    const { port } = server.address() as AddressInfo;
    const answer = await new Promise<string>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => s.end('POST /api/v1/things HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer requester\r\nConnection: close\r\n\r\n'));
      let text = '';
      s.on('data', (c) => (text += c));
      s.on('end', () => resolve(text));
      s.on('error', reject);
    });
    expect(answer).toMatch(/^HTTP\/1.1 201/);
    expect(answer.endsWith('{"body":null}')).toBe(true);
  });

  it.each([
    ['an empty body', '', {}, 201, {}],
    ['an object', '{"a":1}', {}, 201, { a: 1 }],
    ['a BOM and whitespace', '\ufeff \n[1]', {}, 201, [1]],
    ['a bare string', '"x"', {}, 400, 'malformedJson'],
    ['broken JSON', '{"a":', {}, 400, 'malformedJson'],
    ['a body past the limit', JSON.stringify({ a: 'x'.repeat(2000) }), {}, 413, 'bodyTooLarge'],
    ['a charset other than UTF-8', '{"a":1}', { 'content-type': 'application/json; charset=latin1' }, 400, 'unsupportedEncoding'],
  ])('reads the JSON body strictly: %s', async (_name, body, headers, status, expected) => {
    const r = await call('POST', '/api/v1/things', { token: 'requester', body, headers });
    expect(r.status).toBe(status);
    if (status === 201) expect(r.json).toEqual({ body: expected });
    else expect(r.json.error.code).toBe(expected);
  });

  it('decodes gzip bodies to the same answers as plain ones', async () => {
    for (const text of ['{"a":[1,2]}', '{"a":', JSON.stringify({ a: 'x'.repeat(2000) })]) {
      const plain = await call('POST', '/api/v1/things', { token: 'requester', body: text });
      const gz = await call('POST', '/api/v1/things', { token: 'requester', body: zlib.gzipSync(text), headers: { 'content-encoding': 'gzip' } });
      expect({ status: gz.status, json: gz.json }).toEqual({ status: plain.status, json: plain.json });
    }
  });

  it('answers an unexpected error as a bare 500 that says nothing of it', async () => {
    const r = await call('GET', '/api/v1/boom');
    expect(r.status).toBe(500);
    expect(r.json).toEqual({ error: { code: 'internalError', message: 'an internal error occurred; it has been logged' } });
    expect(r.text).not.toMatch(/secret detail/);
  });

  it('serves loopback-only routes to the local host', async () => {
    expect((await call('GET', '/local')).status).toBe(200);
  });

  it('counts answers by the declared route, unmatched ones apart, and leaves unmetered routes out', async () => {
    await call('GET', '/api/v1/things/zz', { token: 'admin' });
    await call('GET', '/raw/x');
    const text = metrics.render();
    expect(text).toMatch(/hsmca_http_requests_total\{method="GET",route="\/api\/v1\/things\/:id",status="200"\} \d+/);
    expect(text).toMatch(/route="unmatched",status="404"/);
    expect(text).not.toMatch(/route="\/raw\/\*"/);
  });

  it('refuses a table that declares one route twice', () => {
    const twice: Route = { method: 'GET', path: '/x', access: PUBLIC, handle: () => undefined };
    expect(() => createRouter([twice, { ...twice, path: '/X/' }], { authenticate: async () => Promise.reject(new Error()), metrics, log: silentLogger, maxBodyBytes: 1 })).toThrow(/route declared twice: GET \/x/);
  });
});
