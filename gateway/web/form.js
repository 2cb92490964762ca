// airq web page: the query form. Reads and checks it as the server does,
// shows errors beside the fields they name, fills it back from a query
// (a link's or the server's), and carries a query in the page's URL.

import { state } from './state.js';
import { $, parseDateTime, humanSpan } from './util.js';
import { indexOf, rangeText } from './indices.js';

// The query's fields, as the API names them, in the form's order.
export const FIELDS = ['startDate', 'endDate', 'country', 'sensorType', 'index', 'range', 'minAqi',
  'maxAqi', 'bbox', 'near', 'resolution', 'quality', 'correction', 'aggregate', 'format'];
// The inputs of a field, where they are not one input of the field's id.
export const FIELD_INPUTS = {
  bbox: ['bboxMinLon', 'bboxMinLat', 'bboxMaxLon', 'bboxMaxLat'],
  near: ['nearLat', 'nearLon', 'nearRadius'],
  aggregate: ['aggregatePeriod', 'aggregateBy'],
  quality: ['quality'],
  correction: ['correction', 'correctionKappa', 'correctionRhMax'],
};
// How the form names the periods and groups of a summary.
const PERIOD_NAMES = { hour: 'hour', day: 'day', month: 'month', year: 'year' };
const BY_NAMES = {
  sensor: 'each sensor', cell: 'each 0.25° grid cell', country: 'each country', all: 'all together',
};
const LABELS = {
  startDate: 'Start', endDate: 'End', country: 'Country', sensorType: 'Sensor type',
  index: 'Index', minAqi: 'Minimum AQI', maxAqi: 'Maximum AQI', range: 'Band',
  bbox: 'The box', near: 'The point', format: 'Format', resolution: 'Series', aggregate: 'Summary',
  quality: 'Quality', correction: 'Correction',
};
// A sensor type name as the server takes it (feed::valid_sensor_type).
const SENSOR_TYPE_RE = /^[A-Za-z0-9][A-Za-z0-9_. -]{0,31}$/;

// ----------------------------------------------------------- validation

