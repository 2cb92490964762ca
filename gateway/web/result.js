// airq web page: the result view. Reads an answer (CSV, NDJSON or
// GeoJSON) as it downloads, then shows its summary, the bar chart and band
// totals, the map (map.js), the time chart (timechart.js) and the preview
// table (table.js), and keeps its bytes for the Download button.
//
// The answer is parsed off the page's thread, in a worker (parse.js) that
// gives back only what is drawn: a large answer (450,000 readings, 40 MB)
// once froze the page for most of a second while it was parsed, and held
// every reading. The worker is handed the answer's body itself (a
// transferable stream), reads it as it arrives and returns its bytes as a
// Blob (the Download button's), so the page's thread only shows the
// progress. Where a stream cannot be handed over, the page reads the body
// in short tasks: each half MB is copied into a Blob and the chunks
// handed to the worker, yielding every few milliseconds (chunks that have
// already arrived would otherwise be read all in one task). Once parsed,
// the view is drawn a part a task. Where no worker starts (a browser
// without module workers), the page parses the whole answer itself at the
// end with the same code (parse.js's AnswerReader), as it used to.

import { state } from './state.js';
import {
  $, fmtBytes, fmtCompact, fmtInt, moduleWorker, nextTask,
} from './util.js';
import {
  barsOf, bandColours, colourOf, indexOf, rangeText,
} from './indices.js';
import { FIELD_INPUTS, applyPlace, describe } from './form.js';
import { setStatus, stopElapsed, titleWhileHidden } from './status.js';
import { drawTable } from './table.js';
import { create as createMap } from './map.js';
// One SVG element maker and one axis-step rule for both charts: the time
// chart's.
import { drawBinned, niceStep, svg } from './timechart.js';
import { drawSeries, pm25Colour } from './aggregate.js';
import { AnswerReader, COLUMNS, unpackPoints } from './parse.js';

// How often, at most, the status line says how much of an answer has
// come (it is a live region: a screen reader reads each change).
const PROGRESS_MS = 1000;
// The downloaded bytes go into a Blob, and then to the worker, this many
// at a time: each Blob copies them (a Blob's bytes are the browser's, not
// the page's heap), in a few milliseconds at most.
const BATCH_BYTES = 512 * 1024;
// The longest the reading runs before it lets the page do something else.
const SLICE_MS = 8;

function filenameFrom(headers, ext) {
  const cd = headers.get('Content-Disposition') || '';
  const m = /filename="?([^";]+)"?/i.exec(cd);
  const name = m ? m[1].replace(/[^A-Za-z0-9._-]/g, '') : '';
  return name || `airq-result.${ext}`;
}

// ------------------------------------------------------------- reading

// The answer being read, if any: { stop() } ends it (a newer flow's
// hideResult does).
let reading = null;

// A worker (parse.js) to read an answer in `format` shown with the index
// `indexKey`: { worker, started, outcome, onProgress, stop(word) };
// `started` resolves to whether it runs (it said 'ready'), `outcome` to
// its last word: { type: 'done', summary, blob }, { type: 'error', message }
// (the answer could not be read), { type: 'failed' } (the worker itself
// failed: it did not load, say) or { type: 'stopped' }; `onProgress`, if
// set, is called with the bytes it has read of a body handed to it. Null
// where none can be started.
// Its URL is the page's (index.html's data-parser), which the gateway pins
// to the module's version as it pins the page's other links.
function startWorker(format, indexKey) {
  const worker = moduleWorker($('results').dataset.parser);
  if (!worker) return null;
  let settle;
  const outcome = new Promise((resolve) => { settle = resolve; });
  let ready;
  const started = new Promise((resolve) => { ready = resolve; });
  const handle = { worker, outcome, started, onProgress: null };
  worker.onmessage = (event) => {
    const word = event.data || {};
    if (word.type === 'ready') ready(true);
    else if (word.type === 'progress') { if (handle.onProgress) handle.onProgress(word.received); } else settle(word);
  };
  outcome.then(() => ready(false));
  // An error the worker did not catch: it failed to load or to run. Not
  // the page's error (the page reads the answer itself instead).
  worker.onerror = (event) => {
    event.preventDefault();
    settle({ type: 'failed' });
  };
  worker.onmessageerror = () => settle({ type: 'failed' });
  worker.postMessage({
    type: 'start', format, indexKey, index: indexOf(indexKey),
  });
  handle.stop = (word) => {
    worker.terminate();
    settle(word);
  };
  return handle;
}

