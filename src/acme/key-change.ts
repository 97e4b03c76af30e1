import type { JWK } from 'jose';
import type { AuditLog } from '../audit/audit-log';
import { AcmeStore } from '../storage/acme-store';
import type { AcmeReply } from './accounts';
import type { AcmeRequest } from './acme-requests';
import { AcmeUrls, accountJson } from './acme-urls';
import { importAccountKey, parseJws, thumbprint, verifyJws } from './jws';
import { AcmeProblem } from './problem';

/**
 * Account key rollover (RFC 8555 7.3.5): the outer JWS is signed by the
 * account's current key; its payload is an inner JWS signed by the new key
 * (carried as `jwk`, no nonce, the same url) whose payload names the account
 * and its old key. The new key must not belong to another account (409).
 */
export async function changeKey(r: AcmeRequest, d: { store: AcmeStore; urls: AcmeUrls; audit: AuditLog }): Promise<AcmeReply> {
  const account = r.account!;
  const inner = parseJws(Buffer.from(r.payloadText, 'utf8'));
  if (inner.header.jwk === undefined || inner.header.kid !== undefined) throw new AcmeProblem('malformed', 'the inner JWS of a key change carries the new key as "jwk"');
  if (inner.header.nonce !== undefined) throw new AcmeProblem('malformed', 'the inner JWS of a key change must not carry a nonce');
  if (inner.header.url !== r.header.url) throw new AcmeProblem('malformed', 'the inner JWS "url" must be the outer one');
  const newJwk = inner.header.jwk as JWK;
  const verified = await verifyJws(inner, await importAccountKey(newJwk, inner.header.alg));
  const p = (verified.payload ?? {}) as Record<string, unknown>;
  if (p.account !== d.urls.account(account.id)) throw new AcmeProblem('malformed', 'the inner payload must name the account that signs the outer JWS');
  if (!p.oldKey || typeof p.oldKey !== 'object' || (await thumbprint(p.oldKey as JWK)) !== account.thumbprint) throw new AcmeProblem('malformed', 'the inner payload "oldKey" is not the account\'s current key');
  const tp = await thumbprint(newJwk);
  const holder = await d.store.accountByThumbprint(tp);
  if (holder) throw new AcmeProblem('malformed', 'the new key belongs to an account already', { status: 409, headers: { Location: d.urls.account(holder.id) } });
  if (!(await d.store.changeAccountKey(account.id, account.thumbprint, tp, { ...newJwk }))) throw new AcmeProblem('malformed', 'the account key changed meanwhile or the new key is taken', { status: 409 });
  await d.audit.tryRecord({ type: 'acmeAccountUpdated', actor: `acme:${account.id}`, subject: account.id, details: { keyChange: { from: account.thumbprint, to: tp } } });
  return { status: 200, body: accountJson({ ...account, thumbprint: tp, jwk: { ...newJwk } }, d.urls), headers: { Location: d.urls.account(account.id) } };
}