// Reads the form and checks it as the server does (common/src/query.rs):
// every problem, each naming its field.
export function readForm() {
  const errors = [];
  const err = (field, message) => errors.push({ field, message });
  const body = {};
  const dates = {};
  for (const name of ['startDate', 'endDate']) {
    const input = $(name);
    const raw = input.value.trim();
    if (input.validity && input.validity.badInput) {
      err(name, 'is not a complete date and time');
    } else if (raw === '') {
      err(name, 'is required');
    } else {
      const d = parseDateTime(raw);
      if (d) {
        dates[name] = d;
        body[name] = d.text;
      } else {
        err(name, 'must be a date and time such as 2018-06-03 20:00:00');
      }
    }
  }
  // The series, and the span it allows (the gateway's, per series).
  const resolution = $('resolution').value || state.defaultResolution;
  const series = state.resolutions[resolution];
  if (Object.keys(state.resolutions).length && !series) {
    err('resolution', `unknown series "${resolution}"; expected one of ${Object.keys(state.resolutions).join(', ')}`);
  } else if (series && resolution !== state.defaultResolution) {
    body.resolution = resolution;
  }
  // A summary (the query's `aggregate`) spans up to its own limit.
  const period = $('aggregatePeriod').value;
  const by = $('aggregateBy').value;
  if (period !== '') {
    if (!state.aggregate.periods.includes(period) || !state.aggregate.by.includes(by)) {
      err('aggregate', `must be one of the listed periods (${state.aggregate.periods.join(', ')}) and groups (${state.aggregate.by.join(', ')})`);
    } else if (period === 'hour' && resolution === state.defaultResolution) {
      err('aggregate', 'period: "hour" needs the hourly or 5-minute series: the daily series has one reading a sensor a day');
    } else {
      body.aggregate = { period, by };
    }
  }
  // The quality filter (the series GET /api/meta names: the server says
  // so too).
  const quality = $('quality').value;
  if (quality !== '') {
    const series = state.quality.resolutions;
    if (!series.includes(resolution)) {
      err('quality', `quality flags are kept for the series ${series.map((r) => `"${r}"`).join(' and ')} only so far`);
    } else if (quality === 'list') {
      const chosen = checkedFlags();
      if (!chosen.length) err('quality', 'choose the flags whose readings to leave out');
      else body.quality = chosen;
    } else if (state.quality.values.includes(quality)) {
      body.quality = quality;
    } else {
      err('quality', `unknown value "${quality}"; expected one of ${state.quality.values.join(', ')}`);
    }
  }
  // The humidity correction (readings of the daily series, not summaries).
  const method = $('correction').value;
  if (method !== '') {
    const c = state.correction;
    const kappaText = $('correctionKappa').value.trim();
    const kappa = Number(kappaText);
    const capText = $('correctionRhMax').value.trim();
    const cap = capText === '' ? null : Number(capText);
    if (!c.methods.includes(method)) {
      err('correction', `unknown method "${method}"; expected one of ${c.methods.join(', ')}`);
    } else if (resolution !== state.defaultResolution) {
      err('correction', 'corrected indices are computed for the daily series only so far');
    } else if (kappaText === '' || !Number.isFinite(kappa) || kappa <= 0 || kappa > c.maxKappa
      || Math.abs(kappa * 1000 - Math.round(kappa * 1000)) > 1e-6) {
      err('correction', `needs a κ above 0 and at most ${c.maxKappa}, with at most 3 decimals`);
    } else if (cap !== null && !(Number.isInteger(cap) && cap >= c.rhMax.min && cap <= c.rhMax.max)) {
      err('correction', `the RH cap must be a whole percentage from ${c.rhMax.min} to ${c.rhMax.max}`);
    } else {
      body.correction = { method, kappa };
      if (cap !== null) body.correction.rhMax = cap;
    }
  }
  const spanLimit = period !== '' ? state.limits.maxAggregateSpanSeconds : state.limits.maxSpanSeconds;
  const maxSpan = series && resolution !== state.defaultResolution
    ? Math.min(series.maxSpanSeconds, spanLimit)
    : spanLimit;
  if (dates.startDate && dates.endDate) {
    const span = dates.endDate.seconds - dates.startDate.seconds;
    if (span < 0) {
      err('endDate', `is before the start (${dates.endDate.text} < ${dates.startDate.text})`);
    } else if (span > maxSpan) {
      const of = series && resolution !== state.defaultResolution ? ` for this series`
        : (period !== '' ? ' for a summary' : '');
      err('endDate', `the range spans ${humanSpan(span)} but at most ${humanSpan(maxSpan)}${of} is allowed`);
    }
  }

  const country = $('country').value.trim();
  if (country !== '') {
    if (/^[A-Za-z]{2,3}$/.test(country)) body.country = country.toUpperCase();
    else err('country', `must be a 2- or 3-letter country code such as DE, got "${country}"`);
  }

  const types = $('sensorType').value.split(',').map((t) => t.trim()).filter((t) => t !== '');
  if (types.length > state.limits.maxSensorTypes) {
    err('sensorType', `lists ${types.length} types; at most ${state.limits.maxSensorTypes} are allowed`);
  } else {
    const bad = types.find((t) => !SENSOR_TYPE_RE.test(t));
    if (bad !== undefined) err('sensorType', `"${bad}" is not a sensor type name (letters, digits, _ . - and spaces, at most 32)`);
    else if (types.length === 1) body.sensorType = types[0];
    else if (types.length > 1) body.sensorType = types;
  }

  const indexKey = $('index').value;
  if (!state.indices[indexKey]) err('index', `unknown index "${indexKey}"; expected one of ${Object.keys(state.indices).join(', ')}`);
  else if (indexKey !== state.defaultIndex) body.index = indexKey;
  const ix = indexOf(indexKey);

  const band = $('range').value;
  if (band !== '') {
    if (ix.bands.some((b) => b.name === band)) body.range = band;
    else err('range', `unknown ${ix.short} band "${band}"; expected one of ${ix.bands.map((b) => b.name).join(', ')}`);
  }

  const aqi = {};
  for (const [name, fallback] of [['minAqi', ix.floor], ['maxAqi', ix.max]]) {
    const input = $(name);
    const raw = input.value.trim();
    const scale = `a whole number from ${ix.floor} to ${ix.max} on the ${ix.short} scale`;
    if (input.validity && input.validity.badInput) {
      err(name, `must be ${scale}`);
    } else if (raw === '') {
      aqi[name] = fallback;
    } else if (/^\d+$/.test(raw) && Number(raw) >= ix.floor && Number(raw) <= ix.max) {
      aqi[name] = Number(raw);
    } else {
      err(name, `must be ${scale}, got ${raw}`);
    }
    if (aqi[name] !== undefined) body[name] = aqi[name];
  }
  if (aqi.minAqi !== undefined && aqi.maxAqi !== undefined && aqi.minAqi > aqi.maxAqi) {
    err('minAqi', `(${aqi.minAqi}) is greater than the maximum (${aqi.maxAqi})`);
  }

  const place = $('placeKind').value;
  if (place === 'bbox') {
    const v = readNumbers(FIELD_INPUTS.bbox);
    if (!v) {
      err('bbox', 'needs four numbers: west, south, east and north');
    } else {
      const [w, south, e, north] = v;
      const problems = [];
      if (Math.abs(w) > 180 || Math.abs(e) > 180) problems.push('longitudes must be from -180 to 180');
      if (Math.abs(south) > 90 || Math.abs(north) > 90) problems.push('latitudes must be from -90 to 90');
      if (w >= e) problems.push(`the west longitude (${w}) must be less than the east one (${e})`);
      if (south >= north) problems.push(`the south latitude (${south}) must be less than the north one (${north})`);
      if (problems.length) err('bbox', problems.join('; '));
      else body.bbox = v;
    }
  } else if (place === 'near') {
    const v = readNumbers(FIELD_INPUTS.near);
    if (!v) {
      err('near', 'needs three numbers: latitude, longitude and radius');
    } else {
      const [lat, lon, radiusKm] = v;
      const problems = [];
      if (Math.abs(lat) > 90) problems.push('the latitude must be from -90 to 90');
      if (Math.abs(lon) > 180) problems.push('the longitude must be from -180 to 180');
      if (!(radiusKm > 0 && radiusKm <= state.limits.maxRadiusKm)) problems.push(`the radius must be more than 0 and at most ${state.limits.maxRadiusKm} km`);
      if (problems.length) err('near', problems.join('; '));
      else body.near = { lat, lon, radiusKm };
    }
  }

  const format = $('format').value;
  if (!state.formats[format]) err('format', `unknown format "${format}"; expected one of ${Object.keys(state.formats).join(', ')}`);
  else if (format !== state.defaultFormat) body.format = format;
  return { errors, body };
}

