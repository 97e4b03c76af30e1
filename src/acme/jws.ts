import { calculateJwkThumbprint, flattenedVerify, importJWK, JWK, KeyLike } from 'jose';
import { AcmeProblem } from './problem';

/** RFC 8555 6.2: the algorithms an account key may sign with (HMAC and "none" never). */
export const ACCOUNT_ALGORITHMS = ['ES256', 'ES384', 'RS256', 'EdDSA'] as const;

/** A flattened JWS as RFC 8555 6.2 sends it, parsed but not yet trusted. */
export interface JwsRequest {
  protected: string;
  payload: string;
  signature: string;
  header: ProtectedHeader;
}

export interface ProtectedHeader {
  alg: string;
  nonce?: unknown;
  url?: unknown;
  jwk?: JWK;
  kid?: unknown;
  [k: string]: unknown;
}

/** The verified request: its header, its payload (undefined for POST-as-GET, RFC 8555 6.3) and the key that signed it. */
export interface VerifiedJws {
  header: ProtectedHeader;
  payload: unknown;
  /** the raw payload text (an EAB binding or keyChange inner JWS is checked against it) */
  payloadText: string;
}

const b64url = /^[A-Za-z0-9_-]*$/;

function decodeJson(part: string, what: string): unknown {
  if (!b64url.test(part)) throw new AcmeProblem('malformed', `the JWS ${what} is not base64url`);
  try {
    return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  } catch {
    throw new AcmeProblem('malformed', `the JWS ${what} is not JSON`);
  }
}

/** Parses the request body as a flattened JWS (RFC 7515 7.2.2) with exactly the fields RFC 8555 6.2 allows. */
export function parseJws(body: Buffer): JwsRequest {
  let o: unknown;
  try {
    o = JSON.parse(body.toString('utf8'));
  } catch {
    throw new AcmeProblem('malformed', 'the request body is not a JSON Web Signature');
  }
  if (!o || typeof o !== 'object' || Array.isArray(o)) throw new AcmeProblem('malformed', 'the request body must be a flattened JWS object');
  const j = o as Record<string, unknown>;
  if ('header' in j) throw new AcmeProblem('malformed', 'the JWS must not have an unprotected header (RFC 8555 6.2)');
  if ('signatures' in j) throw new AcmeProblem('malformed', 'the JWS must use the flattened serialization with one signature');
  for (const f of ['protected', 'payload', 'signature']) {
    if (typeof j[f] !== 'string') throw new AcmeProblem('malformed', `the JWS field "${f}" is missing or not a string`);
  }
  const header = decodeJson(j.protected as string, 'protected header');
  if (!header || typeof header !== 'object' || Array.isArray(header)) throw new AcmeProblem('malformed', 'the JWS protected header must be an object');
  const h = header as ProtectedHeader;
  if (typeof h.alg !== 'string') throw new AcmeProblem('malformed', 'the JWS protected header has no "alg"');
  if (!(ACCOUNT_ALGORITHMS as readonly string[]).includes(h.alg)) {
    throw new AcmeProblem('badSignatureAlgorithm', `the JWS algorithm "${h.alg.slice(0, 20)}" is not accepted; use one of ${ACCOUNT_ALGORITHMS.join(', ')}`);
  }
  if (!b64url.test(j.payload as string) || !b64url.test(j.signature as string)) throw new AcmeProblem('malformed', 'the JWS payload and signature must be base64url');
  if ((h.jwk === undefined) === (h.kid === undefined)) throw new AcmeProblem('malformed', 'the JWS protected header must have exactly one of "jwk" and "kid" (RFC 8555 6.2)');
  return { protected: j.protected as string, payload: j.payload as string, signature: j.signature as string, header: h };
}

/** An account key from a JWK: public only, of a type the algorithm uses. */
export async function importAccountKey(jwk: unknown, alg: string): Promise<KeyLike> {
  if (!jwk || typeof jwk !== 'object' || Array.isArray(jwk)) throw new AcmeProblem('malformed', 'the "jwk" header must be a JSON Web Key object');
  const k = jwk as JWK;
  if ('d' in k || 'k' in k) throw new AcmeProblem('badPublicKey', 'the "jwk" header must be a public key');
  try {
    const key = await importJWK(k, alg);
    if (key instanceof Uint8Array) throw new Error('symmetric');
    return key;
  } catch {
    throw new AcmeProblem('badPublicKey', `the "jwk" header is not a public key for ${alg}`);
  }
}

