/**
 * The floor of an OCSP responder on node:http: it reads the request (POST
 * body or GET path) and answers one fixed, already signed response with the
 * same headers an OCSP answer needs. No parsing, no lookup, no signing: what
 * node itself costs per request and per connection (accept, parser, headers,
 * close). Started by speed.ts with FLOOR_PORT and FLOOR_RESPONSE (a file);
 * not part of hsmca.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';

const port = Number(process.env.FLOOR_PORT);
const body = fs.readFileSync(process.env.FLOOR_RESPONSE!);
const headers = ['Content-Type', 'application/ocsp-response', 'Content-Length', String(body.length), 'Cache-Control', 'no-cache, no-store'];

http
  .createServer((req, res) => {
    if (req.method === 'POST') {
      req.on('data', () => undefined);
      req.on('end', () => {
        res.writeHead(200, headers);
        res.end(body);
      });
    } else {
      res.writeHead(200, headers);
      res.end(body);
    }
  })
  .listen(port, '127.0.0.1');