// The flags ticked to leave out, in the server's order.
function checkedFlags() {
  return state.quality.flags.map((f) => f.name).filter((name) => {
    const box = $(`qualityFlag-${name}`);
    return box && box.checked;
  });
}

// The quality filter's choices, from the server's (GET /api/meta): a box
// per flag, titled with its rule.
export function fillQualityOptions() {
  const holder = $('qualityFlags');
  holder.replaceChildren(...state.quality.flags.map((f) => {
    const label = document.createElement('label');
    label.title = f.rule;
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.id = `qualityFlag-${f.name}`;
    box.value = f.name;
    box.onchange = () => setFieldError('quality', null);
    label.append(box, ` ${f.name.replace(/_/g, ' ')}`);
    return label;
  }));
  $('quality').onchange = applyQuality;
  applyQuality();
}

// The flag boxes mean something only for "left out when flagged as chosen".
export function applyQuality() {
  const list = $('quality').value === 'list';
  $('qualityFlags').hidden = !list;
  for (const box of $('qualityFlags').querySelectorAll('input')) box.disabled = !list;
}

// The numbers typed into `ids`, or null when one is missing or not a number.
function readNumbers(ids) {
  const values = [];
  for (const id of ids) {
    const input = $(id);
    const raw = input.value.trim();
    if ((input.validity && input.validity.badInput) || raw === '' || !Number.isFinite(Number(raw))) return null;
    values.push(Number(raw));
  }
  return values;
}

