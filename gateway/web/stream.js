// airq web page: the live stream of every sensor's latest reading
// (GET /api/stream/latest, Server-Sent Events), read in a Web Worker.
//
// Why a worker: the stream opens with one `reading` event per sensor, 15,000
// of them (4 MB) within a second. An `EventSource` dispatches each as a task
// of the page's own thread, and a network read's events run back to back:
// on a phone that was tasks of a second and more, the page frozen while the
// map was still empty. Here the events are read, parsed and gathered off
// the page's thread; the page gets, at each `sync`, only the readings that
// changed since the last one, in one message.
//
// As an EventSource does: the request carries `Last-Event-ID` (the last
// `sync`'s id) when it reconnects, so nothing is missed; a stream that ends
// or breaks is opened again after `retry` (3 s unless the server says);
// an answer other than a 200 event stream is a refusal, for good.
//
// Messages, page → worker: { type: 'open', url } (again to start over), {
// type: 'close' }. Worker → page: { type: 'sync', version, numbers, texts }
// (the changed readings, packed: see `pack`), { type: 'reset' }
// (the server said `dropped`: the page forgets what it has; the stream
// starts over with every reading), { type: 'refused', status }.

const DEFAULT_RETRY_MS = 3000;

let run = 0; // the open stream's number: an older one stops at its next step
let controller = null;

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

// Run as a worker (now.js starts one), this module follows the stream;
// imported by the page (for the packing's layout), it only exports.
if (typeof WorkerGlobalScope === 'function' && globalThis instanceof WorkerGlobalScope) {
  globalThis.onmessage = (e) => {
    const { type, url } = e.data || {};
    run += 1;
    if (controller) controller.abort();
    controller = null;
    if (type === 'open' && typeof url === 'string') follow(url, run);
  };
}

// Follows `url` until a newer message replaces run `my`.
async function follow(url, my) {
  let lastId = '';
  let retry = DEFAULT_RETRY_MS;
  let changed = new Map();
  while (my === run) {
    controller = new AbortController();
    const headers = { Accept: 'text/event-stream' };
    if (lastId) headers['Last-Event-ID'] = lastId;
    let resp;
    try {
      resp = await fetch(url, { headers, cache: 'no-store', signal: controller.signal });
    } catch (err) {
      if (my !== run) return;
      await sleep(retry);
      continue;
    }
    const type = (resp.headers.get('Content-Type') || '').split(';')[0].trim().toLowerCase();
    if (resp.status !== 200 || type !== 'text/event-stream' || !resp.body) {
      if (my === run) globalThis.postMessage({ type: 'refused', status: resp.status });
      return;
    }
    const events = sse(resp.body);
    let dropped = false;
    try {
      for await (const ev of events) {
        if (my !== run) return;
        if (ev.retry !== undefined) retry = ev.retry;
        if (ev.event === 'reading') {
          try {
            const r = JSON.parse(ev.data);
            changed.set(r.sensor_id, r);
          } catch (err) { /* a malformed event is skipped, as the page did */ }
        } else if (ev.event === 'sync') {
          lastId = ev.id;
          const packed = pack([...changed.values()]);
          globalThis.postMessage({ type: 'sync', version: ev.id, ...packed }, [packed.numbers.buffer]);
          changed = new Map();
        } else if (ev.event === 'dropped') {
          // Fell behind, or the store was replaced: start again from every
          // reading (no Last-Event-ID).
          lastId = '';
          changed = new Map();
          globalThis.postMessage({ type: 'reset' });
          controller.abort();
          dropped = true;
          break;
        }
      }
    } catch (err) {
      if (my !== run) return;
    }
    if (my !== run) return;
    // As an EventSource, wait before opening it again (at once after
    // `dropped`, which asks for that).
    if (!dropped) await sleep(retry);
  }
}

// The fields of a reading the map reads at once, as numbers; the rest,
// which only its label shows, as one string (TEXT_FIELDS joined by SEP).
// Thousands of objects would take the page's thread tens of ms to receive
// (a structured clone of each); these arrays take a few.
export const TEXT_FIELDS = ['sensor_type', 'loc_country', 'timestamp', 'P1', 'P2', 'Range', 'nowcastPm25'];
export const SEP = '\u001f';
// Per reading in `numbers`: sensor id, latitude, longitude, AQI (NaN for
// none), 1 for a live-tier reading (it has the basis fields).
export const NUMBERS = 5;

// Whether a reading of the stream is the live tier's: only those carry
// the basis fields (the stream leaves out `resolution`).
export const isLive = (r) => 'nowcastPm25' in r;

function pack(rows) {
  const numbers = new Float64Array(rows.length * NUMBERS);
  const texts = new Array(rows.length);
  rows.forEach((r, i) => {
    const at = i * NUMBERS;
    numbers[at] = r.sensor_id;
    numbers[at + 1] = Number(r.loc_lat);
    numbers[at + 2] = Number(r.loc_long);
    numbers[at + 3] = r.AQI === null || r.AQI === undefined || r.AQI === '' ? NaN : Number(r.AQI);
    numbers[at + 4] = isLive(r) ? 1 : 0;
    // null and absent as empty: no field here is ever an empty string.
    texts[i] = TEXT_FIELDS.map((f) => (r[f] === null || r[f] === undefined ? '' : String(r[f]))).join(SEP);
  });
  return { numbers, texts };
}

// The events of an event stream's body (the HTML standard's parsing rules:
// lines end with CRLF, LF or CR; `field: value`; a blank line dispatches an
// event that has data; a comment line starts with ':'), each as { event,
// data, id }; a `retry` field as { retry } at once, as the standard
// applies it.
export async function* sse(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let event = '';
  let data = [];
  let id = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buffer += value;
    let start = 0;
    // The next CR, looked for again only once passed: a stream without
    // any (this server's) is not scanned to its end for each line.
    let cr = buffer.indexOf('\r');
    for (;;) {
      if (cr >= 0 && cr < start) cr = buffer.indexOf('\r', start);
      const lf = buffer.indexOf('\n', start);
      const end = cr < 0 ? lf : lf < 0 ? cr : Math.min(cr, lf);
      if (end < 0) break;
      // A CR at the very end may be the first half of a CRLF: wait.
      if (end === cr && end === buffer.length - 1) break;
      const line = buffer.slice(start, end);
      start = end + (buffer[end] === '\r' && buffer[end + 1] === '\n' ? 2 : 1);
      if (line === '') {
        if (data.length) yield { event: event || 'message', data: data.join('\n'), id };
        event = '';
        data = [];
        continue;
      }
      if (line[0] === ':') continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let v = colon < 0 ? '' : line.slice(colon + 1);
      if (v[0] === ' ') v = v.slice(1);
      if (field === 'event') event = v;
      else if (field === 'data') data.push(v);
      else if (field === 'id' && !v.includes('\0')) id = v;
      else if (field === 'retry' && /^\d+$/.test(v)) yield { retry: Number(v) };
    }
    buffer = buffer.slice(start);
  }
}
