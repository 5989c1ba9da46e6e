// The /v1 API with the signed-in user's token (kept in sessionStorage: it lasts as long as the
// tab and is not shared with other tabs or sent anywhere but this origin).

const KEY = 'alert-runner.token';

export const session = {
  get token() { return sessionStorage.getItem(KEY); },
  set(token) { sessionStorage.setItem(KEY, token.trim()); },
  clear() { sessionStorage.removeItem(KEY); },
  /** The token's user id (its `sub`), read without checking: the server checks. */
  get user() {
    try {
      const part = (this.token || '').split('.')[1] || '';
      const json = atob(part.replace(/-/g, '+').replace(/_/g, '/'));
      return JSON.parse(json).sub || null;
    } catch { return null; }
  },
};

/** An error answer: `{error: {code, message, path, errors}}`. */
export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || 'error';
    // Every field error, with its JSON path (`conditions[0].settings.length`).
    this.errors = Array.isArray(e.errors) && e.errors.length
      ? e.errors
      : (e.path !== undefined ? [{ path: e.path, message: stripPath(e.path, e.message) }] : []);
  }
}

/** A single error's message repeats its path in front (`path: message`): once is enough. */
function stripPath(path, message) {
  const m = String(message || '');
  return path && m.startsWith(`${path}: `) ? m.slice(path.length + 2) : m;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Calls `/v1${path}`; JSON in and out; 429 is retried after its Retry-After (3 times). */
export async function api(method, path, body) {
  for (let attempt = 0; ; attempt++) {
    const headers = { Accept: 'application/json' };
    if (session.token) headers.Authorization = `Bearer ${session.token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(`/v1${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.status === 429 && attempt < 3) {
      const wait = Number(res.headers.get('Retry-After')) || 1;
      await sleep(Math.min(wait, 5) * 1000);
      continue;
    }
    const text = await res.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch { data = null; }
    }
    if (res.status === 401) window.dispatchEvent(new CustomEvent('unauthorized'));
    if (!res.ok) throw new ApiError(res.status, data);
    return data;
  }
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body);

/** The embedded default's demo token; null when this server does not offer one. */
export async function demoToken() {
  const res = await fetch('/v1/demo-token', { headers: { Accept: 'application/json' } });
  if (res.status === 404) return null;
  if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => null));
  return (await res.json()).token;
}

let catalog;
/** `/v1/catalog`, fetched once per page load. */
export function getCatalog() {
  if (!catalog) catalog = get('/catalog').catch((e) => { catalog = undefined; throw e; });
  return catalog;
}
