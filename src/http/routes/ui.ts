import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TLSSocket } from 'node:tls';
import { createHash } from 'node:crypto';
import { CaError } from '../../errors';
import { PUBLIC, Route } from '../route';

/**
 * The console's Content-Security-Policy: scripts, styles, images and API calls
 * from this origin only; no inline script or style, no eval, no framing, no
 * plugins, no <base>, forms only to this origin.
 */
export const UI_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const UI_HEADERS: [string, string][] = [
  ['Content-Security-Policy', UI_CSP],
  ['X-Content-Type-Options', 'nosniff'],
  ['X-Frame-Options', 'DENY'],
  ['Referrer-Policy', 'no-referrer'],
  ['Cross-Origin-Resource-Policy', 'same-origin'],
  ['Cross-Origin-Opener-Policy', 'same-origin'],
  ['Permissions-Policy', 'camera=(), microphone=(), geolocation=(), clipboard-write=(self)'],
];

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
};

/** The folder `npm run build` writes the console to (dist/ui of the package). */
export function defaultUiDir(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'scripts', 'build-ui.js'))) return path.join(dir, 'dist', 'ui');
    const up = path.dirname(dir);
    if (up === dir) return path.resolve('dist', 'ui');
    dir = up;
  }
}

interface UiFile {
  body: Buffer;
  type: string;
  etag: string;
}

export interface UiRoutesOptions {
  /** where the built files are (default: dist/ui of the package) */
  dir?: string;
  /**
   * On a listener that is neither loopback nor HTTPS (HSMCA_HOST public, plain
   * HTTP), /ui/ redirects here (the HTTPS listener's /ui/): a token must not
   * be typed into a page whose API calls would cross the network in clear.
   */
  httpsUiUrl?: string;
}

/**
 * The admin console: static files built by `npm run build` (scripts/build-ui.js),
 * served under /ui/ with a strict CSP. The files hold no secret; everything
 * the console shows comes from the API, called with the bearer token the user
 * signs in with (kept in sessionStorage, sent as the Authorization header).
 */
export function uiRoutes(opts: UiRoutesOptions = {}): Route[] {
  const dir = opts.dir ?? defaultUiDir();
  const cache = new Map<string, UiFile | null>();
  const load = (rel: string): UiFile | null => {
    if (cache.has(rel)) return cache.get(rel)!;
    let file: UiFile | null = null;
    const full = path.join(dir, rel);
    const type = TYPES[path.extname(rel)];
    if (type && full.startsWith(dir + path.sep)) {
      try {
        const body = fs.readFileSync(full);
        file = { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` };
      } catch {
        file = null;
      }
    }
    if (file || cache.size < 200) cache.set(rel, file);
    return file;
  };

  const serve: Route['handle'] = ({ req, res }) => {
    for (const [k, v] of UI_HEADERS) res.setHeader(k, v);
    const encrypted = !!(req.socket as TLSSocket).encrypted;
    const raw = (req.url ?? '/').split('?')[0];
    if (opts.httpsUiUrl && !encrypted) {
      res.statusCode = 308;
      res.setHeader('Location', opts.httpsUiUrl);
      res.setHeader('Content-Length', 0);
      return void res.end();
    }
    if (/^\/ui$/i.test(raw)) {
      res.statusCode = 308;
      res.setHeader('Location', '/ui/');
      res.setHeader('Content-Length', 0);
      return void res.end();
    }
    let rel: string;
    try {
      rel = decodeURIComponent(raw.replace(/^\/ui\//i, ''));
    } catch {
      throw new CaError('badRequest', 'badRequest', 'the request could not be read');
    }
    if (rel === '' || rel === 'index.html') rel = 'index.html';
    if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*(\/[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*)*$/.test(rel)) throw new CaError('notFound', 'notFound', 'no such file in the console');
    const file = load(rel);
    if (!file) {
      if (rel === 'index.html') throw new CaError('unavailable', 'consoleNotBuilt', 'the console is not built: run npm run build');
      throw new CaError('notFound', 'notFound', 'no such file in the console');
    }
    res.setHeader('Content-Type', file.type);
    res.setHeader('ETag', file.etag);
    res.setHeader('Cache-Control', 'no-cache');
    if (req.headers['if-none-match'] === file.etag) {
      res.statusCode = 304;
      return void res.end();
    }
    res.setHeader('Content-Length', file.body.length);
    res.end(req.method === 'HEAD' ? undefined : file.body);
  };

  return [
    { method: 'GET', path: '/ui', access: PUBLIC, ownHeaders: true, handle: serve },
    { method: 'GET', path: '/ui/*', access: PUBLIC, ownHeaders: true, handle: serve },
  ];
}
