// airq web page: "The air now". The map of every sensor's latest reading,
// coloured by the chosen index as it is now (for a reading of the live
// tier, its hour's index: the NowCast for US EPA), kept up to date by the
// live stream (GET /api/stream/latest: every reading at once, then the
// changes of each ingestion) while the page is shown, or, where the stream
// is refused, by GET /api/latest every minute; and, for a sensor picked on
// the map or a box drawn on it, the last 48 hours of hourly values (a box:
// each hour's median over its sensors) with the index's bands.

import { state } from './state.js';
import {
  $, apiSeconds, fmtInt, moduleWorker,
} from './util.js';
import { bandColours, colourOf, indexOf, indexValue } from './indices.js';
import { create as createMap } from './map.js';
import {
  NUMBERS, SEP, TEXT_FIELDS, isLive,
} from './stream.js';
import { svg } from './timechart.js';

const REFRESH_MS = 60 * 1000;
const HOUR = 3600;
const HOURS = 48;

let map = null;
let timer = null;
let loading = null; // the AbortController of the load in flight
let picked = null; // what the chart shows: { sensor } or { box }
let stream = null; // the live stream while open: its worker's handle, or an EventSource
let streamed = new Map(); // sensor id → its latest reading, from the stream
let drawn = false; // whether the map has been drawn once
let mode = null; // 'stream', or 'poll' where the stream was refused

// "4 min ago", "3 h ago", "2 days ago".
function ago(seconds) {
  if (!Number.isFinite(seconds)) return '';
  if (seconds < 90) return `${Math.max(0, Math.round(seconds))} s ago`;
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 36 * HOUR) return `${Math.round(seconds / HOUR)} h ago`;
  return `${Math.round(seconds / 86400)} days ago`;
}

// The lines of an NDJSON answer as objects.
function ndjson(text) {
  return text.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l));
}

// The body of a direct answer (200); a queued one (202, the server was
// busy) or an error is a failure the view reports.
async function fetchText(url, init) {
  const resp = await fetch(url, init);
  if (resp.status === 202) throw new Error('the server is busy; try again in a moment');
  if (resp.status !== 200) throw new Error(`HTTP ${resp.status}`);
  return resp.text();
}

function legendOf(key) {
  const ix = indexOf(key);
  const items = ix.valueColours.length
    ? ix.valueColours.map((colour, i) => ({ colour, label: `${ix.min + i}` }))
    : bandColours(key);
  return [...items, { colour: colourOf(key)(NaN), label: 'no index yet (too little data)' }];
}

// Draws `rows` (readings as GET /api/latest's NDJSON has them) on the map.
function draw(rows, keepView) {
  const key = $('now-index').value || state.defaultIndex;
  const ix = indexOf(key);
  let live = 0;
  const points = rows.map((r) => {
    const value = indexValue(r.AQI);
    if (r.resolution === '5min') live += 1;
    return {
      lat: Number(r.loc_lat),
      lon: Number(r.loc_long),
      value,
      sensor: r.sensor_id,
      label: () => {
        const basis = r.resolution === '5min' && ix.hourlyWindow === 'NowCast' && r.nowcastPm25 !== null && r.nowcastPm25 !== undefined
          ? ` (NowCast PM2.5 ${r.nowcastPm25} µg/m³)` : '';
        return `Sensor ${r.sensor_id} (${r.sensor_type}, ${r.loc_country}) · ${r.timestamp} UTC, `
          + `${ago(ageOf(r))} · ${((state.resolutions[r.resolution] || {}).label || r.resolution).toLowerCase()} reading · `
          + `PM10 ${r.P1 ?? '–'} · PM2.5 ${r.P2 ?? '–'} µg/m³ · `
          + (Number.isFinite(value) ? `${ix.short} ${value} (${r.Range})${basis}` : `no ${ix.short} yet (too little data)`);
      },
    };
  });
  map.setPoints(points, colourOf(key), legendOf(key), keepView);
  drawn = true;
  const root = $('now');
  root.dataset.sensors = String(points.length);
  root.dataset.live = String(live);
  return { sensors: points.length, live };
}

function describe({ sensors, live }, how) {
  $('now-status').textContent = sensors
    ? `${fmtInt(sensors)} sensors, ${fmtInt(live)} of them from the 5-minute feed · ${how} ${new Date().toISOString().slice(11, 19)} UTC`
    : 'No readings are stored yet.';
}

// Loads the latest readings into the map; `keepView` on a refresh.
async function load(keepView) {
  const key = $('now-index').value || state.defaultIndex;
  if (loading) loading.abort();
  loading = new AbortController();
  try {
    const text = await fetchText(`/api/latest?format=ndjson&index=${encodeURIComponent(key)}`, {
      headers: { Accept: 'application/x-ndjson' }, signal: loading.signal,
    });
    describe(draw(ndjson(text), keepView), 'updated');
  } catch (e) {
    if (e.name === 'AbortError') return;
    $('now-status').textContent = `Could not load the latest readings (${e.message}); trying again in a minute.`;
  } finally {
    loading = null;
  }
  if (picked) showPicked(picked);
}

