// airq web page: reading an answer (CSV, NDJSON or GeoJSON) into what the
// result view draws, and the Web Worker that does it off the page's thread.
//
// Why a worker: an answer can be large (31 days of every country: 450,000
// readings, 40 MB of CSV). Decoding and parsing it in one go on the page's
// thread froze the page for most of a second (several on a slow phone),
// and keeping every reading's time and band took over 100 MB. So the page
// (result.js) hands the answer's body to a worker running this module
// (or, where a stream cannot be handed over, its bytes as they arrive),
// and gets back only what it draws: the header, the row
// count, the first rows, the count per bar, each sensor's latest reading
// as a map point, the readings already binned for the time chart; for an
// aggregate answer its period series and map points. Nothing of a reading
// is kept once it is counted but those (an aggregate's rows are kept whole
// until the end, here: a row per period and group).
//
// Why streaming: the bytes are parsed as they come, chunk by chunk, with
// a streaming decoder (a character split between chunks is decoded once
// whole) and parsers that stop before a record the chunk may end inside
// of and take it up again with the next chunk, so that a record parses
// the same wherever the chunks split it. GeoJSON is one JSON document: its
// text is gathered and parsed at the end.
//
// The same code reads an answer on the page's thread where no worker can
// be started (`AnswerReader`, used by result.js then), so that both ways
// give the same view.
//
// The worker's messages, page → worker:
//   { type: 'start', format, indexKey, index }: `format` is the answer's
//     (a key of state.formats), `index` the shared state's
//     `indices[indexKey]` (bands, bars and colours: the worker's own copy
//     of state.js is filled with it, so that indices.js and aggregate.js
//     compute here as on the page);
//   { type: 'chunks', chunks }: the next bytes of the answer (Uint8Arrays,
//     in order; their buffers handed over, not copied);
//   { type: 'end' }: the answer is whole;
//   or, instead of chunks and end, { type: 'body', body, blobType }: the
//     answer's body stream itself (handed over), which the worker reads,
//     posting { type: 'progress', received } each second and the bytes
//     as a Blob of `blobType` with its summary.
// worker → page:
//   { type: 'ready' }: it runs (answers 'start');
//   { type: 'done', summary, blob }: what `AnswerReader.end` returns, its map
//     points packed (`packPoints`: a few arrays rather than an object per
//     point, which the page's thread would take several times longer to
//     receive), their buffers handed over;
//   { type: 'error', message }: the answer could not be read (the worker
//     then ignores what follows; the page ends it).
// An exception the worker does not catch (it failed to load: a browser
// without module workers) reaches the page as the Worker's `error` event:
// the page reads the answer itself then.

import { state } from './state.js';
import { apiSeconds } from './util.js';
import { barIndex, barsOf, indexOf, indexValue } from './indices.js';
import { isAggregate, mapPoints, periodSeries } from './aggregate.js';
import { binner } from './timechart.js';

// The columns of every answer, in the CSV's order; NDJSON and GeoJSON
// carry the same fields under the same names.
export const COLUMNS = ['id', 'timestamp', 'sensor_id', 'sensor_type', 'loc_id', 'loc_country',
  'loc_lat', 'loc_long', 'loc_alt', 'P1', 'P2', 'AQI', 'Range'];
// The column a query with `quality` appends (export::FLAGS_COLUMN).
export const FLAGS_COLUMN = 'flags';
// The columns a query with `correction` appends, after the flags
// (export::CORRECTION_COLUMNS); the JSON formats name them alike.
export const CORRECTION_COLUMNS = ['humidity', 'P1_corrected', 'P2_corrected'];
export const PREVIEW_ROWS = 100;

// ------------------------------------------------------------------ CSV

/**
 * The RFC 4180 records of `text` from `from`, each passed to `onRecord` as
 * an array. Returns where it stopped: the text's end, or, unless `final`,
 * the start of the record the text may end inside of (a field, a quote
 * that may be the first of "", a CR that may be followed by its LF), to
 * be parsed again with the text that follows. A record is so parsed
 * exactly as if the text were whole; it is parsed again for each chunk
 * that ends inside it (once, for records far shorter than a chunk).
 */