/**
 * Reads the answer `resp` (a 200) as it comes, showing in the status line
 * how much has: its bytes go to a worker that parses them, and are kept
 * for the Download button. Resolves to the answer for showResult, or to
 * null when it is no longer wanted (`wanted()` turned false, or a newer
 * flow hid the result): its reading and its worker are stopped then.
 * Rejects with why the answer could not be read (a line that is not
 * JSON, say: flow.js shows it as the query's failure), or with the
 * fetch's error (its AbortError when a newer flow aborted it).
 */
export async function readAnswer(resp, wanted) {
  const headers = resp.headers;
  // The answer says what it is: its format by its type, its index by
  // X-Airq-Index (a result opened from a link may not be the form's).
  const type = (headers.get('Content-Type') || '').split(';')[0].trim().toLowerCase();
  const format = Object.keys(state.formats).find((f) => state.formats[f].type === type) || state.defaultFormat;
  const said = (headers.get('X-Airq-Index') || '').trim();
  const shownQuery = state.shownQuery;
  const indexKey = state.indices[said] ? said : ((shownQuery && state.indices[shownQuery.index]) ? shownQuery.index : state.defaultIndex);
  // The length the bytes will add up to, when the server says it: not for
  // a compressed answer (its Content-Length counts the compressed bytes).
  const encoding = (headers.get('Content-Encoding') || 'identity').trim().toLowerCase();
  const length = Number(headers.get('Content-Length'));
  const total = encoding === 'identity' && length > 0 ? length : 0;

  if (reading) reading.stop();
  const parser = startWorker(format, indexKey);
  let body = null;
  let stopped = false;
  const me = {
    stop() {
      stopped = true;
      if (body) body.cancel().catch(() => {});
      else if (resp.body && !resp.body.locked) resp.body.cancel().catch(() => {});
      if (parser) parser.stop({ type: 'stopped' });
    },
  };
  reading = me;
  const isWanted = () => !stopped && wanted();
  // Once the worker runs, it is handed the body itself where streams can
  // be handed over (it then reads the whole answer, and the page's thread
  // only shows its progress); else the page reads the body and passes
  // the bytes on.
  let handed = false;
  if (parser && resp.body && await parser.started && isWanted()) {
    try {
      parser.worker.postMessage(
        { type: 'body', body: resp.body, blobType: state.formats[format].type }, [resp.body],
      );
      handed = true;
    } catch (e) { /* a browser that cannot hand a stream over */ }
  }
  // What has come so far, in the status line (at most once a second).
  let received = 0;
  let progressed = false;
  const tell = () => {
    progressed = true;
    $('status-text').textContent = total
      ? `Receiving the answer: ${fmtBytes(received)} of ${fmtBytes(total)}…`
      : `Receiving the answer: ${fmtBytes(received)} so far…`;
  };
  if (handed) {
    parser.onProgress = (bytes) => {
      received = bytes;
      if (isWanted()) tell();
    };
  }
  if (!handed && resp.body && !stopped) body = resp.body.getReader();
  // The worker's first word ends what it is sent; an answer it cannot
  // read is not downloaded further.
  let workerAlive = Boolean(parser);
  let failure = null;
  if (parser) {
    parser.outcome.then((word) => {
      workerAlive = false;
      if (word.type !== 'error') return;
      failure = word.message;
      if (body) body.cancel().catch(() => {});
    });
  }
  let waiting = null;
  try {
    const parts = [];
    let pending = [];
    let pendingBytes = 0;
    // The pending bytes into the Blob's parts (a copy), then to the worker
    // (handed over: its buffers are the worker's then).
    const flush = () => {
      if (!pending.length) return;
      parts.push(new Blob(pending));
      if (workerAlive) {
        const buffers = [...new Set(pending.map((c) => c.buffer))];
        parser.worker.postMessage({ type: 'chunks', chunks: pending }, buffers);
      }
      pending = [];
      pendingBytes = 0;
    };
    let toldAt = performance.now();
    let slice = performance.now();
    while (body) {
      const { done, value } = await body.read();
      if (!isWanted()) {
        me.stop();
        return null;
      }
      if (done || failure !== null) break;
      received += value.byteLength;
      pending.push(value);
      pendingBytes += value.byteLength;
      if (pendingBytes >= BATCH_BYTES) flush();
      const now = performance.now();
      if (now - toldAt >= PROGRESS_MS) {
        toldAt = now;
        tell();
      }
      if (now - slice >= SLICE_MS) {
        await nextTask();
        slice = performance.now();
      }
    }
    let receivedAt = Date.now();
    if (failure !== null) throw new Error(failure);
    flush();
    let blob = new Blob(parts, { type: state.formats[format].type });

    let word = { type: 'failed' };
    if (parser) {
      if (workerAlive && !handed) parser.worker.postMessage({ type: 'end' });
      // The worker may lag behind a fast download by a second or so (a
      // body handed over: the worker says how much has come instead).
      if (!handed) {
        waiting = setTimeout(() => {
          if (isWanted()) $('status-text').textContent = `Received ${fmtBytes(received)}; reading it…`;
        }, progressed ? 0 : 500);
      }
      word = await parser.outcome;
      // A body handed over is downloaded when the worker is done with it.
      if (handed) receivedAt = Date.now();
      parser.stop({ type: 'stopped' });
    }
    if (!isWanted() || word.type === 'stopped') {
      me.stop();
      return null;
    }
    if (word.type === 'error') throw new Error(word.message);
    let summary;
    if (word.type === 'done') {
      // Its points, in the task that took its message; the view is drawn
      // from the next.
      summary = word.summary;
      summary.points = unpackPoints(summary.points);
      if (handed) blob = word.blob;
      await nextTask();
      if (!isWanted()) return null;
    } else if (handed) {
      // The worker had the body, and stopped without a word: the bytes
      // went with it.
      throw new Error('the page stopped reading the answer; submit the query again');
    } else {
      // No worker: read here, the whole answer at once.
      const bytes = new Uint8Array(await blob.arrayBuffer());
      if (!isWanted()) return null;
      const reader = new AnswerReader(format, indexKey);
      reader.push(bytes);
      summary = reader.end();
    }
    // Which thread read it, for the browser test.
    $('result').dataset.readBy = word.type === 'done' ? 'worker' : 'page';
    return {
      summary, blob, headers, format, indexKey, receivedAt,
    };
  } finally {
    clearTimeout(waiting);
    if (parser) parser.stop({ type: 'stopped' });
    if (reading === me) reading = null;
  }
}