// A reading of the stream made like GET /api/latest's NDJSON, in place
// (once, as it arrives: thousands come at once): the stream leaves out
// its series, told by the basis fields a live-tier reading has, and its
// age, which would go stale (the label works it out when shown).
function asLatest(r) {
  r.resolution = isLive(r) ? '5min' : 'day';
  return r;
}

// A reading of the stream as stream.js packs it: what the map reads at
// once, and the rest (its label's) read from its text when first asked.
class StreamedReading {
  constructor(numbers, at, text) {
    this.sensor_id = numbers[at];
    this.loc_lat = numbers[at + 1];
    this.loc_long = numbers[at + 2];
    this.AQI = Number.isNaN(numbers[at + 3]) ? null : numbers[at + 3];
    this.resolution = numbers[at + 4] === 1 ? '5min' : 'day';
    this.text = text;
    this.fields = null;
  }

  field(name) {
    if (!this.fields) {
      const values = this.text.split(SEP);
      this.fields = Object.fromEntries(TEXT_FIELDS.map((f, i) => [f, values[i] === '' ? null : values[i]]));
    }
    return this.fields[name];
  }

  get sensor_type() { return this.field('sensor_type'); }

  get loc_country() { return this.field('loc_country'); }

  get timestamp() { return this.field('timestamp'); }

  get P1() { return this.field('P1'); }

  get P2() { return this.field('P2'); }

  get Range() { return this.field('Range'); }

  get nowcastPm25() { return this.resolution === '5min' ? this.field('nowcastPm25') : undefined; }
}

function unpack(numbers, texts) {
  if (!numbers || !Array.isArray(texts)) return;
  texts.forEach((text, i) => {
    const r = new StreamedReading(numbers, i * NUMBERS, text);
    streamed.set(r.sensor_id, r);
  });
}

// How old a reading is, in seconds: as the answer said, or from its time.
function ageOf(r) {
  if (r.ageSeconds !== undefined) return Number(r.ageSeconds);
  const at = apiSeconds(r.timestamp);
  return at === null ? NaN : Date.now() / 1000 - at;
}

function closeStream() {
  if (stream) stream.close();
  stream = null;
}

// The map of every reading the stream has sent, redrawn at each `sync`
// (the end of a batch: the first, every sensor; then each ingestion's).
let synced = false;
function onSync() {
  describe(draw([...streamed.values()], drawn), synced ? 'live, last change' : 'live since');
  synced = true;
  $('now').dataset.stream = 'open';
  if (picked) showPicked(picked);
}

function onRefused(current) {
  if (stream !== current) return;
  stream = null;
  $('now').dataset.stream = 'refused';
  poll();
}

// The stream read by a Web Worker (stream.js: its thousands of events are
// parsed off the page's thread), as an object that closes like an
// EventSource; null where no worker can be started.
function workerStream(url) {
  const worker = moduleWorker($('now').dataset.streamReader);
  if (!worker) return null;
  const handle = { close: () => worker.terminate() };
  worker.onmessage = (e) => {
    if (stream !== handle) return;
    const m = e.data || {};
    if (m.type === 'sync') {
      unpack(m.numbers, m.texts);
      onSync();
    } else if (m.type === 'reset') {
      streamed = new Map();
    } else if (m.type === 'refused') {
      onRefused(handle);
    }
  };
  // The worker did not load (a browser without module workers): the page
  // reads the stream itself.
  worker.onerror = (e) => {
    e.preventDefault();
    if (stream !== handle) return;
    worker.terminate();
    stream = eventSource(url);
  };
  worker.postMessage({ type: 'open', url: new URL(url, window.location.href).href });
  $('now').dataset.streamVia = 'worker';
  return handle;
}

// The stream read on the page's thread, where there is no worker.
function eventSource(url) {
  const source = new EventSource(url);
  $('now').dataset.streamVia = 'page';
  source.addEventListener('reading', (e) => {
    try {
      const r = JSON.parse(e.data);
      streamed.set(r.sensor_id, asLatest(r));
    } catch { /* a malformed event is skipped */ }
  });
  source.addEventListener('sync', () => { if (stream === source) onSync(); });
  source.addEventListener('dropped', () => {
    // Fell behind, or the store was replaced: start again from every
    // reading (a new EventSource sends no Last-Event-ID).
    openStream();
  });
  source.onerror = () => {
    // CLOSED: refused for good (the browser reconnects by itself otherwise).
    if (source.readyState === EventSource.CLOSED) onRefused(source);
  };
  return source;
}

