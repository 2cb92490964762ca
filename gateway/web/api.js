// airq web page: the API client, the requests the page makes to the
// gateway that served it (/api/meta, /api/query, /api/results/{id}) and
// how it reads their answers. No DOM here: flow.js and app.js show what
// comes back.

import { state } from './state.js';

// What the page takes back: an answer in any format, or a JSON state or
// error.
const answerTypes = () => `${Object.values(state.formats).map((f) => f.type).join(', ')}, application/json`;

// Seconds to wait per Retry-After (delta-seconds or an HTTP date).
export function retryAfter(resp, fallback) {
  const v = (resp.headers.get('Retry-After') || '').trim();
  let s = fallback;
  if (/^\d+$/.test(v)) s = Number(v);
  else if (v) {
    const t = Date.parse(v);
    if (!Number.isNaN(t)) s = (t - Date.now()) / 1000;
  }
  return Math.min(30, Math.max(0.5, s));
}

export async function readJson(resp) {
  try {
    return await resp.json();
  } catch (e) {
    return null;
  }
}

export function errorText(resp, info) {
  if (info && typeof info.error === 'string') return info.error;
  return `the server answered ${resp.status} ${resp.statusText}`.trim();
}

// POST /api/query: the answer itself, or (queued, when `queue` asks for
// it or the server chooses to) a result id to poll.
export function postQuery(body, queue, signal) {
  const headers = { 'Content-Type': 'application/json', Accept: answerTypes() };
  if (queue) headers.Prefer = 'respond-async';
  return fetch('/api/query', {
    method: 'POST', headers, body: JSON.stringify(body), signal,
  });
}

// GET /api/results/{id}: the answer, or the queued query's state.
export function getResult(id, signal) {
  return fetch(`/api/results/${encodeURIComponent(id)}`, {
    headers: { Accept: answerTypes() }, cache: 'no-store', signal,
  });
}

// The validated query a result answers (GET /api/results/{id}/status),
// or null when the server cannot say (the poll then reports why).
export async function queryOfResult(id, signal) {
  let resp;
  try {
    resp = await fetch(`/api/results/${encodeURIComponent(id)}/status`, {
      headers: { Accept: 'application/json' }, cache: 'no-store', signal,
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    return null;
  }
  if (resp.status !== 200) return null;
  const info = await readJson(resp);
  return info && info.query && typeof info.query === 'object' ? info.query : null;
}

// GET /api/meta: the query options, the limits and what data is stored.
export function getMeta() {
  const signal = typeof AbortSignal.timeout === 'function' ? AbortSignal.timeout(20000) : undefined;
  return fetch('/api/meta', { headers: { Accept: 'application/json' }, signal });
}
