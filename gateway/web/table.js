// airq web page: the result's preview table (its first rows), each row's
// AQI marked in its bar's colour, sortable by any column from its heading.

import { $, fmtInt } from './util.js';
import { barsOf, barIndex } from './indices.js';

const NUMERIC_COLUMNS = new Set(['id', 'sensor_id', 'loc_id', 'loc_lat', 'loc_long',
  'loc_alt', 'P1', 'P2', 'AQI', 'humidity', 'P1_corrected', 'P2_corrected']);

const table = { header: [], rows: [], col: -1, dir: 1, bars: [] };

export function drawTable(header, rows, total, indexKey) {
  table.header = header;
  table.bars = barsOf(indexKey);
  table.rows = rows.slice();
  table.col = -1;
  table.dir = 1;
  const tr = document.createElement('tr');
  header.forEach((name, i) => {
    const th = document.createElement('th');
    th.scope = 'col';
    const button = document.createElement('button');
    button.type = 'button';
    button.dataset.col = String(i);
    const mark = document.createElement('span');
    mark.className = 'sort-mark';
    mark.setAttribute('aria-hidden', 'true');
    mark.textContent = ' ↕';
    // Breakable after each underscore (`loc_<wbr>country`), so that the
    // table fits a wide window rather than scrolling; the name reads and
    // copies the same.
    name.split('_').forEach((part, k) => {
      if (k > 0) button.append('_', document.createElement('wbr'));
      button.append(part);
    });
    button.append(mark);
    button.addEventListener('click', () => sortBy(i));
    th.append(button);
    tr.append(th);
  });
  $('preview').tHead.replaceChildren(tr);
  $('preview-title').textContent = total > rows.length
    ? `First ${fmtInt(rows.length)} of ${fmtInt(total)} rows`
    : `All ${fmtInt(total)} rows`;
  $('preview-hint').hidden = rows.length < 2;
  renderRows();
}

function renderRows() {
  const aqiCol = table.header.indexOf('AQI');
  const numeric = table.header.map((h) => NUMERIC_COLUMNS.has(h));
  const frag = document.createDocumentFragment();
  for (const record of table.rows) {
    const tr = document.createElement('tr');
    record.forEach((value, i) => {
      const td = document.createElement('td');
      if (numeric[i]) td.className = 'num';
      if (i === aqiCol) {
        const bar = value === '' ? -1 : barIndex(table.bars, Number(value));
        if (bar >= 0) {
          const chip = document.createElement('span');
          chip.className = 'aqi-chip';
          chip.style.background = table.bars[bar].colour;
          chip.setAttribute('aria-hidden', 'true');
          td.append(chip);
        }
      }
      td.append(value);
      tr.append(td);
    });
    frag.append(tr);
  }
  $('preview').tBodies[0].replaceChildren(frag);
}

function compareCells(numeric) {
  return (a, b) => {
    if (a === b) return 0;
    // Empty cells last, whichever the direction.
    if (a === '') return Infinity;
    if (b === '') return -Infinity;
    if (numeric) {
      const x = Number(a);
      const y = Number(b);
      if (Number.isFinite(x) && Number.isFinite(y) && x !== y) return x - y;
    }
    return a < b ? -1 : 1;
  };
}

function sortBy(col) {
  table.dir = table.col === col ? -table.dir : 1;
  table.col = col;
  const cmp = compareCells(NUMERIC_COLUMNS.has(table.header[col]));
  const dir = table.dir;
  table.rows.sort((r1, r2) => {
    const c = cmp(r1[col] ?? '', r2[col] ?? '');
    if (c === Infinity || c === -Infinity) return c > 0 ? 1 : -1;
    return c * dir;
  });
  $('preview').tHead.querySelectorAll('th').forEach((th, i) => {
    const mark = th.querySelector('.sort-mark');
    if (i === col) {
      th.setAttribute('aria-sort', dir > 0 ? 'ascending' : 'descending');
      mark.textContent = dir > 0 ? ' ▲' : ' ▼';
    } else {
      th.removeAttribute('aria-sort');
      mark.textContent = ' ↕';
    }
  });
  renderRows();
}
