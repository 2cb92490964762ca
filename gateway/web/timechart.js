// airq web page: the time chart of a result, readings per hour (per day
// when the result spans more than three days) stacked by band, in the
// index's palette. SVG, drawn at the width it is shown at.
//
// A module: result.js draws the chart with `drawBinned`, and its value
// chart with this module's SVG element maker (`svg`) and axis-step rule.
// The binning is apart from the drawing, and counts as the readings come
// (`binner`): the worker that reads an answer (parse.js) bins its
// readings as it parses them, so that the page never holds every
// reading's time, only the bins. No DOM is touched until a chart is
// drawn, so the worker can import this module.

const SVG_NS = 'http://www.w3.org/2000/svg';
const HOUR = 3600;
const DAY = 86400;

function el(name, attrs, text) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

// The smallest "nice" whole step of which 4 cover `max`.
export function niceStep(max) {
  const rough = Math.max(1, max / 4);
  const mag = 10 ** Math.floor(Math.log10(rough));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) {
    const step = m * mag;
    if (Number.isInteger(step) && step >= rough) return step;
  }
  return 10 * mag;
}

const pad = (n) => String(n).padStart(2, '0');
function label(t, bin) {
  const d = new Date(t * 1000);
  const day = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  return bin === DAY ? day : `${day} ${pad(d.getUTCHours())}:00`;
}

/**
 * Counts readings into hours as they come, { add(t, band), done() }:
 * `done` gives the bins `bin` gives for the same readings (hours, or days
 * when they span more than three days: that is only known at the end, and
 * a day is 24 whole hours, so the hours fold into days then). Its memory
 * is one count per band per hour that has a reading, whatever the number
 * of readings.
 */
export function binner(bandCount) {
  const hours = new Map();
  let lo = Infinity;
  let hi = -Infinity;
  // Readings come in runs of the same hour: the last hour's counts are at
  // hand without a look-up.
  let lastHour = NaN;
  let last = null;
  return {
    add(t, band) {
      if (t < lo) lo = t;
      if (t > hi) hi = t;
      const hour = Math.floor(t / HOUR);
      if (hour !== lastHour) {
        last = hours.get(hour);
        if (!last) {
          last = new Array(bandCount).fill(0);
          hours.set(hour, last);
        }
        lastHour = hour;
      }
      last[band] += 1;
    },
    done() {
      if (!Number.isFinite(lo)) return { bin: HOUR, start: 0, counts: [] };
      const width = hi - lo > 3 * DAY ? DAY : HOUR;
      const start = Math.floor(lo / width) * width;
      const n = Math.floor((hi - start) / width) + 1;
      const counts = Array.from({ length: n }, () => new Array(bandCount).fill(0));
      // Whole seconds: floor((t - start) / width) is the reading's hour
      // floored to `width`, less the first bin's.
      const hoursPer = width / HOUR;
      const first = start / width;
      for (const [hour, perBand] of hours) {
        const row = counts[Math.floor(hour / hoursPer) - first];
        perBand.forEach((c, b) => { row[b] += c; });
      }
      return { bin: width, start, counts };
    },
  };
}

/**
 * Draws into `host` the bins `data` (as a `binner` gives them);
 * `bands` is [{ label, colour }], lowest first. Returns `data`.
 */
export function drawBinned(host, data, bands) {
  host.replaceChildren();
  host.dataset.bins = String(data.counts.length);
  host.dataset.bin = data.bin === DAY ? 'day' : 'hour';
  if (!data.counts.length) return data;
  const W = Math.round(Math.min(640, Math.max(300, host.clientWidth || 640)));
  const narrow = W < 480;
  const H = narrow ? 220 : 260;
  const left = narrow ? 46 : 60;
  const right = 10;
  const top = 16;
  const bottom = 54;
  const plotW = W - left - right;
  const plotH = H - top - bottom;
  const totals = data.counts.map((c) => c.reduce((a, b) => a + b, 0));
  const step = niceStep(Math.max(...totals));
  const scale = step * 4;
  const root = el('svg', {
    viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img',
    'aria-label': `Readings per ${data.bin === DAY ? 'day' : 'hour'}, stacked by band`,
  });
  for (let i = 0; i <= 4; i += 1) {
    const y = top + plotH - (plotH * i) / 4;
    root.append(el('line', { x1: left, x2: W - right, y1: y, y2: y, class: 'grid' }));
    root.append(el('text', { x: left - 6, y: y + 4, 'text-anchor': 'end', class: 'tick' },
      (step * i).toLocaleString('en')));
  }
  const n = data.counts.length;
  const slot = plotW / n;
  const barW = Math.max(1, slot * 0.85);
  data.counts.forEach((counts, i) => {
    let y = top + plotH;
    const x = left + i * slot + (slot - barW) / 2;
    const g = el('g', {});
    const t = data.start + i * data.bin;
    g.append(el('title', {}, `${label(t, data.bin)}: ${totals[i].toLocaleString('en')} readings`
      + counts.map((c, b) => (c ? `, ${bands[b].label} ${c.toLocaleString('en')}` : '')).join('')));
    counts.forEach((c, b) => {
      if (!c) return;
      const h = (c / scale) * plotH;
      y -= h;
      g.append(el('rect', { x, y, width: barW, height: Math.max(h, 0.5), fill: bands[b].colour, class: 'bar' }));
    });
    root.append(g);
  });
  // First, middle and last bin labels: enough to read the span.
  const marks = n === 1 ? [0] : n === 2 ? [0, 1] : [0, Math.floor((n - 1) / 2), n - 1];
  for (const i of marks) {
    const x = left + i * slot + slot / 2;
    const anchor = i === 0 && n > 1 ? 'start' : i === n - 1 && n > 1 ? 'end' : 'middle';
    root.append(el('text', { x, y: top + plotH + 18, 'text-anchor': anchor, class: 'tick' },
      label(data.start + i * data.bin, data.bin)));
  }
  root.append(el('text', { x: left + plotW / 2, y: H - 8, 'text-anchor': 'middle', class: 'axis' },
    `UTC ${data.bin === DAY ? 'day' : 'hour'}`));
  const unit = data.bin === DAY ? 'day' : 'hour';
  host.append(root, dataTable(`Readings per ${unit}`, [`UTC ${unit}`, 'Readings', ...bands.map((b) => b.label)],
    data.counts.map((counts, i) => [label(data.start + i * data.bin, data.bin), totals[i].toLocaleString('en'),
      ...counts.map((c) => c.toLocaleString('en'))])));
  return data;
}

/**
 * A chart's numbers as a table behind a toggle, its text alternative:
 * `head` the column names, `rows` arrays of cell texts, `label` what the
 * numbers are.
 */
export function dataTable(label, head, rows) {
  const details = document.createElement('details');
  details.className = 'chart-data';
  const summary = document.createElement('summary');
  summary.textContent = `${label}: the numbers`;
  const wrap = document.createElement('div');
  wrap.className = 'table-wrap';
  wrap.setAttribute('role', 'region');
  wrap.setAttribute('aria-label', `${label}, as a table`);
  wrap.tabIndex = 0;
  const table = document.createElement('table');
  const headRow = table.createTHead().insertRow();
  for (const h of head) {
    const th = document.createElement('th');
    th.scope = 'col';
    th.textContent = h;
    headRow.append(th);
  }
  const body = table.createTBody();
  for (const cells of rows) {
    const tr = body.insertRow();
    for (const c of cells) tr.insertCell().textContent = c;
  }
  wrap.append(table);
  details.append(summary, wrap);
  return details;
}

// The SVG element maker, for the value chart (result.js) too.
export { el as svg };