// Follows the live stream of every sensor's latest reading; where it is
// refused (an older gateway, a backend without it, too many streams), the
// map is loaded every minute instead.
function openStream() {
  closeStream();
  clearInterval(timer);
  timer = null;
  if (typeof EventSource !== 'function' && typeof Worker !== 'function') { poll(); return; }
  mode = 'stream';
  const key = $('now-index').value || state.defaultIndex;
  const url = `/api/stream/latest?index=${encodeURIComponent(key)}`;
  streamed = new Map();
  synced = false;
  stream = workerStream(url);
  if (!stream) stream = typeof EventSource === 'function' ? eventSource(url) : null;
  if (!stream) poll();
}

// The fallback: the latest readings every minute while the page is shown.
function poll() {
  mode = 'poll';
  load(drawn);
  clearInterval(timer);
  timer = setInterval(() => { if (!document.hidden) load(true); }, REFRESH_MS);
}

const pad = (n) => String(n).padStart(2, '0');
const apiTime = (t) => {
  const d = new Date(t * 1000);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} `
    + `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
};

// The hourly rows of a place over the 48 hours before `end` (Unix
// seconds), each with its quality flags: two direct queries of 24 hours
// (`place` is the query's `near` or `bbox` field).
async function hoursOf(place, key, end) {
  const rows = [];
  for (const from of [end - HOURS * HOUR, end - 24 * HOUR]) {
    const body = {
      startDate: apiTime(from),
      endDate: apiTime(from + 24 * HOUR - 1),
      resolution: 'hour',
      index: key,
      format: 'ndjson',
      quality: 'all',
      ...place,
    };
    const text = await fetchText('/api/query', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/x-ndjson' },
      body: JSON.stringify(body),
    });
    rows.push(...ndjson(text));
  }
  return rows;
}

// A box's hours: per hour, the median of its sensors' defined index values
// (the lower middle of an even count, a value the index has), as rows like
// a sensor's, with how many sensors had one and how many had a flag.
function medians(rows, key) {
  const ix = indexOf(key);
  const byHour = new Map();
  for (const r of rows) {
    const v = indexValue(r.AQI);
    if (!byHour.has(r.timestamp)) byHour.set(r.timestamp, { values: [], sensors: 0, flagged: 0 });
    const h = byHour.get(r.timestamp);
    h.sensors += 1;
    if (Array.isArray(r.flags) && r.flags.length) h.flagged += 1;
    if (Number.isFinite(v)) h.values.push(v);
  }
  return [...byHour.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([timestamp, h]) => {
    h.values.sort((a, b) => a - b);
    const v = h.values.length ? h.values[Math.floor((h.values.length - 1) / 2)] : NaN;
    const band = Number.isFinite(v) ? ix.bands.find((b) => v >= b.lo && v <= b.hi) : null;
    return {
      timestamp, AQI: Number.isFinite(v) ? v : null, Range: band ? band.name : null,
      P2: null, P1: null, samples: `${h.values.length} of ${h.sensors} sensors`,
      flags: `${h.flagged} of ${h.sensors} sensors flagged`,
    };
  });
}

// Bars of each hour's index, on the index's bands.
function drawSeries(host, rows, key, start) {
  const ix = indexOf(key);
  const colour = colourOf(key);
  const width = Math.round(Math.min(640, Math.max(300, host.clientWidth || 640)));
  const height = 180;
  const left = 36;
  const bottom = 22;
  const plotW = width - left - 8;
  const plotH = height - bottom - 8;
  const top = Math.max(ix.max === 500 ? 200 : ix.max, ...rows.map((r) => indexValue(r.AQI)).filter(Number.isFinite));
  const y = (v) => 8 + plotH - (Math.min(v, top) / top) * plotH;
  const chart = svg('svg', {
    viewBox: `0 0 ${width} ${height}`, width, height, role: 'img',
    'aria-labelledby': 'now-chart-title',
  });
  // The bands behind, each in its colour, faint.
  for (const b of ix.bands) {
    if (b.lo > top) break;
    const y0 = y(Math.min(b.hi + (ix.max === 500 ? 1 : 0.5), top));
    const y1 = y(Math.max(b.lo - (ix.max === 500 ? 0 : 0.5), 0));
    chart.append(svg('rect', {
      x: left, y: y0, width: plotW, height: Math.max(0, y1 - y0), fill: colour(b.hi), 'fill-opacity': 0.18,
    }, b.name));
  }
  const barW = plotW / HOURS;
  for (const r of rows) {
    const t = apiSeconds(r.timestamp);
    const v = indexValue(r.AQI);
    if (t === null || !Number.isFinite(v)) continue;
    const i = Math.floor((t - start) / HOUR);
    if (i < 0 || i >= HOURS) continue;
    const rect = svg('rect', {
      x: left + i * barW + 0.5, y: y(v), width: Math.max(1, barW - 1), height: Math.max(1, y(0) - y(v)), fill: colour(v),
    });
    rect.append(svg('title', {}, `${r.timestamp} UTC: ${ix.short} ${v} (${r.Range}); ${flagsText(r.flags)}`));
    chart.append(rect);
  }
  for (const v of [0, Math.round(top / 2), top]) {
    chart.append(svg('text', { x: left - 4, y: y(v) + 4, 'text-anchor': 'end', 'font-size': 10 }, String(v)));
  }
  for (const [h, anchor] of [[0, 'start'], [24, 'middle'], [HOURS, 'end']]) {
    chart.append(svg('text', {
      x: left + h * barW, y: height - 6, 'font-size': 10, 'text-anchor': anchor,
    }, `${apiTime(start + h * HOUR).slice(5, 13)}h`));
  }
  host.replaceChildren(chart);
}

