/**
 * Figure 2c's floor: the least work that answers an issuance request on this
 * stack, as a server of its own. It runs hsmca's own code for what every CA
 * must do per certificate (the CSR check: structure, key import, proof of
 * possession; the to-be-signed certificate with a CA's fixed extensions and
 * the request's SKI and names) and signs with a node:crypto P-256 key held in
 * the process, on a bare node:http server. It stores nothing, audits nothing,
 * checks no token and applies no profile: a CA cannot do less.
 *
 * Against cfssl serve on the same machine, in the same run, it shows what the
 * stack (Node.js, node:crypto on OpenSSL) allows before any of hsmca's own
 * work: with one process, and with FLOOR_PROCS processes (node:cluster) that
 * share the port, which is how both CPUs can serve.
 *
 * Started by run.ts with FLOOR_PORT and FLOOR_PROCS; not part of hsmca.
 */
import cluster from 'node:cluster';
import { generateKeyPairSync, sign } from 'node:crypto';
import * as http from 'node:http';
import * as der from '../src/asn1/der';
import { OID } from '../src/asn1/oids';
import { caName, ext, keyIdentifier, randomSerial, spkiKeyBits, tbsCertificate } from '../src/ca/certificate';
import { csrFromPem, parseCsrSync } from '../src/ca/csr';
import { extension } from '../src/ca/profiles';
import { BODY_TOO_LARGE, readBody } from '../src/http/body';
import { sendJson } from '../src/http/errors';

const MAX_BODY = 128 * 1024;
const DAY_MS = 86_400_000;

function serve(port: number): void {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const caKeyId = keyIdentifier(spkiKeyBits(publicKey.export({ type: 'spki', format: 'der' })));
  const sigAlg = der.seq(der.oid('1.2.840.10045.4.3.2')); // ecdsa-with-SHA256
  const issuer = caName('hsmca floor issuing CA', 'hsmca bench');
  const fixed = [
    ext.basicConstraintsEndEntity,
    ext.authorityKeyIdentifier(caKeyId),
    ext.authorityInfoAccess(`http://127.0.0.1:${port}/ocsp`, `http://127.0.0.1:${port}/ca.crt`),
    ext.crlDistributionPoints(`http://127.0.0.1:${port}/crl`),
    ext.extKeyUsage([OID.serverAuth]),
  ];

  const issue = (body: Buffer): object => {
    const csr = parseCsrSync(csrFromPem((JSON.parse(body.toString('utf8')) as { csr?: unknown }).csr));
    const names = csr.sans.dns.map((d) => der.ctx(2, Buffer.from(d.toLowerCase(), 'latin1'), false));
    const notBefore = new Date(Math.floor(Date.now() / 1000) * 1000 - 60_000);
    const notAfter = new Date(notBefore.getTime() + 90 * DAY_MS - 1000);
    const tbs = tbsCertificate({
      serial: randomSerial(),
      signatureAlgorithm: sigAlg,
      issuer,
      notBefore,
      notAfter,
      subject: csr.subject,
      spki: csr.spki,
      extensions: [...fixed, ext.subjectKeyIdentifier(keyIdentifier(csr.publicKeyBits)), ...(names.length ? [extension(OID.subjectAltName, false, der.seq(...names))] : [])],
    });
    const certificate = der.seq(tbs, sigAlg, der.bits(sign('sha256', tbs, { key: privateKey, dsaEncoding: 'der' })));
    return { certificate: der.pemEncode('CERTIFICATE', certificate) };
  };

  http
    .createServer((req, res) => {
      readBody(req, MAX_BODY).then(
        (body) => {
          let out: object;
          try {
            out = issue(body);
          } catch (e) {
            return sendJson(res, 400, { error: (e as Error).message });
          }
          sendJson(res, 201, out);
        },
        (e) => (e === BODY_TOO_LARGE ? sendJson(res, 413, { error: 'body too large' }) : res.destroy()),
      );
    })
    .listen(port, '127.0.0.1');
}

const port = Number(process.env.FLOOR_PORT);
const procs = Number(process.env.FLOOR_PROCS ?? 1);
if (!Number.isInteger(port) || port <= 0 || !Number.isInteger(procs) || procs < 1) {
  process.stderr.write('floor-server: FLOOR_PORT and FLOOR_PROCS (>= 1) must be whole numbers\n');
  process.exit(2);
}
if (procs > 1 && cluster.isPrimary) {
  for (let i = 0; i < procs; i++) cluster.fork();
  cluster.on('exit', () => process.exit(1));
  process.on('SIGTERM', () => process.exit(0));
} else {
  serve(port);
}
