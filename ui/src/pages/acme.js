import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { api } from '../api.js';
import { CopyButton, ErrorBox, focusOnShow, useLoad, when } from '../util.js';

/** ACME accounts, and External Account Binding keys: create (shown once), list, withdraw an unused one. */
export function Acme() {
  const [accounts, accountsError] = useLoad(() => api('GET', '/api/v1/acme/accounts?limit=100'), []);
  const [keys, keysError, , reloadKeys] = useLoad(() => api('GET', '/api/v1/acme/eab-keys'), []);
  const [tokens] = useLoad(() => api('GET', '/api/v1/tokens'), []);
  const [token, setToken] = useState('');
  const [created, setCreated] = useState(null);
  const [error, setError] = useState(null);
  const [confirm, setConfirm] = useState(null);
  const requesters = (tokens?.items ?? []).filter((t) => t.role === 'requester' && !t.revokedAt && (!t.expiresAt || new Date(t.expiresAt) > new Date()));
  const names = Object.fromEntries((tokens?.items ?? []).map((t) => [t.id, t.name]));

  const create = async (e) => {
    e.preventDefault();
    setError(null);
    setCreated(null);
    try {
      setCreated(await api('POST', '/api/v1/acme/eab-keys', { token: token || (requesters[0] && requesters[0].id) || '' }));
      reloadKeys();
    } catch (err) {
      setError(err);
    }
  };
  const withdraw = async (kid) => {
    setError(null);
    try {
      await api('POST', `/api/v1/acme/eab-keys/${encodeURIComponent(kid)}/revoke`);
      setConfirm(null);
      reloadKeys();
    } catch (err) {
      setError(err);
    }
  };

  return html`<h1>ACME</h1>
    <section class="card wide" aria-labelledby="h-eab-new">
      <h2 id="h-eab-new">New External Account Binding key</h2>
      <p>An ACME client registers with a key id and an HMAC key; its account then acts with the chosen requester token's scope, profiles and rate limits (docs/acme.md).</p>
      <form class="inline" onSubmit=${create}>
        <label for="eab-token">Requester token</label>
        <select id="eab-token" value=${token} onChange=${(e) => setToken(e.currentTarget.value)}>
          ${requesters.map((t) => html`<option value=${t.id}>${t.name} (${t.id})</option>`)}
        </select>
        <button type="submit" disabled=${!requesters.length}>Create key</button>
      </form>
      ${tokens && !requesters.length ? html`<p class="muted">Create a requester token first (Tokens).</p>` : null}
      <${ErrorBox} error=${error} />
      ${created
        ? html`<div class="secret" role="status">
            <p><strong>Key for token “${created.tokenName}” created.</strong> The HMAC key is shown only this once.</p>
            <dl>
              <div class="field"><dt>Key id</dt><dd><code class="break" id="eab-kid">${created.kid}</code> <${CopyButton} text=${created.kid} label="Copy key id" /></dd></div>
              <div class="field"><dt>HMAC key</dt><dd><code class="break" id="eab-hmac">${created.hmacKey}</code> <${CopyButton} text=${created.hmacKey} label="Copy HMAC key" /></dd></div>
            </dl>
            <button type="button" class="secondary" onClick=${() => setCreated(null)}>Done</button>
          </div>`
        : null}
    </section>
    <h2>External Account Binding keys</h2>
    <${ErrorBox} error=${keysError} />
    ${keys && !keys.items.length ? html`<p>No key yet.</p>` : null}
    ${keys && keys.items.length
      ? html`<table class="list">
          <caption class="sr-only">External Account Binding keys</caption>
          <thead><tr><th scope="col">Key id</th><th scope="col">Token</th><th scope="col">Created</th><th scope="col">Account</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
          <tbody>
            ${keys.items.map(
              (k) => html`<tr>
                <td data-label="Key id" class="mono break">${k.kid}</td>
                <td data-label="Token">${names[k.tokenId] ?? k.tokenId}</td>
                <td data-label="Created">${when(k.createdAt)}</td>
                <td data-label="Account" class="mono break">${k.accountId ?? html`<span class="muted">unused</span>`}</td>
                <td data-label="">
                  ${k.accountId
                    ? null
                    : confirm === k.kid
                      ? html`<span class="confirm-inline">Withdraw? <button type="button" class="danger" ref=${focusOnShow} onClick=${() => withdraw(k.kid)}>Yes, withdraw</button> <button type="button" class="secondary" onClick=${() => setConfirm(null)}>Cancel</button></span>`
                      : html`<button type="button" class="secondary" aria-label=${`Withdraw key ${k.kid}`} onClick=${() => setConfirm(k.kid)}>Withdraw…</button>`}
                </td>
              </tr>`,
            )}
          </tbody>
        </table>`
      : null}
    <h2>Accounts</h2>
    <${ErrorBox} error=${accountsError} />
    ${accounts && !accounts.items.length ? html`<p>No ACME account yet.</p>` : null}
    ${accounts && accounts.items.length
      ? html`<table class="list">
          <caption class="sr-only">ACME accounts, newest first</caption>
          <thead><tr><th scope="col">Account</th><th scope="col">Status</th><th scope="col">Contact</th><th scope="col">Token</th><th scope="col">Created</th></tr></thead>
          <tbody>
            ${accounts.items.map(
              (a) => html`<tr>
                <td data-label="Account" class="mono break">${a.id}</td>
                <td data-label="Status"><span class=${`badge badge-${a.status === 'valid' ? 'good' : 'revoked'}`}>${a.status}</span></td>
                <td data-label="Contact" class="break">${a.contact.join(', ') || '—'}</td>
                <td data-label="Token">${a.tokenId ? (names[a.tokenId] ?? a.tokenId) : '—'}</td>
                <td data-label="Created">${when(a.createdAt)}${a.createdIp ? html`<div class="muted small">${a.createdIp}</div>` : null}</td>
              </tr>`,
            )}
          </tbody>
        </table>`
      : null}`;
}
