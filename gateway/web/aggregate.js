// airq web page: an aggregate answer (a query with `aggregate`): the
// period series of the PM2.5 mean drawn over the index's bands (where each
// band begins in µg/m³, from GET /api/meta), each period's coverage under
// it, and the map of the groups' means (a 0.25° square per cell, a point
// per sensor). The columns are the server's (common/core/src/aggregate.rs).

import { indexOf, colourOf, NO_INDEX_COLOUR } from './indices.js';
import { dataTable, niceStep, svg } from './timechart.js';
import { apiSeconds, fmtInt } from './util.js';

// Whether an answer's columns are an aggregate's.
export const isAggregate = (header) => Array.isArray(header) && header[0] === 'period_start';

const num = (cell) => (cell === '' || cell === undefined || cell === null ? NaN : Number(cell));

// The band (of `indexKey`) a PM2.5 concentration falls in, or null.
export function bandOfPm25(indexKey, ugm3) {
  if (!Number.isFinite(ugm3)) return null;
  const bands = indexOf(indexKey).bands;
  let found = null;
  for (const b of bands) if (ugm3 >= b.pm25From) found = b;
  return found;
}

// The colour of a PM2.5 concentration: its band's.
export function pm25Colour(indexKey) {
  const colour = colourOf(indexKey);
  return (ugm3) => {
    const b = bandOfPm25(indexKey, ugm3);
    return b ? colour(b.hi) : NO_INDEX_COLOUR;
  };
}

/**
 * Per period, in time order: { t, label, mean (the PM2.5 means of its
 * rows weighted by their readings), coverage (the rows' coverage weighted
 * by their sensors), readings }.
 */
export function periodSeries(header, records) {
  const col = Object.fromEntries(header.map((h, i) => [h, i]));
  const byPeriod = new Map();
  for (const r of records) {
    const key = r[col.period_start];
    let p = byPeriod.get(key);
    if (!p) {
      p = { t: apiSeconds(key), label: key, sum: 0, weight: 0, cov: 0, sensors: 0, readings: 0 };
      byPeriod.set(key, p);
    }
    const readings = num(r[col.readings]) || 0;
    const sensors = num(r[col.sensors]) || 0;
    const mean = num(r[col.P2_mean]);
    if (Number.isFinite(mean)) {
      p.sum += mean * readings;
      p.weight += readings;
    }
    p.cov += (num(r[col.coverage]) || 0) * sensors;
    p.sensors += sensors;
    p.readings += readings;
  }
  return [...byPeriod.values()]
    .sort((a, b) => a.t - b.t)
    .map((p) => ({
      t: p.t,
      label: p.label,
      mean: p.weight ? p.sum / p.weight : NaN,
      coverage: p.sensors ? p.cov / p.sensors : NaN,
      readings: p.readings,
    }));
}

// "2024-03" for a month, "2024" for a year, the day or the hour otherwise.
function shortLabel(label, period) {
  if (period === 'year') return label.slice(0, 4);
  if (period === 'month') return label.slice(0, 7);
  if (period === 'day') return label.slice(0, 10);
  return label.slice(0, 16);
}

// The period of a series from its spacing (for labels).
function periodOf(series) {
  if (series.length < 2) return 'day';
  const gap = series[1].t - series[0].t;
  if (gap <= 3600) return 'hour';
  if (gap <= 86400) return 'day';
  if (gap <= 31 * 86400) return 'month';
  return 'year';
}

/**
 * Draws the series into `host`: the band stripes, the mean's line and
 * points (each with its text), the coverage bars under the plot. Returns
 * the series' text summary (for the figure's description).
 */
