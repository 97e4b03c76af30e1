import { html } from 'htm/preact';
import { useEffect, useRef, useState } from 'preact/hooks';

/** An ISO time as a short UTC text (the CA's times are UTC everywhere). */
export function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toISOString().replace('T', ' ').replace(/:\d\d\.\d{3}Z$/, ' UTC');
}

/** Days from now to an ISO time (negative when past). */
export function daysUntil(iso) {
  return Math.floor((new Date(iso).getTime() - Date.now()) / 86400000);
}

/** Offers `text` as a file download (a blob URL: nothing leaves the page). */
export function download(name, text, type = 'application/x-pem-file') {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** The API's message for a failed action, announced to screen readers. */
export function ErrorBox({ error }) {
  if (!error) return null;
  return html`<div class="error" role="alert"><strong>Error:</strong> ${error.message}${error.code ? html` <span class="code">(${error.code})</span>` : null}</div>`;
}

export function Status({ status }) {
  return html`<span class=${`badge badge-${status}`}>${status}</span>`;
}

/** Loads `fn()` on mount and when `deps` change: [data, error, loading, reload]. */
export function useLoad(fn, deps) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const seq = useRef(0);
  const load = () => {
    const n = ++seq.current;
    setState((s) => ({ ...s, loading: true, error: null }));
    fn().then(
      (data) => n === seq.current && setState({ data, error: null, loading: false }),
      (error) => n === seq.current && setState({ data: null, error, loading: false }),
    );
  };
  useEffect(load, deps);
  return [state.data, state.error, state.loading, load];
}

/** A copy-to-clipboard button for a secret shown once. */
export function CopyButton({ text, label = 'Copy' }) {
  const [done, setDone] = useState('');
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setDone('Copied');
    } catch {
      setDone('Copy failed: select the text and copy it by hand');
    }
  };
  return html`<button type="button" class="secondary" onClick=${copy}>${label}</button> <span class="muted" role="status">${done}</span>`;
}

export function Field({ label, children }) {
  return html`<div class="field"><dt>${label}</dt><dd>${children}</dd></div>`;
}

/** A ref that moves the keyboard focus to the element once it is shown (a confirmation's confirm button). */
export function focusOnShow(el) {
  if (el && !el.dataset.focused) {
    el.dataset.focused = '1';
    el.focus();
  }
}
