// The console's only door to hsmca: the same HTTP API as the CLI and scripts.
// The bearer token lives in sessionStorage (this tab only, gone when it closes)
// and is sent as the Authorization header; no cookie is ever set, so no other
// site can make the browser act with it (no CSRF).

const KEY = 'hsmca.token';

export function getToken() {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null;
  }
}

export function setToken(token) {
  try {
    if (token) sessionStorage.setItem(KEY, token);
    else sessionStorage.removeItem(KEY);
  } catch {
    /* storage refused: the token stays in memory for this page only */
  }
  memoryToken = token || null;
}

let memoryToken = getToken();

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls the API; a non-2xx answer throws ApiError with the API's own message. */
export async function api(method, path, body, token = memoryToken) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store', credentials: 'omit', redirect: 'error' });
  } catch {
    throw new ApiError(0, 'network', 'hsmca did not answer (network error)');
  }
  let data = null;
  const text = await res.text();
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const e = data && data.error;
    throw new ApiError(res.status, (e && e.code) || 'httpError', (e && e.message) || `hsmca answered HTTP ${res.status}`);
  }
  return data;
}

export const qs = (params) => {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : '';
};