// ------------------------------------------------------- result view

let current = null; // { url, filename, size }

// Counts the results shown (hideResult too): a result drawn over several
// tasks stops when a newer flow has hidden it.
let shown = 0;

export function hideResult() {
  // A newer flow: the answer still being read or drawn is not wanted, nor
  // the bytes of the one shown (up to tens of MB), kept for its Download.
  shown += 1;
  if (reading) reading.stop();
  if (current) URL.revokeObjectURL(current.url);
  current = null;
  $('result').hidden = true;
  stopElapsed();
}

// The chart's state, for redrawing it at another width.
let chartState = null;
let chartWidth = 0;

/**
 * Shows an answer as readAnswer gives it; `how` says how it came. Drawn a
 * part a task (the summary and the bar chart, the map, the time chart,
 * the table), done when it resolves; it stops if a newer flow hides the
 * result meanwhile.
 */
export async function showResult(answer, how) {
  const my = ++shown;
  stopElapsed();
  const {
    summary, blob, headers, format, indexKey,
  } = answer;
  const {
    header, rows, aggregate, preview,
  } = summary;
  const shownQuery = state.shownQuery;
  const declared = headers.get('X-Airq-Rows');
  if (declared !== null && Number(declared) !== rows) {
    console.warn(`airq: the server counted ${declared} rows, the page ${rows}`);
  }

  if (current) URL.revokeObjectURL(current.url);
  current = { url: URL.createObjectURL(blob), filename: filenameFrom(headers, state.formats[format].ext), size: blob.size };

  const result = $('result');
  result.dataset.rows = String(rows);
  result.dataset.filename = current.filename;
  result.dataset.format = format;
  result.dataset.index = indexKey;
  $('row-count').textContent = fmtInt(rows);
  $('row-label').textContent = aggregate ? (rows === 1 ? 'row of statistics' : 'rows of statistics')
    : (rows === 1 ? 'reading' : 'readings');
  $('answer').textContent = `· ${how}`;
  $('query-desc').textContent = describe(shownQuery);
  $('query-desc').hidden = !shownQuery;
  const label = `Download ${state.formats[format].label}`;
  $('download').textContent = label;
  $('download').setAttribute('aria-label', `${label} (${current.filename}, ${fmtBytes(blob.size)})`);
  // What the parts drawn later show meanwhile: nothing of the result
  // before.
  $('map').hidden = true;
  $('timechart').replaceChildren();
  $('preview').tHead.replaceChildren();
  $('preview').tBodies[0].replaceChildren();
  result.hidden = false;
  result.dataset.aggregate = String(aggregate);
  $('chart').closest('figure').hidden = aggregate;
  const steps = aggregate
    ? [() => {
      chartState = null;
      showAggregate(summary.series, summary.points, indexKey);
    }]
    : [
      () => {
        chartState = { counts: summary.counts, indexKey };
        drawChart(summary.counts, indexKey);
        drawBands(summary.counts, rows, indexKey);
      },
      () => {
        mapTitle = mapTitle ?? $('map-title').textContent;
        $('map-title').textContent = mapTitle;
        $('map').hidden = false;
        drawMap(summary.points, indexKey);
      },
      () => drawTimeChart(summary.times, indexKey),
    ];
  steps.push(() => drawTable(header || COLUMNS, preview, rows, indexKey));
  for (const [i, step] of steps.entries()) {
    if (i > 0) {
      await nextTask();
      if (my !== shown) return;
    }
    step();
  }
  const what = aggregate
    ? `${fmtInt(rows)} ${rows === 1 ? 'row' : 'rows'} of statistics`
    : `${fmtInt(rows)} ${rows === 1 ? 'reading' : 'readings'}`;
  setStatus('done', rows ? `Done: ${what}.` : 'Done: no reading matches this query.');
  // Seen from another tab: the tab's title says it is done.
  titleWhileHidden(`Done (${rows ? what : 'no readings'}) · airq`);
}

