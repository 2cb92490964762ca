// airq web page: the result view. Reads an answer (CSV, NDJSON or
// GeoJSON) once, then shows its summary, the bar chart and band totals,
// the map (map.js), the time chart (timechart.js) and the preview table
// (table.js), and keeps its bytes for the Download button.

import { state } from './state.js';
import { $, apiSeconds, fmtBytes, fmtCompact, fmtInt } from './util.js';
import {
  barIndex, barsOf, bandColours, colourOf, indexOf, indexValue, rangeText,
} from './indices.js';
import { FIELD_INPUTS, applyPlace, describe } from './form.js';
import { setStatus, stopElapsed } from './status.js';
import { drawTable } from './table.js';
import { create as createMap } from './map.js';
// One SVG element maker and one axis-step rule for both charts: the time
// chart's.
import { draw as drawTimes, niceStep, svg } from './timechart.js';
import {
  drawSeries, isAggregate, mapPoints, periodSeries, pm25Colour,
} from './aggregate.js';

// The columns of every answer, in the CSV's order; NDJSON and GeoJSON
// carry the same fields under the same names.
const COLUMNS = ['id', 'timestamp', 'sensor_id', 'sensor_type', 'loc_id', 'loc_country',
  'loc_lat', 'loc_long', 'loc_alt', 'P1', 'P2', 'AQI', 'Range'];
const PREVIEW_ROWS = 100;

// ------------------------------------------------------------------ CSV

// RFC 4180 records of `text`, each passed to `onRecord` as an array.
function parseCsv(text, onRecord) {
  const n = text.length;
  let i = 0;
  while (i < n) {
    const record = [];
    for (;;) {
      let value;
      if (text.charCodeAt(i) === 34) {
        value = '';
        let j = i + 1;
        for (;;) {
          const q = text.indexOf('"', j);
          if (q < 0) {
            value += text.slice(j);
            i = n;
            break;
          }
          value += text.slice(j, q);
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
        value = text.slice(i, j);
        i = j;
      }
      record.push(value);
      if (text.charCodeAt(i) === 44) {
        i += 1;
        continue;
      }
      if (text.charCodeAt(i) === 13) i += 1;
      if (text.charCodeAt(i) === 10) i += 1;
      break;
    }
    onRecord(record);
  }
}

function filenameFrom(headers, ext) {
  const cd = headers.get('Content-Disposition') || '';
  const m = /filename="?([^";]+)"?/i.exec(cd);
  const name = m ? m[1].replace(/[^A-Za-z0-9._-]/g, '') : '';
  return name || `airq-result.${ext}`;
}

// ----------------------------------------------------------- NDJSON, GeoJSON

// A JSON field as the CSV would show it: null as an empty cell.
const cellOf = (v) => (v === null || v === undefined ? '' : String(v));

// The rows of an NDJSON or GeoJSON answer as records in the CSV's
// column order (a reading's, or an aggregate's in the order its first row
// has them), the header first, each passed to `onRecord`.
function parseJsonAnswer(text, format, onRecord) {
  let columns = null;
  const take = (fields) => {
    if (!fields || typeof fields !== 'object') throw new Error('the answer holds something that is not a reading');
    if (columns === null) {
      columns = 'period_start' in fields ? Object.keys(fields) : COLUMNS;
      onRecord(columns);
    }
    onRecord(columns.map((c) => cellOf(fields[c])));
  };
  if (format === 'ndjson') {
    for (const line of text.split('\n')) {
      if (line.trim() !== '') take(JSON.parse(line));
    }
  } else {
    const doc = JSON.parse(text);
    if (!doc || !Array.isArray(doc.features)) throw new Error('the answer is not a GeoJSON FeatureCollection');
    for (const feature of doc.features) take(feature && feature.properties);
  }
}

// ------------------------------------------------------- result view

let current = null; // { url, filename, size }

export function hideResult() {
  $('result').hidden = true;
  stopElapsed();
}

// The chart's state, for redrawing it at another width.
let chartState = null;
let chartWidth = 0;