export function parseCsv(text, onRecord, from = 0, final = true) {
  const n = text.length;
  let i = from;
  while (i < n) {
    const start = i;
    const record = [];
    for (;;) {
      let value;
      if (text.charCodeAt(i) === 34) {
        value = '';
        let j = i + 1;
        for (;;) {
          const q = text.indexOf('"', j);
          if (q < 0) {
            if (!final) return start;
            value += text.slice(j);
            i = n;
            break;
          }
          value += text.slice(j, q);
          if (q + 1 >= n && !final) return start;
          if (text.charCodeAt(q + 1) === 34) {
            value += '"';
            j = q + 2;
          } else {
            i = q + 1;
            break;
          }
        }
      } else {
        let j = i;
        while (j < n) {
          const c = text.charCodeAt(j);
          if (c === 44 || c === 10 || c === 13) break;
          j += 1;
        }
        if (j >= n && !final) return start;
        value = text.slice(i, j);
        i = j;
      }
      record.push(value);
      if (text.charCodeAt(i) === 44) {
        i += 1;
        continue;
      }
      if (text.charCodeAt(i) === 13) {
        i += 1;
        if (i >= n && !final) return start;
      }
      if (text.charCodeAt(i) === 10) i += 1;
      break;
    }
    onRecord(record);
  }
  return i;
}

// ----------------------------------------------------------- NDJSON, GeoJSON

// A JSON field as the CSV would show it: null as an empty cell, a list
// (the flags) as its items separated by spaces.
const cellOf = (v) => {
  if (v === null || v === undefined) return '';
  return Array.isArray(v) ? v.join(' ') : String(v);
};

// Passes a JSON answer's rows to `onRecord` as records in the CSV's column
// order (a reading's, or an aggregate's in the order its first row has
// them), the header first.
function jsonRows(onRecord) {
  let columns = null;
  return (fields) => {
    if (!fields || typeof fields !== 'object') throw new Error('the answer holds something that is not a reading');
    if (columns === null) {
      // A query with `quality` adds the flags, one with `correction` the
      // corrected values (the CSV's last columns).
      if ('period_start' in fields) columns = Object.keys(fields);
      else {
        columns = 'flags' in fields ? [...COLUMNS, FLAGS_COLUMN] : [...COLUMNS];
        if ('P1_corrected' in fields) columns.push(...CORRECTION_COLUMNS);
      }
      onRecord(columns);
    }
    onRecord(columns.map((c) => cellOf(fields[c])));
  };
}

function geoJsonRows(text, take) {
  const doc = JSON.parse(text);
  if (!doc || !Array.isArray(doc.features)) throw new Error('the answer is not a GeoJSON FeatureCollection');
  for (const feature of doc.features) take(feature && feature.properties);
}

// ------------------------------------------------------------- summary

/**
 * Reads an answer in `format` ('csv', 'ndjson', 'geojson') shown with the
 * index `indexKey`: `push` each chunk of its bytes (Uint8Array), then
 * `end` returns the summary the result view draws:
 *   { header (null for an empty answer), rows, aggregate, preview (the
 *     first PREVIEW_ROWS records),
 *     readings: counts (per bar of barsOf(indexKey)), times (the bins of
 *       timechart.js), points (each sensor's latest reading, for the map:
 *       { lat, lon, value, label });
 *     aggregates: series (periodSeries), points (mapPoints) }.
 * Throws (from `push` or `end`) what the answer cannot be read for.
 */
export class AnswerReader {
  constructor(format, indexKey) {
    this.format = format;
    this.indexKey = indexKey;
    this.decoder = new TextDecoder('utf-8');
    // CSV: the text from the record a chunk ended inside of; NDJSON: from
    // the line it ended inside of; GeoJSON: all the text so far.
    this.carry = '';
    this.parts = [];
    this.header = null;
    this.aggregate = false;
    this.rows = 0;
    this.preview = [];
    this.bars = barsOf(indexKey);
    this.counts = new Array(this.bars.length).fill(0);
    this.bands = indexOf(indexKey).bands;
    this.times = binner(this.bands.length);
    this.col = {};
    this.aqiCol = -1;
    // For the map, each sensor's latest reading: { t, record }.
    this.sensors = new Map();
    // An aggregate's rows, whole (a row per period and group).
    this.all = [];
    this.onRecord = (record) => this.record(record);
    this.take = jsonRows(this.onRecord);
  }