// An hour's flags as the table and the bars say them: a sensor's names
// (an hour takes its 5-minute readings' flags, docs/api.md), or a box's
// count.
function flagsText(flags) {
  if (Array.isArray(flags)) return flags.length ? flags.join(', ') : 'no flags';
  return typeof flags === 'string' ? flags : '–';
}

function fillTable(rows, key) {
  const ix = indexOf(key);
  const body = $('now-table').tBodies[0];
  body.replaceChildren(...rows.map((r) => {
    const tr = document.createElement('tr');
    const v = indexValue(r.AQI);
    for (const cell of [r.timestamp, Number.isFinite(v) ? String(v) : '–', r.Range ?? `no ${ix.short} yet`,
      r.P2 ?? '–', r.P1 ?? '–', flagsText(r.flags),
      typeof r.samples === 'number' ? `${r.samples} five-minute values` : (r.samples ?? '–')]) {
      const td = document.createElement('td');
      td.textContent = String(cell);
      tr.append(td);
    }
    return tr;
  }));
}

// Shows the last 48 hours of what was picked: a sensor ({ sensor, lat,
// lon }) or a box ({ box: [w, s, e, n] }).
async function showPicked(what) {
  picked = what;
  const key = $('now-index').value || state.defaultIndex;
  const ix = indexOf(key);
  const figure = $('now-sensor');
  figure.hidden = false;
  const name = what.box
    ? `The box of longitudes ${what.box[0]} to ${what.box[2]}, latitudes ${what.box[1]} to ${what.box[3]}`
    : `Sensor ${what.sensor}`;
  const window = ix.hourlyWindow;
  $('now-chart-title').textContent = `${name}: the last 48 hours, hourly ${ix.short} (loading…)`;
  const end = Math.floor(Date.now() / 1000 / HOUR) * HOUR + HOUR;
  try {
    const rows = what.box
      ? medians(await hoursOf({ bbox: what.box }, key, end), key)
      : (await hoursOf({ near: { lat: what.lat, lon: what.lon, radiusKm: 0.01 } }, key, end))
        .filter((r) => r.sensor_id === what.sensor);
    if (picked !== what) return; // picked again meanwhile
    drawSeries($('now-chart'), rows, key, end - HOURS * HOUR);
    fillTable(rows, key);
    figure.dataset.hours = String(rows.length);
    $('now-chart-title').textContent = !rows.length
      ? `${name}: no hourly values in the last 48 hours (the live tier has none there)`
      : what.box
        ? `${name}: the last 48 hours, each hour's median ${ix.short} over its sensors (${window})`
        : `${name}: the last 48 hours, hourly ${ix.short} (${window})`;
  } catch (e) {
    $('now-chart-title').textContent = `${name}: could not load its hours (${e.message})`;
  }
}

// Starts the view once the options are in (app.js).
export function startNow() {
  const select = $('now-index');
  select.replaceChildren(...Object.entries(state.indices).map(([key, ix]) => new Option(ix.name, key)));
  select.value = state.defaultIndex;
  if (!map) {
    map = createMap($('now-map'), {
      onPick: (r) => showPicked({ sensor: r.sensor, lat: r.lat, lon: r.lon }),
      onBox: (box) => showPicked({ box }),
    });
    $('now-zoom-in').addEventListener('click', () => map.zoom(1.5));
    $('now-zoom-out').addEventListener('click', () => map.zoom(1 / 1.5));
    $('now-box').addEventListener('click', () => map.startBox());
    select.addEventListener('change', () => (mode === 'poll' ? load(true) : openStream()));
    // A hidden page holds no stream; shown again, it starts one (every
    // reading at once, so nothing missed meanwhile).
    document.addEventListener('visibilitychange', () => {
      if (mode === 'poll') {
        if (!document.hidden) load(true);
      } else if (document.hidden) {
        closeStream();
      } else if (!stream) {
        openStream();
      }
    });
  }
  openStream();
}