export function showResult(buf, headers, how) {
  stopElapsed();
  const bytes = new Uint8Array(buf);
  const text = new TextDecoder('utf-8').decode(bytes);
  // The answer says what it is: its format by its type, its index by
  // X-Airq-Index (a result opened from a link may not be the form's).
  const type = (headers.get('Content-Type') || '').split(';')[0].trim().toLowerCase();
  const format = Object.keys(state.formats).find((f) => state.formats[f].type === type) || state.defaultFormat;
  const said = (headers.get('X-Airq-Index') || '').trim();
  const shownQuery = state.shownQuery;
  const indexKey = state.indices[said] ? said : ((shownQuery && state.indices[shownQuery.index]) ? shownQuery.index : state.defaultIndex);
  const bars = barsOf(indexKey);
  const counts = new Array(bars.length).fill(0);
  const preview = [];
  let header = null;
  let aqiCol = -1;
  let col = {};
  let rows = 0;
  // For the map, each sensor's latest reading; for the time chart, every
  // reading's time and band.
  const sensors = new Map();
  const times = [];
  const bandsOf = [];
  const ix = indexOf(indexKey);
  const onRecord = (record) => {
    if (header === null) {
      header = record;
      aqiCol = record.indexOf('AQI');
      col = Object.fromEntries(COLUMNS.map((c) => [c, record.indexOf(c)]));
      return;
    }
    rows += 1;
    if (preview.length < PREVIEW_ROWS) preview.push(record);
    const value = indexValue(record[aqiCol]);
    const bar = barIndex(bars, value);
    if (bar >= 0) counts[bar] += 1;
    const t = apiSeconds(record[col.timestamp]);
    const band = ix.bands.findIndex((b) => value >= b.lo && value <= b.hi);
    if (t !== null && band >= 0) {
      times.push(t);
      bandsOf.push(band);
    }
    const id = record[col.sensor_id];
    const seen = sensors.get(id);
    if (!seen || (t !== null && t >= seen.t)) sensors.set(id, { t, record });
  };
  // An aggregate's rows are kept whole (a row per period and group).
  const all = [];
  const onAny = (record) => {
    if (header === null && isAggregate(record)) {
      header = record;
      return;
    }
    if (header !== null && isAggregate(header)) {
      rows += 1;
      all.push(record);
      if (preview.length < PREVIEW_ROWS) preview.push(record);
      return;
    }
    onRecord(record);
  };
  if (format === 'csv') parseCsv(text, onAny);
  else parseJsonAnswer(text, format, onAny);
  const aggregate = isAggregate(header);
  const declared = headers.get('X-Airq-Rows');
  if (declared !== null && Number(declared) !== rows) {
    console.warn(`airq: the server counted ${declared} rows, the page ${rows}`);
  }

  if (current) URL.revokeObjectURL(current.url);
  const blob = new Blob([bytes], { type: state.formats[format].type });
  current = { url: URL.createObjectURL(blob), filename: filenameFrom(headers, state.formats[format].ext), size: bytes.length };

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
  $('download').setAttribute('aria-label', `${label} (${current.filename}, ${fmtBytes(bytes.length)})`);
  result.hidden = false;
  result.dataset.aggregate = String(aggregate);
  $('chart').closest('figure').hidden = aggregate;
  if (aggregate) {
    chartState = null;
    showAggregate(header, all, indexKey);
  } else {
    chartState = { counts, indexKey };
    mapTitle = mapTitle ?? $('map-title').textContent;
    $('map-title').textContent = mapTitle;
    $('map').hidden = false;
    drawMap(sensors, col, indexKey);
    drawTimeChart(times, bandsOf, indexKey);
    drawChart(counts, indexKey);
    drawBands(counts, rows, indexKey);
  }
  drawTable(header || COLUMNS, preview, rows, indexKey);
  setStatus('done', rows ? 'Done.' : 'Done: no reading matches this query.');
}

// The map's caption for readings (an aggregate's replaces it).
let mapTitle = null;

// An aggregate's views: the period series, and the map where its groups
// have a place (cells and sensors).
function showAggregate(header, records, indexKey) {
  mapTitle = mapTitle ?? $('map-title').textContent;
  const series = periodSeries(header, records);
  drawSeries($('timechart'), series, indexKey);
  $('timechart-title').textContent = `PM2.5 mean per period (µg/m³) over the ${indexOf(indexKey).short} bands; grey bars: coverage`;
  const points = mapPoints(header, records, indexKey);
  $('map').hidden = points.length === 0;
  if (points.length) {
    if (!map) drawMap(new Map(), {}, indexKey);
    const legend = indexOf(indexKey).bands.map((b) => ({
      colour: colourOf(indexKey)(b.hi), label: `${b.name}: PM2.5 from ${b.pm25From} µg/m³`,
    }));
    map.setPoints(points, pm25Colour(indexKey), legend);
    $('map-title').textContent = 'Where: each group’s PM2.5 mean in its latest period, coloured by the band it falls in';
  }
}

let map = null;

function drawMap(sensors, col, indexKey) {
  if (!map) {
    map = createMap($('map'), { onBox: boxToForm });
    $('map-zoom-in').addEventListener('click', () => map.zoom(1.5));
    $('map-zoom-out').addEventListener('click', () => map.zoom(1 / 1.5));
    $('map-box').addEventListener('click', () => map.startBox());
  }
  const ix = indexOf(indexKey);
  const points = [];
  for (const [id, { record }] of sensors) {
    const value = indexValue(record[col.AQI]);
    const p1 = record[col.P1];
    const p2 = record[col.P2];
    points.push({
      lat: Number(record[col.loc_lat]),
      lon: Number(record[col.loc_long]),
      value,
      label: `Sensor ${id} (${record[col.sensor_type]}, ${record[col.loc_country]}) · `
        + `${record[col.timestamp]} UTC · PM10 ${p1 || '–'} · PM2.5 ${p2 || '–'} µg/m³ · `
        + (Number.isFinite(value) ? `${ix.short} ${value} (${record[col.Range]})` : `no ${ix.short} (too little data)`),
    });
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

function drawTimeChart(times, bandsOf, indexKey) {
  const data = drawTimes($('timechart'), times, bandsOf, bandColours(indexKey));
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