  record(record) {
    if (this.header === null) {
      this.header = record;
      this.aggregate = isAggregate(record);
      this.aqiCol = record.indexOf('AQI');
      this.col = Object.fromEntries([...COLUMNS, FLAGS_COLUMN, ...CORRECTION_COLUMNS]
        .map((c) => [c, record.indexOf(c)]));
      return;
    }
    this.rows += 1;
    if (this.preview.length < PREVIEW_ROWS) this.preview.push(record);
    if (this.aggregate) {
      this.all.push(record);
      return;
    }
    const value = indexValue(record[this.aqiCol]);
    const bar = barIndex(this.bars, value);
    if (bar >= 0) this.counts[bar] += 1;
    const t = apiSeconds(record[this.col.timestamp]);
    const band = barIndex(this.bands, value);
    if (t !== null && band >= 0) this.times.add(t, band);
    const id = record[this.col.sensor_id];
    const seen = this.sensors.get(id);
    if (!seen) this.sensors.set(id, { t, record });
    else if (t !== null && t >= seen.t) {
      seen.t = t;
      seen.record = record;
    }
  }

  push(bytes) {
    const text = this.decoder.decode(bytes, { stream: true });
    this.parse(text, false);
  }

  parse(more, final) {
    if (this.format === 'csv') {
      const text = this.carry + more;
      const at = parseCsv(text, this.onRecord, 0, final);
      this.carry = at < text.length ? text.slice(at) : '';
    } else if (this.format === 'ndjson') {
      const lines = (this.carry + more).split('\n');
      this.carry = final ? '' : lines.pop();
      for (const line of lines) {
        if (line.trim() !== '') this.take(JSON.parse(line));
      }
    } else {
      this.parts.push(more);
      if (final) {
        const text = this.parts.join('');
        this.parts = [];
        geoJsonRows(text, this.take);
      }
    }
  }

  end() {
    this.parse(this.decoder.decode(), true);
    const summary = {
      header: this.header,
      rows: this.rows,
      aggregate: this.aggregate,
      preview: this.preview,
    };
    if (this.aggregate) {
      summary.series = periodSeries(this.header, this.all);
      summary.points = mapPoints(this.header, this.all, this.indexKey);
    } else {
      summary.counts = this.counts;
      summary.times = this.times.done();
      summary.points = sensorPoints(this.sensors, this.col, this.indexKey);
    }
    return summary;
  }
}

// The map's points of each sensor's latest reading ({ t, record } by
// sensor id), with the text a point shows.
function sensorPoints(sensors, col, indexKey) {
  const ix = indexOf(indexKey);
  const points = [];
  for (const [id, { record }] of sensors) {
    const value = indexValue(record[col.AQI]);
    const p1 = record[col.P1];
    const p2 = record[col.P2];
    // With `quality`, the reading's flags (none: "no flags").
    const flags = col.flags >= 0 ? (record[col.flags] || '').split(' ').filter(Boolean) : null;
    const quality = flags === null ? '' : ` · ${flags.length ? `flags: ${flags.join(', ')}` : 'no flags'}`;
    // With `correction`, the values the index is computed from.
    const corrected = col.P1_corrected >= 0
      ? ` · corrected PM10 ${record[col.P1_corrected] || '–'} · PM2.5 ${record[col.P2_corrected] || '–'} µg/m³`
        + ` (RH ${record[col.humidity] || 'unknown'} %)`
      : '';
    points.push({
      lat: Number(record[col.loc_lat]),
      lon: Number(record[col.loc_long]),
      value,
      label: `Sensor ${id} (${record[col.sensor_type]}, ${record[col.loc_country]}) · `
        + `${record[col.timestamp]} UTC · PM10 ${p1 || '–'} · PM2.5 ${p2 || '–'} µg/m³ · `
        + (Number.isFinite(value) ? `${ix.short} ${value} (${record[col.Range]})`
          : `no ${ix.short} (${col.P1_corrected >= 0 ? 'no humidity to correct for' : 'too little data'})`)
        + corrected + quality,
    });
  }
  return points;
}