export function drawSeries(host, series, indexKey) {
  host.replaceChildren();
  host.dataset.periods = String(series.length);
  if (!series.length) return '';
  const ix = indexOf(indexKey);
  const colour = colourOf(indexKey);
  const period = periodOf(series);
  const W = Math.round(Math.min(640, Math.max(300, host.clientWidth || 640)));
  const narrow = W < 480;
  const H = narrow ? 260 : 300;
  const left = narrow ? 46 : 60;
  const right = 10;
  const top = 16;
  const coverageH = 28;
  const bottom = 40 + coverageH;
  const plotW = W - left - right;
  const plotH = H - top - bottom;
  const means = series.map((p) => p.mean).filter(Number.isFinite);
  const step = niceStep(Math.max(1, ...means.map(Math.ceil)));
  const scale = step * 4;
  const yOf = (v) => top + plotH - (Math.min(v, scale) / scale) * plotH;
  const text = series.map((p) => {
    const b = bandOfPm25(indexKey, p.mean);
    const mean = Number.isFinite(p.mean) ? `PM2.5 ${p.mean.toFixed(2)} µg/m³${b ? ` (${b.name})` : ''}` : 'no PM2.5';
    const cov = Number.isFinite(p.coverage) ? `, coverage ${p.coverage.toFixed(1)} %` : '';
    return `${shortLabel(p.label, period)}: ${mean}${cov}, ${fmtInt(p.readings)} readings`;
  });
  const root = svg('svg', {
    viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-labelledby': 'agg-title agg-desc',
  });
  root.append(
    svg('title', { id: 'agg-title' }, `PM2.5 mean per ${period} over the ${ix.short} bands, and coverage`),
    svg('desc', { id: 'agg-desc' }, text.join('; ')),
  );
  // The bands behind, where each begins in µg/m³.
  ix.bands.forEach((b, i) => {
    const from = b.pm25From;
    const to = i + 1 < ix.bands.length ? ix.bands[i + 1].pm25From : Infinity;
    if (from >= scale) return;
    const y0 = yOf(Math.min(to, scale));
    const y1 = yOf(from);
    root.append(svg('rect', {
      x: left, y: y0, width: plotW, height: Math.max(0, y1 - y0),
      fill: colour(b.hi), 'fill-opacity': 0.3, class: 'band-stripe', 'data-band': b.name,
    }));
  });
  for (let k = 0; k <= 4; k += 1) {
    const y = top + plotH - (plotH * k) / 4;
    root.append(svg('line', { x1: left, x2: W - right, y1: y, y2: y, class: 'grid' }));
    root.append(svg('text', { x: left - 6, y: y + 4, 'text-anchor': 'end', class: 'tick' }, String(step * k)));
  }
  const slot = plotW / series.length;
  const xOf = (i) => left + i * slot + slot / 2;
  const line = series
    .map((p, i) => (Number.isFinite(p.mean) ? `${xOf(i)},${yOf(p.mean)}` : null))
    .filter(Boolean);
  if (line.length > 1) {
    root.append(svg('polyline', { points: line.join(' '), fill: 'none', stroke: '#1b1b1b', 'stroke-width': 1.5 }));
  }
  const covTop = top + plotH + 30;
  series.forEach((p, i) => {
    const g = svg('g', { class: 'period', 'data-period': p.label });
    g.append(svg('title', {}, text[i]));
    if (Number.isFinite(p.mean)) {
      g.append(svg('circle', {
        cx: xOf(i), cy: yOf(p.mean), r: series.length > 60 ? 2 : 3.5, fill: '#1b1b1b',
      }));
    }
    if (Number.isFinite(p.coverage)) {
      const h = (Math.min(100, p.coverage) / 100) * coverageH;
      g.append(svg('rect', {
        x: left + i * slot + slot * 0.1, y: covTop + coverageH - h, width: Math.max(1, slot * 0.8), height: h,
        fill: '#8c959f', class: 'coverage',
      }));
    }
    root.append(g);
  });
  const marks = series.length === 1 ? [0] : [0, series.length - 1];
  for (const i of marks) {
    const anchor = series.length > 1 ? (i === 0 ? 'start' : 'end') : 'middle';
    root.append(svg('text', { x: xOf(i), y: top + plotH + 18, 'text-anchor': anchor, class: 'tick' },
      shortLabel(series[i].label, period)));
  }
  root.append(svg('text', { x: 4, y: 12, class: 'tick' }, 'µg/m³'));
  root.append(svg('text', { x: left - 6, y: covTop + coverageH, 'text-anchor': 'end', class: 'tick' }, 'coverage'));
  host.append(root, dataTable(`PM2.5 mean per ${period}`,
    [period[0].toUpperCase() + period.slice(1), 'PM2.5 mean (µg/m³)', `${ix.short} band`, 'Coverage (%)', 'Readings'],
    series.map((p) => {
      const b = bandOfPm25(indexKey, p.mean);
      return [shortLabel(p.label, period), Number.isFinite(p.mean) ? p.mean.toFixed(2) : '',
        b ? b.name : '', Number.isFinite(p.coverage) ? p.coverage.toFixed(1) : '', fmtInt(p.readings)];
    })));
  return text.join('; ');
}

/**
 * The map's points of an aggregate's rows: a square per cell, a point per
 * sensor, coloured by the band of their PM2.5 mean; none for countries
 * and `all` (they have no place).
 */
export function mapPoints(header, records, indexKey) {
  const col = Object.fromEntries(header.map((h, i) => [h, i]));
  // The newest period of each group: the map shows one value a place.
  const latest = new Map();
  for (const r of records) {
    const key = r[col.sensor_id] || r[col.cell_min_lon] + ',' + r[col.cell_min_lat];
    if (!r[col.lat] || !r[col.lon]) continue;
    latest.set(key, r);
  }
  const points = [];
  for (const r of latest.values()) {
    const mean = num(r[col.P2_mean]);
    const b = bandOfPm25(indexKey, mean);
    const cell = r[col.cell_min_lon] !== ''
      ? [num(r[col.cell_min_lon]), num(r[col.cell_min_lat]), num(r[col.cell_max_lon]), num(r[col.cell_max_lat])]
      : null;
    const where = cell ? `Cell ${cell[1]}–${cell[3]}° N, ${cell[0]}–${cell[2]}° E` : `Sensor ${r[col.sensor_id]} (${r[col.sensor_type]}, ${r[col.loc_country]})`;
    points.push({
      lat: num(r[col.lat]),
      lon: num(r[col.lon]),
      value: mean,
      cell,
      label: `${where} · from ${r[col.period_start]} · PM2.5 mean ${Number.isFinite(mean) ? mean.toFixed(2) : '–'} µg/m³`
        + `${b ? ` (${b.name})` : ''} · ${r[col.readings]} readings · coverage ${r[col.coverage]} %`,
    });
  }
  return points;
}
