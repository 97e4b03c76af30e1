import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { api } from '../api.js';
import { CopyButton, ErrorBox, focusOnShow, useLoad, when } from '../util.js';

function tokenState(t) {
  if (t.revokedAt) return 'revoked';
  if (t.expiresAt && new Date(t.expiresAt) <= new Date()) return 'expired';
  return 'active';
}

/** Create (the token is shown once), list and revoke bearer tokens. */
export function Tokens({ me }) {
  const [list, error, , reload] = useLoad(() => api('GET', '/api/v1/tokens'), []);
  const [form, setForm] = useState({ role: 'requester', name: '', scope: '', expiresInDays: '' });
  const [created, setCreated] = useState(null);
  const [createError, setCreateError] = useState(null);
  const [confirm, setConfirm] = useState(null);
  const [revokeError, setRevokeError] = useState(null);
  const set = (k) => (e) => setForm({ ...form, [k]: e.currentTarget.value });

  const create = async (e) => {
    e.preventDefault();
    setCreateError(null);
    setCreated(null);
    const body = { role: form.role, name: form.name.trim() };
    if (form.scope.trim()) {
      try {
        body.scope = JSON.parse(form.scope);
      } catch {
        setCreateError({ message: 'Scope must be JSON, e.g. {"names": ["*.svc.internal"], "profiles": ["tls-server"]}', code: 'invalidScope' });
        return;
      }
    }
    if (form.expiresInDays !== '') body.expiresInDays = Number(form.expiresInDays);
    try {
      setCreated(await api('POST', '/api/v1/tokens', body));
      setForm({ role: 'requester', name: '', scope: '', expiresInDays: '' });
      reload();
    } catch (err) {
      setCreateError(err);
    }
  };

  const revoke = async (t) => {
    setRevokeError(null);
    try {
      await api('POST', `/api/v1/tokens/${encodeURIComponent(t.id)}/revoke`);
      setConfirm(null);
      reload();
    } catch (err) {
      setRevokeError(err);
    }
  };

  return html`<h1>Tokens</h1>
    <section class="card wide" aria-labelledby="h-new">
      <h2 id="h-new">New token</h2>
      <form class="grid-form" onSubmit=${create}>
        <div><label for="t-role">Role</label><select id="t-role" value=${form.role} onChange=${set('role')}><option value="requester">requester</option><option value="admin">admin</option></select></div>
        <div><label for="t-name">Name</label><input id="t-name" required maxlength="128" value=${form.name} onInput=${set('name')} placeholder="web-frontend" /></div>
        <div><label for="t-exp">Expires in (days, optional)</label><input id="t-exp" type="number" min="1" step="1" value=${form.expiresInDays} onInput=${set('expiresInDays')} /></div>
        <div class="span2"><label for="t-scope">Scope (JSON, optional; requester tokens)</label><textarea id="t-scope" rows="3" spellcheck="false" value=${form.scope} onInput=${set('scope')} placeholder='{"names": ["*.svc.internal"], "profiles": ["tls-server"], "maxValidityDays": 30, "canRevoke": true}'></textarea></div>
        <div class="filter-actions"><button type="submit">Create token</button></div>
      </form>
      <${ErrorBox} error=${createError} />
      ${created
        ? html`<div class="secret" role="status">
            <p><strong>${created.role} token “${created.name}” created.</strong> It is shown only this once: copy it now.</p>
            <p><code class="break" id="new-token">${created.token}</code></p>
            <${CopyButton} text=${created.token} label="Copy token" />
            <button type="button" class="secondary" onClick=${() => setCreated(null)}>Done</button>
          </div>`
        : null}
    </section>
    <h2>All tokens</h2>
    <${ErrorBox} error=${error} />
    <${ErrorBox} error=${revokeError} />
    ${list
      ? html`<table class="list">
          <caption class="sr-only">Tokens</caption>
          <thead><tr><th scope="col">Name</th><th scope="col">Role</th><th scope="col">Id</th><th scope="col">Created</th><th scope="col">Expires</th><th scope="col">State</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
          <tbody>
            ${list.items.map((t) => {
              const st = tokenState(t);
              return html`<tr>
                <td data-label="Name">${t.name}${t.scope ? html`<div class="muted small mono break">${JSON.stringify(t.scope)}</div>` : null}</td>
                <td data-label="Role">${t.role}</td>
                <td data-label="Id" class="mono">${t.id}</td>
                <td data-label="Created">${when(t.createdAt)}</td>
                <td data-label="Expires">${t.expiresAt ? when(t.expiresAt) : 'never'}</td>
                <td data-label="State"><span class=${`badge badge-${st}`}>${st}</span></td>
                <td data-label="">
                  ${st === 'active' && t.id !== me.id
                    ? confirm === t.id
                      ? html`<span class="confirm-inline">Revoke “${t.name}”? <button type="button" class="danger" ref=${focusOnShow} onClick=${() => revoke(t)}>Yes, revoke</button> <button type="button" class="secondary" onClick=${() => setConfirm(null)}>Cancel</button></span>`
                      : html`<button type="button" class="secondary" aria-label=${`Revoke token ${t.name}`} onClick=${() => setConfirm(t.id)}>Revoke…</button>`
                    : t.id === me.id
                      ? html`<span class="muted small">this session</span>`
                      : null}
                </td>
              </tr>`;
            })}
          </tbody>
        </table>`
      : error ? null : html`<p role="status">Loading…</p>`}`;
}
