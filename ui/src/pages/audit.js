import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { api, qs } from '../api.js';
import { ErrorBox, useLoad, when } from '../util.js';

// The event types of src/audit/events.ts (the API refuses any other filter).
const TYPES = [
  'keyGenerated', 'caInitialised', 'certificateIssued', 'certificateRevoked', 'tokenCreated', 'tokenRevoked', 'crlGenerated',
  'authenticationFailed', 'authenticationFailures', 'issuanceRefused', 'lintFailed', 'weakKeyRefused', 'blockedKeyRefused', 'keyBlocked',
  'auditCheckpoint', 'acmeEabKeyCreated', 'acmeEabKeyRevoked', 'acmeAccountCreated', 'acmeAccountUpdated', 'acmeOrderCreated',
  'acmeValidationSucceeded', 'acmeValidationFailed', 'acmeOrderFinalized', 'acmeOrderRefused',
  'quorumRequested', 'quorumApproved', 'quorumRefused', 'quorumExecuted', 'quorumApproverAdded', 'quorumApproverRemoved',
  'backupCreated', 'backupRestored',
];

/** A datetime-local value (read as UTC) as ISO 8601. */
const isoUtc = (v) => (v ? `${v.length === 16 ? `${v}:00` : v}Z` : '');

function VerifyResult({ r }) {
  return html`<div class=${r.ok ? 'result ok' : 'result bad'} role="status" id="verify-result">
    ${r.ok
      ? html`<p><strong>The audit trail verifies:</strong> ${r.events} events, ${r.checkpoints} signed checkpoints.</p>
          <p class="small">${r.newestCheckpoint ? html`Newest signed checkpoint: event ${r.newestCheckpoint.seq}${r.newestCheckpoint.signedAt ? `, signed ${when(r.newestCheckpoint.signedAt)}` : ''}. Events after it are protected by the hash chain only until the next checkpoint.` : 'No signed checkpoint yet: the chain is checked, but nothing is signed by the HSM so far.'}</p>`
      : html`<p><strong>The audit trail does NOT verify</strong> (${r.problem}, from event ${r.firstBadSeq}):</p><p>${r.message}</p>`}
  </div>`;
}

/** The audit trail, newest first, with filters; Verify runs the chain verification through the API. */
export function Audit() {
  const [form, setForm] = useState({ type: '', actor: '', since: '', until: '' });
  const [query, setQuery] = useState(form);
  const [items, setItems] = useState([]);
  const [cursor, setCursor] = useState(null);
  const [moreError, setMoreError] = useState(null);
  const [verify, setVerify] = useState({ busy: false, result: null, error: null });
  const params = (q) => ({ order: 'desc', limit: 50, type: q.type, actor: q.actor.trim(), since: isoUtc(q.since), until: isoUtc(q.until) });
  const [, error, loading] = useLoad(async () => {
    const page = await api('GET', `/api/v1/audit${qs(params(query))}`);
    setItems(page.items);
    setCursor(page.nextCursor);
    return page;
  }, [query]);
  const more = async () => {
    setMoreError(null);
    try {
      const page = await api('GET', `/api/v1/audit${qs({ ...params(query), cursor })}`);
      setItems((o) => [...o, ...page.items]);
      setCursor(page.nextCursor);
    } catch (e) {
      setMoreError(e);
    }
  };
  const runVerify = async () => {
    setVerify({ busy: true, result: null, error: null });
    try {
      setVerify({ busy: false, result: await api('GET', '/api/v1/audit/verify'), error: null });
    } catch (e) {
      setVerify({ busy: false, result: null, error: e });
    }
  };
  const set = (k) => (e) => setForm({ ...form, [k]: e.currentTarget.value });

  return html`<h1>Audit trail</h1>
    <section class="card wide" aria-labelledby="h-verify">
      <h2 id="h-verify">Verification</h2>
      <p>Checks the hash chain and every HSM-signed checkpoint, end to end (GET /api/v1/audit/verify).</p>
      <button type="button" onClick=${runVerify} disabled=${verify.busy}>${verify.busy ? 'Verifying…' : 'Verify the audit trail'}</button>
      <${ErrorBox} error=${verify.error} />
      ${verify.result ? html`<${VerifyResult} r=${verify.result} />` : null}
    </section>
    <form class="filters" role="search" onSubmit=${(e) => { e.preventDefault(); setQuery(form); }}>
      <div><label for="a-type">Type</label><select id="a-type" value=${form.type} onChange=${set('type')}><option value="">any</option>${TYPES.map((t) => html`<option value=${t}>${t}</option>`)}</select></div>
      <div><label for="a-actor">Actor</label><input id="a-actor" value=${form.actor} onInput=${set('actor')} placeholder="admin:first-admin" /></div>
      <div><label for="a-since">From (UTC)</label><input id="a-since" type="datetime-local" value=${form.since} onInput=${set('since')} /></div>
      <div><label for="a-until">Until (UTC)</label><input id="a-until" type="datetime-local" value=${form.until} onInput=${set('until')} /></div>
      <div class="filter-actions"><button type="submit">Filter</button></div>
    </form>
    <${ErrorBox} error=${error} />
    ${loading && !items.length ? html`<p role="status">Loading…</p>` : null}
    ${!loading && !error && !items.length ? html`<p role="status">No event matches.</p>` : null}
    ${items.length
      ? html`<table class="list audit">
          <caption class="sr-only">Audit events, newest first</caption>
          <thead><tr><th scope="col">#</th><th scope="col">Time</th><th scope="col">Type</th><th scope="col">Actor</th><th scope="col">Subject</th><th scope="col">Details</th></tr></thead>
          <tbody>
            ${items.map(
              (e) => html`<tr>
                <td data-label="#">${e.seq}</td>
                <td data-label="Time">${when(e.at)}</td>
                <td data-label="Type">${e.type}</td>
                <td data-label="Actor">${e.actor}</td>
                <td data-label="Subject" class="mono break small">${e.subject ?? ''}</td>
                <td data-label="Details" class="mono break small">${e.details && Object.keys(e.details).length ? JSON.stringify(e.details) : ''}</td>
              </tr>`,
            )}
          </tbody>
        </table>`
      : null}
    <${ErrorBox} error=${moreError} />
    ${cursor ? html`<p><button type="button" class="secondary" onClick=${more}>Load more</button></p>` : null}`;
}