/** RFC 7638 thumbprint (SHA-256, base64url): the account key's identity and part of every key authorization (RFC 8555 8.1). */
export async function thumbprint(jwk: JWK): Promise<string> {
  try {
    return await calculateJwkThumbprint(jwk, 'sha256');
  } catch {
    throw new AcmeProblem('badPublicKey', 'the JSON Web Key lacks the members its thumbprint needs');
  }
}

/** Checks the signature with `key`, then decodes the payload (empty: POST-as-GET). */
export async function verifyJws(jws: JwsRequest, key: KeyLike): Promise<VerifiedJws> {
  try {
    await flattenedVerify({ protected: jws.protected, payload: jws.payload, signature: jws.signature }, key, { algorithms: [...ACCOUNT_ALGORITHMS] });
  } catch {
    throw new AcmeProblem('malformed', 'the JWS signature does not verify', { status: 400 });
  }
  const payloadText = Buffer.from(jws.payload, 'base64url').toString('utf8');
  if (jws.payload === '') return { header: jws.header, payload: undefined, payloadText };
  let payload: unknown;
  try {
    payload = JSON.parse(payloadText);
  } catch {
    throw new AcmeProblem('malformed', 'the JWS payload is not JSON');
  }
  if (!payload || typeof payload !== 'object' || Array.isArray(payload)) throw new AcmeProblem('malformed', 'the JWS payload must be a JSON object');
  return { header: jws.header, payload, payloadText };
}

/**
 * External Account Binding (RFC 8555 7.3.4): an HS256/384/512 JWS over the
 * account's own JWK, its `kid` the key id, its `url` the newAccount URL,
 * MAC'd with the key the CA handed out. Returns the kid once it verifies.
 */
export async function verifyEabBinding(eab: unknown, accountJwk: JWK, url: string, hmacKeyFor: (kid: string) => Promise<Uint8Array | undefined>): Promise<string> {
  if (!eab || typeof eab !== 'object' || Array.isArray(eab)) throw new AcmeProblem('malformed', 'externalAccountBinding must be a flattened JWS');
  const e = eab as Record<string, unknown>;
  if (typeof e.protected !== 'string' || typeof e.payload !== 'string' || typeof e.signature !== 'string') throw new AcmeProblem('malformed', 'externalAccountBinding must be a flattened JWS');
  const h = decodeJson(e.protected, 'externalAccountBinding header') as Record<string, unknown>;
  if (!h || typeof h !== 'object' || !['HS256', 'HS384', 'HS512'].includes(h.alg as string)) throw new AcmeProblem('malformed', 'externalAccountBinding must be MAC\'d with HS256, HS384 or HS512');
  if (typeof h.kid !== 'string' || h.kid.length > 64) throw new AcmeProblem('malformed', 'externalAccountBinding has no key id');
  if ('nonce' in h) throw new AcmeProblem('malformed', 'externalAccountBinding must not carry a nonce (RFC 8555 7.3.4)');
  if (h.url !== url) throw new AcmeProblem('unauthorized', 'externalAccountBinding "url" must be the newAccount URL');
  const key = await hmacKeyFor(h.kid);
  if (!key) throw new AcmeProblem('unauthorized', 'the external account key id is unknown or already bound to an account');
  try {
    await flattenedVerify({ protected: e.protected, payload: e.payload, signature: e.signature }, key, { algorithms: ['HS256', 'HS384', 'HS512'] });
  } catch {
    throw new AcmeProblem('unauthorized', 'the externalAccountBinding MAC does not verify');
  }
  const inner = decodeJson(e.payload, 'externalAccountBinding payload') as JWK;
  if ((await thumbprint(inner)) !== (await thumbprint(accountJwk))) throw new AcmeProblem('unauthorized', 'externalAccountBinding must bind the account key that signed the request');
  return h.kid;
}