// ---------------------------------------------------------------- errors

// The API's messages name fields as the API does; the page names them
// as the form does.
const MESSAGE_NAMES = {
  startDate: 'the start', endDate: 'the end', minAqi: 'the minimum AQI', maxAqi: 'the maximum AQI',
  minLon: 'the west longitude', minLat: 'the south latitude', maxLon: 'the east longitude',
  maxLat: 'the north latitude', radiusKm: 'the radius',
};

// "is required" reads as "End is required"; other messages stand alone,
// starting with a capital.
function withLabel(field, message) {
  const text = message.replace(/\b(startDate|endDate|minAqi|maxAqi|minLon|minLat|maxLon|maxLat|radiusKm)\b/g,
    (name) => MESSAGE_NAMES[name]);
  if (/^(is|must|\()/.test(text)) return `${LABELS[field]} ${text}`;
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function setDescribedBy(input, id, on) {
  const ids = (input.getAttribute('aria-describedby') || '').split(/\s+/).filter((x) => x && x !== id);
  if (on) ids.push(id);
  if (ids.length) input.setAttribute('aria-describedby', ids.join(' '));
  else input.removeAttribute('aria-describedby');
}

export const inputsOf = (field) => (FIELD_INPUTS[field] || [field]).map($).filter(Boolean);

export function setFieldError(field, message) {
  const inputs = inputsOf(field);
  const box = $(`${field}-error`);
  if (!inputs.length || !box) return;
  box.textContent = message || '';
  box.hidden = !message;
  for (const input of inputs) {
    if (message) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
    setDescribedBy(input, box.id, Boolean(message));
  }
}

function setFormError(message) {
  const box = $('form-error');
  box.textContent = message || '';
  box.hidden = !message;
}

export function clearErrors() {
  for (const f of FIELDS) setFieldError(f, null);
  setFormError(null);
}

// Shows errors ({field, message}) next to the fields they name; others
// (the body as a whole, a header) in the form's error box.
export function showErrors(errors, heading) {
  const byField = new Map();
  const other = [];
  for (const e of errors) {
    const field = e && typeof e.field === 'string' ? e.field : 'body';
    const message = e && typeof e.message === 'string' ? e.message : 'is not valid';
    if (FIELDS.includes(field)) {
      if (!byField.has(field)) byField.set(field, []);
      byField.get(field).push(withLabel(field, message));
    } else {
      other.push(`${field}: ${message}`);
    }
  }
  for (const [field, messages] of byField) setFieldError(field, messages.join(' '));
  const n = byField.size;
  const lines = [];
  if (heading) lines.push(heading);
  if (n) lines.push(n === 1 ? 'One field needs attention: see the marked field.' : `${n} fields need attention: see the marked fields.`);
  lines.push(...other);
  setFormError(lines.join(' '));
  const first = FIELDS.find((f) => byField.has(f));
  if (first) inputsOf(first)[0].focus();
}

// ----------------------------------------------------------- the URL

// The query a result answers travels in its link beside the id (kept in
// state.shownQuery), so that a reload or a shared link shows (and refills
// the form with) it too.
export function resultUrl(id, query) {
  const url = new URL(window.location.href);
  url.hash = '';
  url.search = '';
  url.searchParams.set('result', id);
  for (const f of FIELDS) {
    if (query && query[f] !== undefined && query[f] !== '') url.searchParams.set(f, paramText(query[f]));
  }
  return url.href;
}

// A query field's value in a link: lists and the point comma-separated,
// as GET /api/latest takes them too.
function paramText(value) {
  if (Array.isArray(value)) return value.join(',');
  if (value && typeof value === 'object' && 'period' in value) return [value.period, value.by].join(',');
  if (value && typeof value === 'object' && 'method' in value) {
    return [value.method, value.kappa, value.rhMax].filter((v) => v !== undefined).join(',');
  }
  if (value && typeof value === 'object') return [value.lat, value.lon, value.radiusKm].join(',');
  return String(value);
}

// Comma-separated numbers, or null unless there are `n` of them.
function numbersIn(text, n) {
  const parts = String(text).split(',').map((p) => p.trim());
  if (parts.length !== n || parts.some((p) => p === '' || !Number.isFinite(Number(p)))) return null;
  return parts.map(Number);
}

export function queryFromUrl() {
  const params = new URLSearchParams(window.location.search);
  const query = {};
  for (const f of FIELDS) {
    const raw = params.get(f);
    if (raw === null || raw.trim() === '') continue;
    const v = raw.trim();
    if (f === 'bbox') {
      const box = numbersIn(v, 4);
      if (box) query.bbox = box;
    } else if (f === 'near') {
      const p = numbersIn(v, 3);
      if (p) query.near = { lat: p[0], lon: p[1], radiusKm: p[2] };
    } else if (f === 'aggregate') {
      const [period, by] = v.split(',').map((p) => p.trim());
      if (period && by) query.aggregate = { period, by };
    } else if (f === 'sensorType') {
      const types = v.split(',').map((t) => t.trim()).filter((t) => t !== '');
      if (types.length) query.sensorType = types.length === 1 ? types[0] : types;
    } else if (f === 'correction') {
      // method,kappa[,rhMax]
      const [method, kappa, rhMax] = v.split(',').map((p) => p.trim());
      if (method === 'none') continue;
      query.correction = { method };
      if (kappa !== undefined && kappa !== '' && Number.isFinite(Number(kappa))) query.correction.kappa = Number(kappa);
      if (rhMax !== undefined && rhMax !== '') query.correction.rhMax = Number(rhMax);
    } else if (f === 'quality') {
      // A list of flags, or one of the values ("all", "no-flags").
      const names = v.split(',').map((t) => t.trim()).filter((t) => t !== '');
      const flags = state.quality.flags.map((x) => x.name);
      if (names.length && names.every((n) => flags.includes(n))) query.quality = names;
      else query.quality = v;
    } else {
      query[f] = v;
    }
  }
  return Object.keys(query).length ? query : null;
}

export function ensureOption(select, value) {
  if (value && ![...select.options].some((o) => o.value === value)) select.append(new Option(value, value));
}

// Puts a query (as the API takes it) back into the form. The index, the
// place, the sensor types and the format are set whether the query has
// them or not (to their defaults), as they change what the rest means.
export function fillForm(query) {
  for (const f of ['startDate', 'endDate']) {
    const d = typeof query[f] === 'string' ? parseDateTime(query[f]) : null;
    if (d) $(f).value = d.text.replace(' ', 'T');
  }
  if (typeof query.country === 'string') {
    ensureOption($('country'), query.country.toUpperCase());
    $('country').value = query.country.toUpperCase();
  }
  const types = Array.isArray(query.sensorType) ? query.sensorType : [query.sensorType];
  $('sensorType').value = types.filter((t) => typeof t === 'string').join(', ');
  $('index').value = state.indices[query.index] ? query.index : state.defaultIndex;
  applyIndex();
  for (const f of ['minAqi', 'maxAqi']) {
    if (query[f] !== undefined && /^\d+$/.test(String(query[f]))) $(f).value = String(query[f]);
  }
  const ix = indexOf($('index').value);
  if (typeof query.range === 'string' && ix.bands.some((b) => b.name === query.range)) $('range').value = query.range;
  const box = Array.isArray(query.bbox) && query.bbox.length === 4 ? query.bbox : null;
  const near = query.near && typeof query.near === 'object' ? query.near : null;
  $('placeKind').value = box ? 'bbox' : (near ? 'near' : '');
  FIELD_INPUTS.bbox.forEach((id, i) => { $(id).value = box ? String(box[i]) : ''; });
  const point = near ? [near.lat, near.lon, near.radiusKm] : [];
  FIELD_INPUTS.near.forEach((id, i) => { $(id).value = point[i] !== undefined ? String(point[i]) : ''; });
  applyPlace();
  $('format').value = state.formats[query.format] ? query.format : state.defaultFormat;
  $('resolution').value = state.resolutions[query.resolution] ? query.resolution : state.defaultResolution;
  const a = query.aggregate && typeof query.aggregate === 'object' ? query.aggregate : null;
  const known = a && state.aggregate.periods.includes(a.period) && state.aggregate.by.includes(a.by);
  $('aggregatePeriod').value = known ? a.period : '';
  if (known) $('aggregateBy').value = a.by;
  applyAggregate();
  const q = query.quality;
  const list = Array.isArray(q) ? q.filter((n) => typeof n === 'string') : [];
  $('quality').value = list.length ? 'list' : (state.quality.values.includes(q) ? q : '');
  for (const f of state.quality.flags) {
    const box = $(`qualityFlag-${f.name}`);
    if (box) box.checked = list.includes(f.name);
  }
  applyQuality();
  const c = query.correction && typeof query.correction === 'object' ? query.correction : null;
  const method = c && state.correction.methods.includes(c.method) ? c.method : '';
  $('correction').value = method;
  $('correctionKappa').value = method && Number.isFinite(Number(c.kappa)) ? String(c.kappa) : '';
  $('correctionRhMax').value = method && c.rhMax !== undefined ? String(c.rhMax) : '';
  applyCorrection();
}

// The correction's explanation and source, from the server's (GET /api/meta).
export function fillCorrectionOptions() {
  const c = state.correction;
  $('correction-summary').textContent = c.summary ? `${c.summary}.` : '';
  const source = $('correction-source');
  source.hidden = !c.source;
  if (c.source) source.href = c.source;
  $('correctionKappa').max = String(c.maxKappa);
  $('correctionRhMax').min = String(c.rhMax.min);
  $('correctionRhMax').max = String(c.rhMax.max);
  $('correctionRhMax').placeholder = String(c.rhMax.default);
  $('correction').onchange = applyCorrection;
  for (const id of ['correctionKappa', 'correctionRhMax']) $(id).oninput = () => setFieldError('correction', null);
  applyCorrection();
}

// κ and the cap mean something only with a method.
export function applyCorrection() {
  const off = $('correction').value === '';
  $('correctionKappa').disabled = off;
  $('correctionRhMax').disabled = off;
  setFieldError('correction', null);
}

// The summary's choices, from the server's (GET /api/meta).
export function fillAggregateOptions() {
  const period = $('aggregatePeriod');
  period.replaceChildren(new Option('None: the readings themselves', ''),
    ...state.aggregate.periods.map((p) => new Option(PERIOD_NAMES[p] || p, p)));
  const by = $('aggregateBy');
  by.replaceChildren(...state.aggregate.by.map((b) => new Option(BY_NAMES[b] || b, b)));
  by.value = state.aggregate.by.includes('country') ? 'country' : (state.aggregate.by[0] || '');
  period.onchange = applyAggregate;
  applyAggregate();
}

// "Grouped by" means something only with a period.
export function applyAggregate() {
  $('aggregateBy').disabled = $('aggregatePeriod').value === '';
}

// "monthly statistics per country", for descriptions.
export function describeAggregate(a) {
  if (!a || typeof a !== 'object') return '';
  const adjective = { hour: 'hourly', day: 'daily', month: 'monthly', year: 'yearly' }[a.period] || a.period;
  return `${adjective} statistics, ${BY_NAMES[a.by] || a.by}`;
}

// "DE · 2018-06-03 00:00:00 to 2018-06-03 23:59:59 UTC · AQI 1–10 · any band",
// then the index (when not the DAQI), the place, the sensor types and the
// format (when not CSV).
export function describe(query) {
  if (!query) return '';
  const parts = [query.country ? String(query.country).toUpperCase() : 'Any country'];
  if (query.startDate && query.endDate) parts.push(`${query.startDate} to ${query.endDate} UTC`);
  const key = state.indices[query.index] ? query.index : state.defaultIndex;
  const ix = indexOf(key);
  const scale = key === state.defaultIndex ? 'AQI' : ix.name;
  parts.push(`${scale} ${query.minAqi ?? ix.floor}–${query.maxAqi ?? ix.max}`);
  parts.push(query.range ? `${query.range} band` : 'any band');
  if (Array.isArray(query.bbox)) {
    const [w, south, e, north] = query.bbox;
    parts.push(`longitudes ${w} to ${e}, latitudes ${south} to ${north}`);
  } else if (query.near && typeof query.near === 'object') {
    parts.push(`within ${query.near.radiusKm} km of ${query.near.lat}, ${query.near.lon}`);
  }
  if (query.sensorType) parts.push([].concat(query.sensorType).join(', '));
  if (state.formats[query.format] && query.format !== state.defaultFormat) parts.push(state.formats[query.format].label);
  if (state.resolutions[query.resolution] && query.resolution !== state.defaultResolution) {
    parts.push(`${state.resolutions[query.resolution].label.toLowerCase()} series`);
  }
  if (query.aggregate) parts.push(describeAggregate(query.aggregate));
  if (Array.isArray(query.quality)) parts.push(`without readings flagged ${query.quality.join(', ')}`);
  else if (query.quality === 'no-flags') parts.push('only readings without a flag');
  else if (query.quality === 'all') parts.push('with quality flags');
  if (query.correction && typeof query.correction === 'object') {
    const cap = query.correction.rhMax ?? state.correction.rhMax.default;
    const kappa = Number.isFinite(query.correction.kappa) ? `κ ${query.correction.kappa}` : 'no κ';
    parts.push(`corrected for humidity (${query.correction.method}, ${kappa}, RH cap ${cap} %)`);
  }
  return parts.join(' · ');
}

// Makes the band list, the bounds' limits and the bounds themselves those
// of the chosen index; a band is not carried over (a "Moderate" means
// other values in each index).
export function applyIndex() {
  const ix = indexOf($('index').value);
  const select = $('range');
  select.replaceChildren(new Option('Any band', ''),
    ...ix.bands.map((b) => new Option(`${b.name} (${rangeText(b)})`, b.name)));
  select.value = '';
  $('minAqi').min = String(ix.floor);
  $('maxAqi').min = String(ix.floor);
  $('minAqi').max = String(ix.max);
  $('maxAqi').max = String(ix.max);
  $('minAqi').value = String(ix.floor);
  $('maxAqi').value = String(ix.max);
  for (const f of ['index', 'range', 'minAqi', 'maxAqi']) setFieldError(f, null);
}

// Shows the inputs of the chosen place filter only.
export function applyPlace() {
  const kind = $('placeKind').value;
  $('bbox-fields').hidden = kind !== 'bbox';
  $('near-fields').hidden = kind !== 'near';
  setFieldError('bbox', null);
  setFieldError('near', null);
}

export function resultFromUrl() {
  const params = new URLSearchParams(window.location.search);
  let id = params.get('result');
  if (!id && window.location.hash.startsWith('#result=')) id = window.location.hash.slice(8);
  return id ? decodeURIComponent(id).trim() : null;
}

export function setResultInUrl(id, query) {
  const target = id ? resultUrl(id, query) : (() => {
    const url = new URL(window.location.href);
    url.searchParams.delete('result');
    if (url.hash.startsWith('#result=')) url.hash = '';
    return url.href;
  })();
  if (target === window.location.href) return;
  if (id) window.history.pushState({ result: id }, '', target);
  else window.history.replaceState(null, '', target);
}
