import { execFile } from 'node:child_process';
import { FlattenedSign, exportJWK, generateKeyPair, JWK, KeyLike } from 'jose';
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import type { TestCa } from './harness';

/**
 * A small ACME client that signs its own JWS with `jose` (RFC 8555 6.2), so
 * tests can send exactly the requests they mean: good ones, and ones with a
 * replayed nonce, a wrong url, a kid where a jwk belongs, and so on.
 */
export interface AcmeKey {
  alg: 'ES256' | 'ES384' | 'RS256' | 'EdDSA';
  privateKey: KeyLike;
  jwk: JWK;
}

export async function acmeKey(alg: AcmeKey['alg'] = 'ES256'): Promise<AcmeKey> {
  const opts = alg === 'EdDSA' ? { crv: 'Ed25519' } : {};
  const { privateKey, publicKey } = await generateKeyPair(alg, opts);
  return { alg, privateKey, jwk: await exportJWK(publicKey) };
}

export interface AcmeResponse {
  status: number;
  body: any;
  headers: Headers;
}

export async function jws(key: AcmeKey, header: Record<string, unknown>, payload: unknown): Promise<string> {
  const bytes = payload === '' ? new Uint8Array() : new TextEncoder().encode(JSON.stringify(payload));
  const signed = await new FlattenedSign(bytes).setProtectedHeader({ alg: key.alg, ...header }).sign(key.privateKey);
  return JSON.stringify(signed);
}

export class AcmeTestClient {
  directory!: Record<string, string>;
  kid?: string;

  constructor(
    readonly base: string,
    readonly key: AcmeKey,
  ) {}

  static async open(ca: TestCa, alg: AcmeKey['alg'] = 'ES256'): Promise<AcmeTestClient> {
    const c = new AcmeTestClient(ca.url, await acmeKey(alg));
    c.directory = (await (await fetch(`${ca.url}/acme/directory`)).json()) as Record<string, string>;
    return c;
  }

  async nonce(): Promise<string> {
    return (await fetch(this.directory.newNonce, { method: 'HEAD' })).headers.get('replay-nonce')!;
  }

  /** POST a JWS; `o` bends the request: another nonce, url, key, signing by jwk or kid. */
  async post(url: string, payload: unknown, o: { nonce?: string; url?: string; useJwk?: boolean; kid?: string; key?: AcmeKey; raw?: string; contentType?: string } = {}): Promise<AcmeResponse> {
    const key = o.key ?? this.key;
    const header: Record<string, unknown> = { nonce: o.nonce ?? (await this.nonce()), url: o.url ?? url };
    if (o.useJwk || (!this.kid && !o.kid)) header.jwk = key.jwk;
    else header.kid = o.kid ?? this.kid;
    const body = o.raw ?? (await jws(key, header, payload));
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': o.contentType ?? 'application/jose+json' }, body });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* PEM */
    }
    return { status: res.status, body: parsed, headers: res.headers };
  }

  async newAccount(payload: Record<string, unknown> = { termsOfServiceAgreed: true }): Promise<AcmeResponse> {
    const r = await this.post(this.directory.newAccount, payload, { useJwk: true });
    if (r.status === 201 || r.status === 200) this.kid = r.headers.get('location')!;
    return r;
  }

  /** RFC 8555 7.3.4: the binding JWS, MAC'd with the key hsmca handed out. */
  async eab(kid: string, hmacKey: string): Promise<Record<string, unknown>> {
    const signed = await new FlattenedSign(new TextEncoder().encode(JSON.stringify(this.key.jwk)))
      .setProtectedHeader({ alg: 'HS256', kid, url: this.directory.newAccount })
      .sign(Buffer.from(hmacKey, 'base64url'));
    return signed as unknown as Record<string, unknown>;
  }

  async thumbprint(): Promise<string> {
    const { calculateJwkThumbprint } = await import('jose');
    return calculateJwkThumbprint(this.key.jwk, 'sha256');
  }

  async keyAuthorization(token: string): Promise<string> {
    return `${token}.${await this.thumbprint()}`;
  }

  dnsDigest(keyAuthorization: string): string {
    return createHash('sha256').update(keyAuthorization).digest('base64url');
  }

  /** Polls a URL (POST-as-GET) until `done` says so or the time runs out. */
  async poll(url: string, done: (b: any) => boolean, ms = 20_000): Promise<any> {
    const until = Date.now() + ms;
    for (;;) {
      const r = await this.post(url, '');
      if (done(r.body) || Date.now() > until) return r.body;
      await new Promise((res) => setTimeout(res, 200));
    }
  }
}

/** `hsmca acme eab create --token NAME` run as an operator would, against the test CA's settings: [kid, hmac]. */
export function createEab(ca: TestCa, tokenName: string): Promise<[string, string]> {
  const bin = path.join(__dirname, '..', '..', 'bin', 'hsmca.js');
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [bin, 'acme', 'eab', 'create', '--token', tokenName], { env: { ...process.env, ...ca.env } }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`${err.message}\n${stderr}`));
      const [kid, hmac] = stdout.trim().split(' ');
      resolve([kid, hmac]);
    });
  });
}

/** A requester token made over the API (scope as the REST API takes it). */
export async function requesterToken(ca: TestCa, name: string, scope?: unknown): Promise<string> {
  const r = await ca.api('POST', '/api/v1/tokens', { body: { role: 'requester', name, scope } });
  if (r.status !== 201) throw new Error(`token: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.token;
}
