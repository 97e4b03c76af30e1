import * as http from 'node:http';
import * as https from 'node:https';
import { AcmeProblem } from '../problem';
import { AddressGuard } from './address-guard';

/** RFC 8555 8.3 leaves room for whitespace around the key authorization; anything longer than this is not one. */
const MAX_BODY = 8 * 1024;
const MAX_REDIRECTS = 10;

export interface Http01Settings {
  port: number;
  /** the TLS port a redirect to https may use */
  tlsPort: number;
  timeoutMs: number;
}

/**
 * http-01 (RFC 8555 8.3): GET http://NAME:PORT/.well-known/acme-challenge/TOKEN
 * must answer 200 with the key authorization. Redirects are followed (at
 * most 10), only to http or https on the validation ports; every hop's
 * address passes the address guard; bodies past 8 KiB are cut off.
 */
export async function validateHttp01(guard: AddressGuard, name: string, token: string, keyAuthorization: string, s: Http01Settings): Promise<void> {
  const host = name.includes(':') ? `[${name}]` : name;
  let url = new URL(`http://${host}:${s.port}/.well-known/acme-challenge/${token}`);
  for (let hop = 0; ; hop++) {
    const r = await fetchOnce(guard, url, s.timeoutMs);
    if (r.status >= 300 && r.status < 400 && r.location) {
      if (hop >= MAX_REDIRECTS) throw new AcmeProblem('connection', `more than ${MAX_REDIRECTS} redirects from ${name}`);
      let next: URL;
      try {
        next = new URL(r.location, url);
      } catch {
        throw new AcmeProblem('connection', 'a redirect to an unreadable location');
      }
      const port = next.port ? Number(next.port) : next.protocol === 'https:' ? 443 : 80;
      if ((next.protocol !== 'http:' && next.protocol !== 'https:') || ![80, 443, s.port, s.tlsPort].includes(port)) {
        throw new AcmeProblem('connection', `a redirect to ${next.protocol}//...:${port}, which validation does not follow (http or https on ports 80 and 443 only)`);
      }
      url = next;
      continue;
    }
    if (r.status !== 200) throw new AcmeProblem('unauthorized', `${url.host} answered HTTP ${r.status} for the challenge`);
    if (r.body.trim() !== keyAuthorization) throw new AcmeProblem('incorrectResponse', `${url.host} answered a key authorization that is not this challenge's`);
    return;
  }
}

function fetchOnce(guard: AddressGuard, url: URL, timeoutMs: number): Promise<{ status: number; location?: string; body: string }> {
  const hostname = url.hostname.replace(/^\[|\]$/g, '');
  return guard.resolve(hostname).then(
    (address) =>
      new Promise((resolve, reject) => {
        const mod = url.protocol === 'https:' ? https : http;
        const req = mod.request(
          {
            host: address,
            port: url.port || (url.protocol === 'https:' ? 443 : 80),
            path: url.pathname + url.search,
            method: 'GET',
            headers: { host: url.host, 'user-agent': 'hsmca-acme-validation', accept: '*/*' },
            timeout: timeoutMs,
            servername: url.protocol === 'https:' && !/^[\d.:]+$/.test(hostname) ? hostname : undefined,
            // RFC 8555 10.2 lets a redirect to https have any certificate: the key authorization is what proves control
            rejectUnauthorized: false,
          },
          (res) => {
            const chunks: Buffer[] = [];
            let size = 0;
            res.on('data', (c: Buffer) => {
              size += c.length;
              if (size > MAX_BODY) {
                req.destroy();
                reject(new AcmeProblem('unauthorized', `the challenge response from ${url.host} is larger than ${MAX_BODY} bytes`));
              } else chunks.push(c);
            });
            res.on('end', () => resolve({ status: res.statusCode ?? 0, location: res.headers.location, body: Buffer.concat(chunks).toString('utf8') }));
            res.on('error', () => reject(new AcmeProblem('connection', `the connection to ${url.host} broke`)));
          },
        );
        const timer = setTimeout(() => {
          req.destroy();
          reject(new AcmeProblem('connection', `${url.host} did not answer within ${timeoutMs / 1000} seconds`));
        }, timeoutMs);
        req.on('close', () => clearTimeout(timer));
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.on('error', (e) => reject(new AcmeProblem('connection', `cannot fetch the challenge from ${url.host}: ${(e as NodeJS.ErrnoException).code ?? e.message}`)));
        req.end();
      }),
  );
}