// The map's caption for readings (an aggregate's replaces it).
let mapTitle = null;

// An aggregate's views: the period series, and the map where its groups
// have a place (cells and sensors); both made by the worker from the rows
// (aggregate.js's periodSeries and mapPoints).
function showAggregate(series, points, indexKey) {
  mapTitle = mapTitle ?? $('map-title').textContent;
  drawSeries($('timechart'), series, indexKey);
  $('timechart-title').textContent = `PM2.5 mean per period (µg/m³) over the ${indexOf(indexKey).short} bands; grey bars: coverage`;
  $('map').hidden = points.length === 0;
  if (points.length) {
    if (!map) drawMap([], indexKey);
    const legend = indexOf(indexKey).bands.map((b) => ({
      colour: colourOf(indexKey)(b.hi), label: `${b.name}: PM2.5 from ${b.pm25From} µg/m³`,
    }));
    map.setPoints(points, pm25Colour(indexKey), legend);
    $('map-title').textContent = 'Where: each group’s PM2.5 mean in its latest period, coloured by the band it falls in';
  }
}

let map = null;

// The map of each sensor's latest reading (`points`, made by the worker:
// { lat, lon, value, label }).
function drawMap(points, indexKey) {
  if (!map) {
    map = createMap($('map'), { onBox: boxToForm });
    $('map-zoom-in').addEventListener('click', () => map.zoom(1.5));
    $('map-zoom-out').addEventListener('click', () => map.zoom(1 / 1.5));
    $('map-box').addEventListener('click', () => map.startBox());
  }
  const shownIx = indexOf(indexKey);
  const legend = shownIx.valueColours.length
    ? shownIx.valueColours.map((colour, i) => {
      const v = shownIx.min + i;
      return { colour, label: `${v} (${shownIx.bands.find((b) => v <= b.hi).name})` };
    })
    : bandColours(indexKey);
  map.setPoints(points, colourOf(indexKey), legend);
}

