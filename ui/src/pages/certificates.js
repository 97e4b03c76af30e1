import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { api, qs } from '../api.js';
import { ErrorBox, Field, Status, download, focusOnShow, useLoad, when } from '../util.js';

const REASONS = ['unspecified', 'keyCompromise', 'affiliationChanged', 'superseded', 'cessationOfOperation', 'certificateHold', 'privilegeWithdrawn'];

const sanText = (sans) =>
  [...(sans.dns || []), ...(sans.ip || []), ...(sans.email || []), ...(sans.uri || [])].join(', ');

/** Search by serial (any accepted form) or name, status and profile; cursor pagination ("Load more"). */
export function Certificates() {
  const [form, setForm] = useState({ q: '', status: '', profile: '' });
  const [query, setQuery] = useState({ q: '', status: '', profile: '' });
  const [items, setItems] = useState([]);
  const [cursor, setCursor] = useState(null);
  const [more, setMore] = useState({ busy: false, error: null });
  const [, error, loading] = useLoad(async () => {
    const page = await api('GET', `/api/v1/certificates${qs({ ...query, limit: 50 })}`);
    setItems(page.items);
    setCursor(page.nextCursor);
    return page;
  }, [query]);

  const loadMore = async () => {
    setMore({ busy: true, error: null });
    try {
      const page = await api('GET', `/api/v1/certificates${qs({ ...query, limit: 50, cursor })}`);
      setItems((old) => [...old, ...page.items]);
      setCursor(page.nextCursor);
      setMore({ busy: false, error: null });
    } catch (e) {
      setMore({ busy: false, error: e });
    }
  };
  const set = (k) => (e) => setForm({ ...form, [k]: e.currentTarget.value });

  return html`<h1>Certificates</h1>
    <form class="filters" role="search" onSubmit=${(e) => { e.preventDefault(); setQuery({ ...form, q: form.q.trim() }); }}>
      <div><label for="f-q">Serial or name</label><input id="f-q" type="search" value=${form.q} onInput=${set('q')} placeholder="3f:a2:… or web.example" /></div>
      <div><label for="f-status">Status</label><select id="f-status" value=${form.status} onChange=${set('status')}><option value="">any</option><option value="good">good</option><option value="revoked">revoked</option></select></div>
      <div><label for="f-profile">Profile</label><input id="f-profile" value=${form.profile} onInput=${set('profile')} placeholder="tls-server" /></div>
      <div class="filter-actions"><button type="submit">Search</button></div>
    </form>
    <${ErrorBox} error=${error} />
    ${loading && !items.length ? html`<p role="status">Loading…</p>` : null}
    ${!loading && !error && !items.length ? html`<p role="status">${cursor ? 'No certificate matches among the newest searched so far.' : 'No certificate matches.'}</p>` : null}
    ${items.length
      ? html`<table class="list">
          <caption class="sr-only">Certificates, newest first</caption>
          <thead><tr><th scope="col">Serial</th><th scope="col">Subject and names</th><th scope="col">Profile</th><th scope="col">Status</th><th scope="col">Expires</th></tr></thead>
          <tbody>
            ${items.map(
              (c) => html`<tr>
                <td data-label="Serial"><a class="mono" href=${`#/certificates/${c.serialNumber}`}>${c.serialNumber}</a></td>
                <td data-label="Names">${c.subject || html`<span class="muted">(empty subject)</span>`}<div class="muted small">${sanText(c.sans)}</div></td>
                <td data-label="Profile">${c.profile}</td>
                <td data-label="Status"><${Status} status=${c.status} /></td>
                <td data-label="Expires">${when(c.notAfter)}</td>
              </tr>`,
            )}
          </tbody>
        </table>`
      : null}
    <${ErrorBox} error=${more.error} />
    ${cursor
      ? html`<p><button type="button" class="secondary" onClick=${loadMore} disabled=${more.busy}>${more.busy ? 'Loading…' : query.q ? 'Search older certificates' : 'Load more'}</button>
          ${query.q ? html` <span class="muted small">A name search reads ${'20,000'} certificates per step, newest first.</span>` : null}</p>`
      : null}`;
}

/** One certificate: decoded fields, OCSP status, PEM download, revocation with a confirmation step. */
export function CertificateDetail({ serial, me }) {
  const [c, error, , reload] = useLoad(() => Promise.all([api('GET', `/api/v1/certificates/${encodeURIComponent(serial)}`), api('GET', `/api/v1/certificates/${encodeURIComponent(serial)}/details`)]), [serial]);
  const [reason, setReason] = useState('unspecified');
  const [confirming, setConfirming] = useState(false);
  const [revoke, setRevoke] = useState({ busy: false, error: null, done: false });
  const mayRevoke = me.role === 'admin' || (me.scope && me.scope.canRevoke);

  const doRevoke = async () => {
    setRevoke({ busy: true, error: null, done: false });
    try {
      await api('POST', `/api/v1/certificates/${encodeURIComponent(serial)}/revoke`, { reason });
      setRevoke({ busy: false, error: null, done: true });
      setConfirming(false);
      reload();
    } catch (e) {
      setRevoke({ busy: false, error: e, done: false });
    }
  };

  const back = html`<p><a href="#/certificates">← All certificates</a></p>`;
  if (error) return html`${back}<h1>Certificate</h1><${ErrorBox} error=${error} />`;
  if (!c) return html`${back}<h1>Certificate</h1><p role="status">Loading…</p>`;
  const [rec, d] = c;
  return html`${back}
    <h1>Certificate <span class="mono break">${rec.serialNumber}</span></h1>
    <div class="cards">
      <section class="card" aria-labelledby="h-fields">
        <h2 id="h-fields">Fields</h2>
        <dl>
          <${Field} label="Status"><${Status} status=${rec.status} />${rec.revokedAt ? html` since ${when(rec.revokedAt)} (${rec.revocationReason})` : null}<//>
          <${Field} label="Subject">${d.subject || html`<span class="muted">(empty)</span>`}<//>
          <${Field} label="Names">${sanText(rec.sans) || '—'}<//>
          <${Field} label="Issuer">${d.issuer}<//>
          <${Field} label="Profile">${rec.profile}<//>
          <${Field} label="Valid">${when(d.notBefore)} → ${when(d.notAfter)}<//>
          <${Field} label="Key">${d.publicKey.algorithm}${d.publicKey.curve ? ` ${d.publicKey.curve}` : ''}${d.publicKey.bits ? ` ${d.publicKey.bits} bits` : ''}<//>
          <${Field} label="Signature">${d.signatureAlgorithm}<//>
          <${Field} label="SHA-256"><span class="mono break small">${d.sha256Fingerprint}</span><//>
        </dl>
        <p class="actions"><button type="button" class="secondary" onClick=${() => download(`${rec.serialNumber}.pem`, rec.certificate)}>Download PEM</button></p>
      </section>
      <section class="card" aria-labelledby="h-ocsp">
        <h2 id="h-ocsp">OCSP</h2>
        <p>The CA's OCSP responder answers <span id="ocsp-status"><${Status} status=${d.ocsp.status} /></span></p>
        <dl>
          ${d.ocsp.revokedAt ? html`<${Field} label="Revoked">${when(d.ocsp.revokedAt)}${d.ocsp.reason ? ` (${d.ocsp.reason})` : ''}<//>` : null}
          <${Field} label="This update">${when(d.ocsp.thisUpdate)}<//>
          <${Field} label="Next update">${when(d.ocsp.nextUpdate)}<//>
        </dl>
      </section>
    </div>
    <section class="card wide" aria-labelledby="h-ext">
      <h2 id="h-ext">Extensions</h2>
      <dl>
        ${d.extensions.map((e) => html`<${Field} label=${`${e.name}${e.critical ? ' (critical)' : ''}`}><span class="break">${e.value}</span><//>`)}
      </dl>
    </section>
    ${mayRevoke && rec.status !== 'revoked'
      ? html`<section class="card wide danger" aria-labelledby="h-revoke">
          <h2 id="h-revoke">Revoke</h2>
          ${!confirming
            ? html`<form class="inline" onSubmit=${(e) => { e.preventDefault(); setConfirming(true); }}>
                <label for="reason">Reason</label>
                <select id="reason" value=${reason} onChange=${(e) => setReason(e.currentTarget.value)}>${REASONS.map((r) => html`<option value=${r}>${r}</option>`)}</select>
                <button type="submit" class="danger">Revoke…</button>
              </form>`
            : html`<div role="alertdialog" aria-labelledby="confirm-text" class="confirm">
                <p id="confirm-text">Revoke certificate <span class="mono break">${rec.serialNumber}</span> (${rec.subject || sanText(rec.sans)}) for <strong>${reason}</strong>? This cannot be undone.</p>
                <button type="button" class="danger" onClick=${doRevoke} disabled=${revoke.busy} ref=${focusOnShow}>Yes, revoke it</button>
                <button type="button" class="secondary" onClick=${() => setConfirming(false)}>Cancel</button>
              </div>`}
          <${ErrorBox} error=${revoke.error} />
        </section>`
      : null}
    ${revoke.done ? html`<p role="status" class="ok">Revoked.</p>` : null}`;
}
