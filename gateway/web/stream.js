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
// type: 'close' }. Worker → page: { type: 'sync', rows, version } (`rows`:
// the changed readings, as the events' JSON has them), { type: 'reset' }
// (the server said `dropped`: the page forgets what it has; the stream
// starts over with every reading), { type: 'refused', status }.

const DEFAULT_RETRY_MS = 3000;

let run = 0; // the open stream's number: an older one stops at its next step
let controller = null;

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

self.onmessage = (e) => {
  const { type, url } = e.data || {};
  run += 1;
  if (controller) controller.abort();
  controller = null;
  if (type === 'open' && typeof url === 'string') follow(url, run);
};

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
      if (my === run) postMessage({ type: 'refused', status: resp.status });
      return;
    }
    const events = sse(resp.body);
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
          postMessage({ type: 'sync', rows: [...changed.values()], version: ev.id });
          changed = new Map();
        } else if (ev.event === 'dropped') {
          // Fell behind, or the store was replaced: start again from every
          // reading (no Last-Event-ID).
          lastId = '';
          changed = new Map();
          postMessage({ type: 'reset' });
          controller.abort();
          break;
        }
      }
    } catch (err) {
      if (my !== run) return;
    }
    if (my !== run) return;
    if (lastId) await sleep(retry);
  }
}

// The events of an event stream's body (the HTML standard's parsing rules:
// lines end with CRLF, LF or CR; `field: value`; a blank line dispatches an
// event that has data; a comment line starts with ':'), each as { event,
// data, id, retry }.
async function* sse(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let event = '';
  let data = [];
  let id = '';
  let retry;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buffer += value;
    let start = 0;
    for (;;) {
      const cr = buffer.indexOf('\r', start);
      const lf = buffer.indexOf('\n', start);
      let end = cr < 0 ? lf : lf < 0 ? cr : Math.min(cr, lf);
      if (end < 0) break;
      // A CR at the very end may be the first half of a CRLF: wait.
      if (end === cr && end === buffer.length - 1) break;
      const line = buffer.slice(start, end);
      start = end + (buffer[end] === '\r' && buffer[end + 1] === '\n' ? 2 : 1);
      if (line === '') {
        if (data.length) yield { event: event || 'message', data: data.join('\n'), id, retry };
        event = '';
        data = [];
        retry = undefined;
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
      else if (field === 'retry' && /^\d+$/.test(v)) retry = Number(v);
    }
    buffer = buffer.slice(start);
  }
}