// A box drawn on the map becomes the query's place filter.
function boxToForm(box) {
  $('placeKind').value = 'bbox';
  applyPlace();
  FIELD_INPUTS.bbox.forEach((id, i) => { $(id).value = String(box[i]); });
  $('map').querySelector('.map-live').textContent = `The query's box is now longitudes ${box[0]} to ${box[2]}, latitudes ${box[1]} to ${box[3]}.`;
}

// The time chart of the readings' bins (binned by the worker).
function drawTimeChart(bins, indexKey) {
  const data = drawBinned($('timechart'), bins, bandColours(indexKey));
  $('timechart-title').textContent = `Readings per ${data.bin === 86400 ? 'day' : 'hour'} (UTC), stacked by ${indexOf(indexKey).short} band`;
}

export function download() {
  if (!current) return;
  const a = document.createElement('a');
  a.href = current.url;
  a.download = current.filename;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
}

// --- chart

// The chart's width where it is shown now.
const chartWidthNow = () => Math.round(Math.min(640, Math.max(300, $('chart').clientWidth || 640)));

// Drawn at the width it is shown at, so its text stays legible on a
// phone; redrawn when that width changes. One bar per DAQI value (in the
// DAQI's colours, with the bands bracketed under them), or one per band
// of the other indices (in their colours, named under them when there
// is room, and always in the list below the chart).
function drawChart(counts, indexKey) {
  const ix = indexOf(indexKey);
  const bars = barsOf(indexKey);
  const perValue = indexOf(indexKey).valueColours.length > 0;
  const bandOf = (value) => ix.bands.find((b) => value >= b.lo && value <= b.hi);
  const W = chartWidthNow();
  chartWidth = W;
  const narrow = W < 480;
  const fs = narrow ? 11 : 12;
  const fmtCount = narrow ? fmtCompact : fmtInt;
  const H = narrow ? 260 : 300;
  const left = narrow ? 46 : 60;
  const right = 10;
  const top = 26;
  const bottom = narrow ? 80 : 66;
  const plotW = W - left - right;
  const plotH = H - top - bottom;
  const step = niceStep(Math.max(...counts));
  const scale = step * 4;
  const base = top + plotH;
  const unit = perValue ? `${ix.short} value` : `${ix.name} band`;
  $('chart-caption').textContent = perValue
    ? `Readings per ${unit}, grouped by band`
    : `Readings per ${unit}`;
  const root = svg('svg', {
    viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': 'chart-title chart-desc', focusable: 'false',
  });
  root.append(
    svg('title', { id: 'chart-title' }, `Readings per ${unit}`),
    svg('desc', { id: 'chart-desc' }, counts.map((c, i) => `${ix.short} ${bars[i].label} (${bandOf(bars[i].lo).name}): ${c}`).join('; ')),
  );
  for (let k = 0; k <= 4; k += 1) {
    const y = base - (plotH * k) / 4;
    if (k > 0) root.append(svg('line', { class: 'grid-line', x1: left, x2: W - right, y1: y, y2: y }));
    root.append(svg('text', { x: left - 6, y: y + 4, 'text-anchor': 'end', 'font-size': fs }, fmtCount(step * k)));
  }
  const slot = plotW / bars.length;
  const barW = slot * 0.72;
  counts.forEach((count, i) => {
    const b = bars[i];
    const h = count > 0 ? Math.max(1.5, (count / scale) * plotH) : 0;
    const x = left + i * slot + (slot - barW) / 2;
    const band = bandOf(b.lo).name;
    const bar = svg('rect', {
      class: 'bar', x, y: base - h, width: barW, height: h, fill: b.colour,
      stroke: '#57606a', 'stroke-width': count > 0 ? 0.75 : 0,
      'data-index': i + 1, 'data-count': count, 'data-band': band,
    });
    bar.append(svg('title', {}, `${ix.short} ${b.label} (${band}): ${fmtInt(count)} readings`));
    root.append(bar);
    root.append(svg('text', {
      x: x + barW / 2, y: base - h - 6, 'text-anchor': 'middle', 'font-size': fs, class: 'count',
    }, fmtCount(count)));
    // A value range such as 301–500 is wider than a digit: smaller, so
    // that six of them fit side by side on a phone.
    const labelSize = b.label.length > 3 && narrow ? 10 : 13;
    root.append(svg('text', {
      x: x + barW / 2, y: base + 17, 'text-anchor': 'middle', 'font-size': labelSize, 'font-weight': 600,
    }, b.label));
    if (!perValue && !narrow) {
      root.append(svg('text', {
        x: x + barW / 2, y: base + 36, 'text-anchor': 'middle', 'font-size': fs,
      }, b.abbr));
    }
  });
  root.append(svg('line', { class: 'axis', x1: left, x2: W - right, y1: base, y2: base }));
  if (perValue) {
    for (const b of ix.bands) {
      const x1 = left + (b.lo - 1) * slot + 4;
      const x2 = left + b.hi * slot - 4;
      const y = base + 30;
      root.append(svg('line', { class: 'band-line', x1, x2, y1: y, y2: y }));
      root.append(svg('line', { class: 'band-line', x1, x2: x1, y1: y - 5, y2: y }));
      root.append(svg('line', { class: 'band-line', x1: x2, x2, y1: y - 5, y2: y }));
      // The last band is one bar wide: its name ends at the plot's edge,
      // a line lower when narrow so that it clears its neighbour's.
      const last = b.hi === ix.max;
      root.append(svg('text', {
        x: last ? W - 2 : (x1 + x2) / 2,
        y: y + 17 + (last && narrow ? 15 : 0),
        'text-anchor': last ? 'end' : 'middle',
        'font-size': fs + 1,
      }, b.name));
    }
  }
  root.append(svg('text', { x: 4, y: 14, 'font-size': fs }, 'readings'));
  $('chart').replaceChildren(root);
}

// Redraws the chart of the result shown when the width it is shown at
// has changed (the window was resized).
export function fitChart() {
  if (!chartState || $('result').hidden) return;
  if (chartWidthNow() !== chartWidth) drawChart(chartState.counts, chartState.indexKey);
}

function drawBands(counts, total, indexKey) {
  const ix = indexOf(indexKey);
  const bars = barsOf(indexKey);
  const items = ix.bands.map((b) => {
    let n = 0;
    const li = document.createElement('li');
    li.dataset.band = b.name;
    bars.forEach((bar, i) => {
      if (bar.lo < b.lo || bar.hi > b.hi) return;
      n += counts[i];
      const sw = document.createElement('span');
      sw.className = 'swatch';
      sw.style.background = bar.colour;
      sw.setAttribute('aria-hidden', 'true');
      li.append(sw);
    });
    const share = total ? (n / total) * 100 : 0;
    const pct = !total ? '' : ` (${share > 0 && share < 1 ? '<1' : Math.round(share)}%)`;
    li.append(` ${b.name} (${rangeText(b)}): ${fmtInt(n)}${pct}`);
    return li;
  });
  $('bands').replaceChildren(...items);
}
