import { render } from 'preact';
import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import { api, getToken, setToken } from './api.js';
import { ErrorBox } from './util.js';
import { Overview } from './pages/overview.js';
import { Certificates, CertificateDetail } from './pages/certificates.js';
import { Tokens } from './pages/tokens.js';
import { Audit } from './pages/audit.js';
import { Acme } from './pages/acme.js';

const PAGES = [
  { id: 'overview', title: 'Overview', admin: true },
  { id: 'certificates', title: 'Certificates', admin: false },
  { id: 'tokens', title: 'Tokens', admin: true },
  { id: 'audit', title: 'Audit', admin: true },
  { id: 'acme', title: 'ACME', admin: true },
];

/** The route is the URL's fragment: #/certificates, #/certificates/<serial>. */
function parseHash() {
  const parts = (location.hash.replace(/^#\/?/, '') || '').split('/').map(decodeURIComponent);
  return { page: parts[0] || '', arg: parts[1] || '' };
}

function useHash() {
  const [route, setRoute] = useState(parseHash());
  useEffect(() => {
    const on = () => setRoute(parseHash());
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return route;
}

function SignIn({ onSignedIn }) {
  const [token, setValue] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const me = await api('GET', '/api/v1/whoami', undefined, token.trim());
      setToken(token.trim());
      onSignedIn(me);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<main id="main" class="signin">
    <h1>hsmca console</h1>
    <p>Sign in with a bearer token: an admin token sees everything, a requester token the certificates it was issued. The token stays in this tab (sessionStorage) and is sent only as an Authorization header to this CA.</p>
    <form onSubmit=${submit}>
      <label for="token">Bearer token</label>
      <input id="token" name="token" type="password" autocomplete="off" spellcheck="false" required value=${token} onInput=${(e) => setValue(e.currentTarget.value)} />
      <button type="submit" disabled=${busy}>${busy ? 'Signing in…' : 'Sign in'}</button>
    </form>
    <${ErrorBox} error=${error} />
  </main>`;
}

function App() {
  const [me, setMe] = useState(null);
  const [checking, setChecking] = useState(!!getToken());
  const [expired, setExpired] = useState(null);
  const route = useHash();

  useEffect(() => {
    if (!getToken()) return;
    api('GET', '/api/v1/whoami').then(
      (m) => {
        setMe(m);
        setChecking(false);
      },
      (e) => {
        setToken(null);
        setExpired(e);
        setChecking(false);
      },
    );
  }, []);

  const signOut = () => {
    setToken(null);
    setMe(null);
    location.hash = '';
  };

  if (checking) return html`<main id="main" class="signin"><p role="status">Checking the saved token…</p></main>`;
  if (!me)
    return html`<div>${expired ? html`<div class="signin"><${ErrorBox} error=${expired} /></div>` : null}<${SignIn}
        onSignedIn=${(m) => {
          setExpired(null);
          setMe(m);
          if (!location.hash) location.hash = m.role === 'admin' ? '#/overview' : '#/certificates';
        }}
      /></div>`;

  return html`<${Console} me=${me} route=${route} signOut=${signOut} />`;
}

function Console({ me, route, signOut }) {
  // a click on the current page's link loads it afresh
  const [visit, setVisit] = useState(0);
  const isAdmin = me.role === 'admin';
  const pages = PAGES.filter((p) => isAdmin || !p.admin);
  const page = pages.find((p) => p.id === route.page) ? route.page : pages[0].id;
  const current = pages.find((p) => p.id === page);
  useTitle(current.title);

  let body;
  if (page === 'overview') body = html`<${Overview} />`;
  else if (page === 'certificates') body = route.arg ? html`<${CertificateDetail} serial=${route.arg} me=${me} />` : html`<${Certificates} me=${me} />`;
  else if (page === 'tokens') body = html`<${Tokens} me=${me} />`;
  else if (page === 'audit') body = html`<${Audit} />`;
  else if (page === 'acme') body = html`<${Acme} />`;

  return html`<div class="layout">
    <a class="skip" href="#main" onClick=${(e) => { e.preventDefault(); document.getElementById('main')?.focus(); }}>Skip to content</a>
    <header class="top">
      <span class="brand">hsmca</span>
      <nav aria-label="Console">
        <ul>
          ${pages.map((p) => html`<li><a href=${`#/${p.id}`} onClick=${() => setVisit((v) => v + 1)} aria-current=${p.id === page ? 'page' : undefined}>${p.title}</a></li>`)}
        </ul>
      </nav>
      <span class="who">${me.name} <span class="muted">(${me.role})</span></span>
      <button type="button" class="secondary" onClick=${signOut}>Sign out</button>
    </header>
    <main id="main" tabindex="-1"><div key=${`${page}/${route.arg}/${visit}`}>${body}</div></main>
  </div>`;
}

function useTitle(t) {
  useEffect(() => {
    document.title = `${t} · hsmca console`;
  }, [t]);
}

render(html`<${App} />`, document.getElementById('app'));
