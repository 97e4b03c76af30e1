import type { JWK } from 'jose';
import { AcmeStore, AccountRecord } from '../storage/acme-store';
import { AcmeUrls } from './acme-urls';
import { importAccountKey, parseJws, verifyJws, VerifiedJws } from './jws';
import { NonceService } from './nonces';
import { AcmeProblem } from './problem';

/** A request whose JWS verified: by an account (`kid`) or by a key given inline (`jwk`). */
export interface AcmeRequest extends VerifiedJws {
  account?: AccountRecord;
  jwk?: JWK;
}

/**
 * Every ACME POST passes here first (RFC 8555 6.2 to 6.5): a flattened JWS
 * whose protected header names the URL it was sent to and a nonce this CA
 * issued and nobody used, signed either by a known, valid account (`kid`)
 * or, for newAccount and revokeCert only, by the key in `jwk`.
 */
export class AcmeRequests {
  constructor(private readonly deps: { store: AcmeStore; nonces: NonceService; urls: AcmeUrls }) {}

  async verify(path: string, body: Buffer, keys: 'kid' | 'jwk' | 'either'): Promise<AcmeRequest> {
    const jws = parseJws(body);
    const h = jws.header;
    const expected = this.deps.urls.requestUrl(path);
    if (typeof h.url !== 'string' || h.url !== expected) throw new AcmeProblem('unauthorized', `the JWS "url" header must be the URL the request was sent to (${expected})`);
    let account: AccountRecord | undefined;
    let jwk: JWK | undefined;
    let key;
    if (h.jwk !== undefined) {
      if (keys === 'kid') throw new AcmeProblem('malformed', 'this request must be signed by an account ("kid"), not an inline "jwk" (RFC 8555 6.2)');
      jwk = h.jwk;
      key = await importAccountKey(jwk, h.alg);
    } else {
      if (keys === 'jwk') throw new AcmeProblem('malformed', 'this request must carry the key itself ("jwk"), not "kid" (RFC 8555 6.2)');
      const prefix = this.deps.urls.account('');
      if (typeof h.kid !== 'string' || !h.kid.startsWith(prefix)) throw new AcmeProblem('accountDoesNotExist', 'the "kid" header is not an account URL of this server');
      account = await this.deps.store.accountById(h.kid.slice(prefix.length));
      if (!account) throw new AcmeProblem('accountDoesNotExist', 'no account with that "kid"');
      if (account.status !== 'valid') throw new AcmeProblem('unauthorized', `the account is ${account.status}`);
      key = await importAccountKey(account.jwk, h.alg);
    }
    const verified = await verifyJws(jws, key);
    // the nonce is spent only by a request whose signature holds
    if (!(await this.deps.nonces.consume(h.nonce))) throw new AcmeProblem('badNonce', 'the JWS nonce is unknown, expired or already used; retry with the fresh one in Replay-Nonce');
    return { ...verified, account, jwk };
  }
}