// ------------------------------------------------------------- points

/**
 * Map points ({ lat, lon, value, label } and, for an aggregate's, `cell`:
 * [minLon, minLat, maxLon, maxLat] or null) as columns, to cross to the
 * page cheaply: { lat, lon, value (Float64Arrays), labels, cells (4 a
 * point, a Float64Array) and hasCell (a Uint8Array), or null where the
 * points have no `cell` }. `unpackPoints` gives the points back alike.
 */
export function packPoints(points) {
  const n = points.length;
  const packed = {
    lat: new Float64Array(n),
    lon: new Float64Array(n),
    value: new Float64Array(n),
    labels: new Array(n),
    cells: null,
    hasCell: null,
  };
  if (n && 'cell' in points[0]) {
    packed.cells = new Float64Array(4 * n);
    packed.hasCell = new Uint8Array(n);
  }
  points.forEach((p, i) => {
    packed.lat[i] = p.lat;
    packed.lon[i] = p.lon;
    packed.value[i] = p.value;
    packed.labels[i] = p.label;
    if (packed.cells && p.cell) {
      packed.hasCell[i] = 1;
      packed.cells.set(p.cell, 4 * i);
    }
  });
  return packed;
}

export function unpackPoints(packed) {
  const points = new Array(packed.labels.length);
  for (let i = 0; i < points.length; i += 1) {
    const p = {
      lat: packed.lat[i], lon: packed.lon[i], value: packed.value[i], label: packed.labels[i],
    };
    if (packed.cells) p.cell = packed.hasCell[i] ? Array.from(packed.cells.subarray(4 * i, 4 * i + 4)) : null;
    points[i] = p;
  }
  return points;
}

// The buffers of packed points, to hand over.
export const pointBuffers = (packed) => [packed.lat, packed.lon, packed.value, packed.cells, packed.hasCell]
  .filter(Boolean).map((a) => a.buffer);

// ------------------------------------------------------------- worker

// Run as a worker (result.js starts one per answer), this module answers
// the page's messages; imported by the page, it only exports.
if (typeof WorkerGlobalScope === 'function' && globalThis instanceof WorkerGlobalScope) {
  let reader = null;
  let failed = false;
  globalThis.onmessage = (event) => {
    const m = event.data;
    if (failed) return;
    try {
      if (m.type === 'start') {
        state.indices = { [m.indexKey]: m.index };
        state.defaultIndex = m.indexKey;
        reader = new AnswerReader(m.format, m.indexKey);
        globalThis.postMessage({ type: 'ready' });
      } else if (m.type === 'chunks') {
        for (const bytes of m.chunks) reader.push(bytes);
      } else if (m.type === 'end') {
        finish(null);
      } else if (m.type === 'body') {
        readBody(m.body, m.blobType);
      }
    } catch (e) {
      fail(e);
    }
  };

  const fail = (e) => {
    failed = true;
    reader = null;
    globalThis.postMessage({ type: 'error', message: e && e.message ? e.message : String(e) });
  };

  // The summary to the page, with the answer's bytes as a Blob when this
  // worker read them.
  const finish = (blob) => {
    const summary = reader.end();
    reader = null;
    summary.points = packPoints(summary.points);
    globalThis.postMessage({ type: 'done', summary, blob }, pointBuffers(summary.points));
  };

  // The answer's body itself, handed over by the page (a transferable
  // stream): read here to the end, so that the page's thread does nothing
  // while it downloads but show the progress this posts each second.
  const readBody = async (body, blobType) => {
    const source = body.getReader();
    const chunks = [];
    let received = 0;
    let told = performance.now();
    try {
      for (;;) {
        const { done, value } = await source.read();
        if (done || failed) break;
        chunks.push(value);
        received += value.byteLength;
        reader.push(value);
        if (performance.now() - told >= 1000) {
          told = performance.now();
          globalThis.postMessage({ type: 'progress', received });
        }
      }
      if (!failed) finish(new Blob(chunks, { type: blobType }));
    } catch (e) {
      if (!failed) fail(e);
      source.cancel().catch(() => {});
    }
  };
}
