// airq web page: the query form, the result flow and the result view.
// Plain JavaScript, no library and no build step; it talks only to the
// gateway that served it (/api/meta, /api/query, /api/results/{id}).
'use strict';

(() => {
  // What the server offers, from GET /api/meta (common/core has the
  // indices, their bands and their publishers' colours; the gateway its
  // limits): nothing of it is written here. Filled by loadMeta before the
  // form is used.
  //   INDICES[name] = {name: title, short, floor, min, max, valueColours,
  //     bands: [{name, lo, hi, colour, abbr}]}; `floor` is the lowest
  //     minAqi it takes (the DAQI's 0: no lower bound); `valueColours`
  //     colours each value where the publisher does (DAQI).
  //   FORMATS[name] = {label, type, ext}
  //   LIMITS = {maxSpanSeconds, maxRadiusKm, maxSensorTypes}
  let INDICES = {};
  let DEFAULT_INDEX = '';
  let FORMATS = {};
  let DEFAULT_FORMAT = '';
  let LIMITS = { maxSpanSeconds: 0, maxRadiusKm: 0, maxSensorTypes: 0 };
  // The columns of every answer, in the CSV's order; NDJSON and GeoJSON
  // carry the same fields under the same names.
  const COLUMNS = ['id', 'timestamp', 'sensor_id', 'sensor_type', 'loc_id', 'loc_country',
    'loc_lat', 'loc_long', 'loc_alt', 'P1', 'P2', 'AQI', 'Range'];
  // The query's fields, as the API names them, in the form's order.
  const FIELDS = ['startDate', 'endDate', 'country', 'sensorType', 'index', 'range', 'minAqi',
    'maxAqi', 'bbox', 'near', 'format'];
  // The inputs of a field, where they are not one input of the field's id.
  const FIELD_INPUTS = {
    bbox: ['bboxMinLon', 'bboxMinLat', 'bboxMaxLon', 'bboxMaxLat'],
    near: ['nearLat', 'nearLon', 'nearRadius'],
  };
  const LABELS = {
    startDate: 'Start', endDate: 'End', country: 'Country', sensorType: 'Sensor type',
    index: 'Index', minAqi: 'Minimum AQI', maxAqi: 'Maximum AQI', range: 'Band',
    bbox: 'The box', near: 'The point', format: 'Format',
  };
  // A sensor type name as the server takes it (feed::valid_sensor_type).
  const SENSOR_TYPE_RE = /^[A-Za-z0-9][A-Za-z0-9_. -]{0,31}$/;
  const PREVIEW_ROWS = 100;
  const NUMERIC_COLUMNS = new Set(['id', 'sensor_id', 'loc_id', 'loc_lat', 'loc_long',
    'loc_alt', 'P1', 'P2', 'AQI']);
  // Consecutive failed polls (network errors, 503s) before giving up.
  const MAX_POLL_FAILURES = 10;
  const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

  const $ = (id) => document.getElementById(id);
  const indexOf = (key) => INDICES[key] || INDICES[DEFAULT_INDEX];
  const rangeText = (b) => (b.lo === b.hi ? `${b.lo}` : `${b.lo}–${b.hi}`);

  // The chart's bars of an index: one per value where the publisher
  // colours values (the DAQI's ten), one per band for the others (a bar
  // per US EPA value would be 501 bars).
  function barsOf(key) {
    const ix = indexOf(key);
    if (ix.valueColours.length) {
      return ix.valueColours.map((colour, i) => ({
        lo: ix.min + i, hi: ix.min + i, colour, label: String(ix.min + i),
      }));
    }
    return ix.bands.map((b) => ({
      lo: b.lo, hi: b.hi, colour: b.colour, label: rangeText(b), abbr: b.abbr || b.name,
    }));
  }

  // The position in `bars` of a value, or -1.
  const barIndex = (bars, value) => bars.findIndex((b) => value >= b.lo && value <= b.hi);
  const fmtInt = (n) => Math.round(n).toLocaleString('en');
  const fmtCompact = (n) => (n < 1000 ? fmtInt(n)
    : new Intl.NumberFormat('en', { notation: 'compact', maximumFractionDigits: 1 }).format(n));

  // ---------------------------------------------------------------- dates

  // An input's value ("YYYY-MM-DDTHH:MM[:SS[.sss]]") or the API's form
  // ("YYYY-MM-DD HH:MM:SS") as {text: API form, seconds}, or null.
  function parseDateTime(value) {
    const m = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?$/.exec(value.trim());
    if (!m) return null;
    const [, y, mo, d, h, mi, s = '00'] = m;
    const t = new Date(0);
    t.setUTCFullYear(+y, +mo - 1, +d);
    t.setUTCHours(+h, +mi, +s, 0);
    if (t.getUTCFullYear() !== +y || t.getUTCMonth() !== +mo - 1 || t.getUTCDate() !== +d
      || +h > 23 || +mi > 59 || +s > 59) return null;
    return { text: `${y}-${mo}-${d} ${h}:${mi}:${s}`, seconds: t.getTime() / 1000 };
  }

  function humanSpan(seconds) {
    const days = Math.floor(seconds / 86400);
    const rem = seconds % 86400;
    const hms = `${Math.floor(rem / 3600)}h ${Math.floor(rem % 3600 / 60)}m ${rem % 60}s`;
    if (days === 0) return hms;
    return rem === 0 ? `${days} days` : `${days} days ${hms}`;
  }

  // A short time, to a tenth of a second: "0.3 s", "12 s".
  function fmtQuick(ms) {
    return ms < 10000 ? `${(Math.max(0, ms) / 1000).toFixed(1)} s` : fmtDuration(ms);
  }

  function fmtDuration(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${String(s % 60).padStart(2, '0')} s`;
    return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
  }

  // ----------------------------------------------------------- validation

  // Reads the form and checks it as the server does (common/src/query.rs):
  // every problem, each naming its field.
  function readForm() {
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
    if (dates.startDate && dates.endDate) {
      const span = dates.endDate.seconds - dates.startDate.seconds;
      if (span < 0) {
        err('endDate', `is before the start (${dates.endDate.text} < ${dates.startDate.text})`);
      } else if (span > LIMITS.maxSpanSeconds) {
        err('endDate', `the range spans ${humanSpan(span)} but at most ${humanSpan(LIMITS.maxSpanSeconds)} is allowed`);
      }
    }

    const country = $('country').value.trim();
    if (country !== '') {
      if (/^[A-Za-z]{2,3}$/.test(country)) body.country = country.toUpperCase();
      else err('country', `must be a 2- or 3-letter country code such as DE, got "${country}"`);
    }

    const types = $('sensorType').value.split(',').map((t) => t.trim()).filter((t) => t !== '');
    if (types.length > LIMITS.maxSensorTypes) {
      err('sensorType', `lists ${types.length} types; at most ${LIMITS.maxSensorTypes} are allowed`);
    } else {
      const bad = types.find((t) => !SENSOR_TYPE_RE.test(t));
      if (bad !== undefined) err('sensorType', `"${bad}" is not a sensor type name (letters, digits, _ . - and spaces, at most 32)`);
      else if (types.length === 1) body.sensorType = types[0];
      else if (types.length > 1) body.sensorType = types;
    }

    const indexKey = $('index').value;
    if (!INDICES[indexKey]) err('index', `unknown index "${indexKey}"; expected one of ${Object.keys(INDICES).join(', ')}`);
    else if (indexKey !== DEFAULT_INDEX) body.index = indexKey;
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
        if (!(radiusKm > 0 && radiusKm <= LIMITS.maxRadiusKm)) problems.push(`the radius must be more than 0 and at most ${LIMITS.maxRadiusKm} km`);
        if (problems.length) err('near', problems.join('; '));
        else body.near = { lat, lon, radiusKm };
      }
    }

    const format = $('format').value;
    if (!FORMATS[format]) err('format', `unknown format "${format}"; expected one of ${Object.keys(FORMATS).join(', ')}`);
    else if (format !== DEFAULT_FORMAT) body.format = format;
    return { errors, body };
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

  const inputsOf = (field) => (FIELD_INPUTS[field] || [field]).map($).filter(Boolean);

  function setFieldError(field, message) {
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

  function clearErrors() {
    for (const f of FIELDS) setFieldError(f, null);
    setFormError(null);
  }

  // Shows errors ({field, message}) next to the fields they name; others
  // (the body as a whole, a header) in the form's error box.
  function showErrors(errors, heading) {
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

  // -------------------------------------------------------------- status

  let elapsedTimer = null;
  let elapsedSince = 0;

  function setStatus(state, text) {
    const box = $('status');
    box.dataset.state = state;
    $('status-text').textContent = text;
    const titles = { queued: 'Queued', running: 'Running', submitting: 'Running', failed: 'Failed' };
    document.title = titles[state] ? `${titles[state]} · airq` : 'airq · air-quality readings';
  }

  function tickElapsed() {
    $('elapsed').textContent = `· ${fmtDuration(Date.now() - elapsedSince)}`;
  }

  function startElapsed(since) {
    elapsedSince = since;
    tickElapsed();
    if (elapsedTimer === null) elapsedTimer = setInterval(tickElapsed, 500);
  }

  function stopElapsed(keep) {
    if (elapsedTimer !== null) clearInterval(elapsedTimer);
    elapsedTimer = null;
    if (!keep) $('elapsed').textContent = '';
  }

  function showLink(id) {
    const box = $('status-link');
    if (!id) {
      box.hidden = true;
      box.replaceChildren();
      return;
    }
    const url = resultUrl(id, shownQuery);
    const a = document.createElement('a');
    a.href = url;
    a.id = 'result-link';
    a.textContent = 'this result’s link';
    box.replaceChildren('You can leave this page and come back, or share the result, with ', a, '.');
    box.hidden = false;
  }

  function revealResults() {
    const r = $('results').getBoundingClientRect();
    if (r.top > window.innerHeight * 0.8) $('results').scrollIntoView({ block: 'start' });
  }

  // ----------------------------------------------------------- the URL

  // The query a result answers travels in its link beside the id, so that
  // a reload or a shared link shows (and refills the form with) it too.
  let shownQuery = null;

  function resultUrl(id, query) {
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
    if (value && typeof value === 'object') return [value.lat, value.lon, value.radiusKm].join(',');
    return String(value);
  }

  // Comma-separated numbers, or null unless there are `n` of them.
  function numbersIn(text, n) {
    const parts = String(text).split(',').map((p) => p.trim());
    if (parts.length !== n || parts.some((p) => p === '' || !Number.isFinite(Number(p)))) return null;
    return parts.map(Number);
  }

  function queryFromUrl() {
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
      } else if (f === 'sensorType') {
        const types = v.split(',').map((t) => t.trim()).filter((t) => t !== '');
        if (types.length) query.sensorType = types.length === 1 ? types[0] : types;
      } else {
        query[f] = v;
      }
    }
    return Object.keys(query).length ? query : null;
  }

  function ensureOption(select, value) {
    if (value && ![...select.options].some((o) => o.value === value)) select.append(new Option(value, value));
  }

  // Puts a query (as the API takes it) back into the form. The index, the
  // place, the sensor types and the format are set whether the query has
  // them or not (to their defaults), as they change what the rest means.
  function fillForm(query) {
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
    $('index').value = INDICES[query.index] ? query.index : DEFAULT_INDEX;
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
    $('format').value = FORMATS[query.format] ? query.format : DEFAULT_FORMAT;
  }

  // "DE · 2018-06-03 00:00:00 to 2018-06-03 23:59:59 UTC · AQI 1–10 · any band",
  // then the index (when not the DAQI), the place, the sensor types and the
  // format (when not CSV).
  function describe(query) {
    if (!query) return '';
    const parts = [query.country ? String(query.country).toUpperCase() : 'Any country'];
    if (query.startDate && query.endDate) parts.push(`${query.startDate} to ${query.endDate} UTC`);
    const key = INDICES[query.index] ? query.index : DEFAULT_INDEX;
    const ix = indexOf(key);
    const scale = key === DEFAULT_INDEX ? 'AQI' : ix.name;
    parts.push(`${scale} ${query.minAqi ?? ix.floor}–${query.maxAqi ?? ix.max}`);
    parts.push(query.range ? `${query.range} band` : 'any band');
    if (Array.isArray(query.bbox)) {
      const [w, south, e, north] = query.bbox;
      parts.push(`longitudes ${w} to ${e}, latitudes ${south} to ${north}`);
    } else if (query.near && typeof query.near === 'object') {
      parts.push(`within ${query.near.radiusKm} km of ${query.near.lat}, ${query.near.lon}`);
    }
    if (query.sensorType) parts.push([].concat(query.sensorType).join(', '));
    if (FORMATS[query.format] && query.format !== DEFAULT_FORMAT) parts.push(FORMATS[query.format].label);
    return parts.join(' · ');
  }

  // Makes the band list, the bounds' limits and the bounds themselves those
  // of the chosen index; a band is not carried over (a "Moderate" means
  // other values in each index).
  function applyIndex() {
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
  function applyPlace() {
    const kind = $('placeKind').value;
    $('bbox-fields').hidden = kind !== 'bbox';
    $('near-fields').hidden = kind !== 'near';
    setFieldError('bbox', null);
    setFieldError('near', null);
  }

  function resultFromUrl() {
    const params = new URLSearchParams(window.location.search);
    let id = params.get('result');
    if (!id && window.location.hash.startsWith('#result=')) id = window.location.hash.slice(8);
    return id ? decodeURIComponent(id).trim() : null;
  }

  function setResultInUrl(id, query) {
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

  // --------------------------------------------------------- the flows

  // Each submit or resume starts a new flow; an older one stops at its
  // next step when it sees that `flow` moved on.
  let flow = 0;
  let inFlight = null;

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // What the page takes back: an answer in any format, or a JSON state or
  // error.
  const answerTypes = () => `${Object.values(FORMATS).map((f) => f.type).join(', ')}, application/json`;

  // Seconds to wait per Retry-After (delta-seconds or an HTTP date).
  function retryAfter(resp, fallback) {
    const v = (resp.headers.get('Retry-After') || '').trim();
    let s = fallback;
    if (/^\d+$/.test(v)) s = Number(v);
    else if (v) {
      const t = Date.parse(v);
      if (!Number.isNaN(t)) s = (t - Date.now()) / 1000;
    }
    return Math.min(30, Math.max(0.5, s));
  }

  async function readJson(resp) {
    try {
      return await resp.json();
    } catch (e) {
      return null;
    }
  }

  function errorText(resp, info) {
    if (info && typeof info.error === 'string') return info.error;
    return `the server answered ${resp.status} ${resp.statusText}`.trim();
  }

  async function submit(event) {
    event.preventDefault();
    if (!optionsLoaded()) {
      setStatus('error', 'The page has not loaded the query options from the server yet; it keeps trying.');
      return;
    }
    clearErrors();
    const { errors, body } = readForm();
    if (errors.length) {
      showErrors(errors);
      return;
    }
    const my = ++flow;
    if (inFlight) inFlight.abort();
    inFlight = new AbortController();
    shownQuery = body;
    const queue = $('background').checked;
    hideResult();
    showLink(null);
    setStatus('submitting', queue ? 'Sending the query to the queue…' : 'Running the query…');
    startElapsed(Date.now());
    revealResults();
    const headers = { 'Content-Type': 'application/json', Accept: answerTypes() };
    if (queue) headers.Prefer = 'respond-async';
    const started = Date.now();
    let resp;
    try {
      resp = await fetch('/api/query', {
        method: 'POST', headers, body: JSON.stringify(body), signal: inFlight.signal,
      });
    } catch (e) {
      if (my !== flow) return;
      stopElapsed();
      setStatus('error', `Could not reach the server (${e.message}). Check the connection and submit again.`);
      return;
    }
    if (my !== flow) return;
    try {
      if (resp.status === 200) {
        const buf = await resp.arrayBuffer();
        if (my !== flow) return;
        setResultInUrl(null);
        showResult(buf, resp.headers, `answered directly in ${fmtQuick(Date.now() - started)}`);
      } else if (resp.status === 202) {
        const info = await readJson(resp);
        const id = info && typeof info.id === 'string' ? info.id : '';
        if (!UUID_RE.test(id)) throw new Error('the server queued the query but sent no result id');
        if (my !== flow) return;
        setResultInUrl(id, body);
        await poll(id, my, info);
      } else {
        const info = await readJson(resp);
        if (my !== flow) return;
        stopElapsed();
        if (info && Array.isArray(info.fields) && info.fields.length) {
          setStatus('error', 'The server did not accept the query.');
          showErrors(info.fields, 'The server did not accept the query.');
        } else if (resp.status === 503) {
          setStatus('error', `The service is busy (${errorText(resp, info)}). Try again in ${retryAfter(resp, 5)} s.`);
        } else if (resp.status === 429) {
          setStatus('error', `Too many queries from here for now (${errorText(resp, info)}).`);
        } else {
          setStatus('error', `The query failed: ${errorText(resp, info)}.`);
        }
      }
    } catch (e) {
      if (my !== flow || e.name === 'AbortError') return;
      stopElapsed();
      setStatus('error', `The query failed: ${e.message}.`);
    }
  }

  const STATE_TEXT = {
    queued: 'Queued: waiting for a worker…',
    running: 'Running: a worker is answering the query…',
  };

  // Follows a queued result until it is done, failed or gone.
  async function poll(id, my, first) {
    showLink(id);
    let since = Date.now();
    let waited = Boolean(first);
    const note = (info) => {
      const state = info && (info.status === 'running' || info.status === 'queued') ? info.status : 'queued';
      setStatus(state, STATE_TEXT[state]);
      // Elapsed time counts from the query's creation, so it survives a
      // reload; a clock ahead of ours falls back to our own start.
      const created = info && typeof info.createdAt === 'string' ? parseDateTime(info.createdAt) : null;
      if (created && created.seconds * 1000 <= Date.now() + 2000) since = Math.min(since, created.seconds * 1000);
      startElapsed(since);
    };
    note(first);
    let failures = 0;
    const signal = inFlight ? inFlight.signal : undefined;
    while (my === flow) {
      let resp;
      try {
        resp = await fetch(`/api/results/${encodeURIComponent(id)}`, {
          headers: { Accept: answerTypes() }, cache: 'no-store', signal,
        });
      } catch (e) {
        if (my !== flow || e.name === 'AbortError') return;
        failures += 1;
        if (failures > MAX_POLL_FAILURES) {
          stopElapsed();
          setStatus('error', `Lost contact with the server (${e.message}). The query goes on: reload this page to look again.`);
          return;
        }
        $('status-text').textContent = `Connection problem; retrying (${failures}/${MAX_POLL_FAILURES})…`;
        await sleep(Math.min(30, 2 ** failures) * 1000);
        continue;
      }
      if (my !== flow) return;
      if (resp.status === 202) {
        failures = 0;
        waited = true;
        note(await readJson(resp));
        await sleep(retryAfter(resp, 1) * 1000);
      } else if (resp.status === 200) {
        const buf = await resp.arrayBuffer();
        if (my !== flow) return;
        showResult(buf, resp.headers, waited
          ? `queued, ready after ${fmtDuration(Date.now() - since)}`
          : 'from a queued query');
        return;
      } else if (resp.status === 503 || resp.status === 429) {
        // Busy, or this client polled faster than its budget: wait as told.
        failures += 1;
        const info = await readJson(resp);
        if (failures > MAX_POLL_FAILURES) {
          stopElapsed();
          setStatus('error', `The service is unavailable (${errorText(resp, info)}). Reload this page to look again.`);
          return;
        }
        $('status-text').textContent = `The service is busy; retrying (${failures}/${MAX_POLL_FAILURES})…`;
        await sleep(retryAfter(resp, 5) * 1000);
      } else {
        const info = await readJson(resp);
        if (my !== flow) return;
        stopElapsed(resp.status === 422);
        if (resp.status === 422) {
          const why = info && typeof info.error === 'string' ? info.error : 'no reason given';
          setStatus('failed', `The query failed: ${why}`);
        } else if (resp.status === 410) {
          showLink(null);
          setStatus('error', 'This result has expired. Submit the query again.');
        } else if (resp.status === 404) {
          showLink(null);
          setStatus('error', 'There is no result with this id: the link may be wrong or the result forgotten.');
        } else {
          setStatus('error', `Could not get the result: ${errorText(resp, info)}.`);
        }
        return;
      }
    }
  }

  function resume() {
    const id = resultFromUrl();
    if (!id) return;
    const my = ++flow;
    if (inFlight) inFlight.abort();
    inFlight = new AbortController();
    hideResult();
    shownQuery = queryFromUrl();
    if (shownQuery) {
      clearErrors();
      fillForm(shownQuery);
    }
    if (!UUID_RE.test(id)) {
      setStatus('error', `The link names result "${id}", which is not a result id.`);
      return;
    }
    setStatus('queued', 'Looking up the result…');
    queryOfResult(id, inFlight.signal)
      .then((query) => {
        if (my !== flow || !query) return;
        // The server's word on what the result answers, whatever the link
        // says (a link may be bare, cut short or edited).
        shownQuery = query;
        clearErrors();
        fillForm(query);
        window.history.replaceState(window.history.state, '', resultUrl(id, query));
      })
      .then(() => (my === flow ? poll(id, my, null) : undefined))
      .catch((e) => {
        if (my === flow && e.name !== 'AbortError') setStatus('error', `Could not get the result: ${e.message}.`);
      });
  }

  // The validated query a result answers (GET /api/results/{id}/status),
  // or null when the server cannot say (the poll then reports why).
  async function queryOfResult(id, signal) {
    let resp;
    try {
      resp = await fetch(`/api/results/${encodeURIComponent(id)}/status`, {
        headers: { Accept: 'application/json' }, cache: 'no-store', signal,
      });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      return null;
    }
    if (resp.status !== 200) return null;
    const info = await readJson(resp);
    return info && info.query && typeof info.query === 'object' ? info.query : null;
  }

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

  // The readings of an NDJSON or GeoJSON answer as records in the CSV's
  // column order, the header first, each passed to `onRecord`.
  function parseJsonAnswer(text, format, onRecord) {
    onRecord(COLUMNS);
    const take = (fields) => {
      if (!fields || typeof fields !== 'object') throw new Error('the answer holds something that is not a reading');
      onRecord(COLUMNS.map((c) => cellOf(fields[c])));
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

  function hideResult() {
    $('result').hidden = true;
    stopElapsed();
  }

  // The chart's state, for redrawing it at another width.
  let chartState = null;
  let chartWidth = 0;

  function showResult(buf, headers, how) {
    stopElapsed();
    const bytes = new Uint8Array(buf);
    const text = new TextDecoder('utf-8').decode(bytes);
    // The answer says what it is: its format by its type, its index by
    // X-Airq-Index (a result opened from a link may not be the form's).
    const type = (headers.get('Content-Type') || '').split(';')[0].trim().toLowerCase();
    const format = Object.keys(FORMATS).find((f) => FORMATS[f].type === type) || DEFAULT_FORMAT;
    const said = (headers.get('X-Airq-Index') || '').trim();
    const indexKey = INDICES[said] ? said : ((shownQuery && INDICES[shownQuery.index]) ? shownQuery.index : DEFAULT_INDEX);
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
      const value = Number(record[aqiCol]);
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
    if (format === 'csv') parseCsv(text, onRecord);
    else parseJsonAnswer(text, format, onRecord);
    const declared = headers.get('X-Airq-Rows');
    if (declared !== null && Number(declared) !== rows) {
      console.warn(`airq: the server counted ${declared} rows, the page ${rows}`);
    }

    if (current) URL.revokeObjectURL(current.url);
    const blob = new Blob([bytes], { type: FORMATS[format].type });
    current = { url: URL.createObjectURL(blob), filename: filenameFrom(headers, FORMATS[format].ext), size: bytes.length };

    const result = $('result');
    result.dataset.rows = String(rows);
    result.dataset.filename = current.filename;
    result.dataset.format = format;
    result.dataset.index = indexKey;
    $('row-count').textContent = fmtInt(rows);
    $('row-label').textContent = rows === 1 ? 'reading' : 'readings';
    $('answer').textContent = `· ${how}`;
    $('query-desc').textContent = describe(shownQuery);
    $('query-desc').hidden = !shownQuery;
    const label = `Download ${FORMATS[format].label}`;
    $('download').textContent = label;
    $('download').setAttribute('aria-label', `${label} (${current.filename}, ${fmtBytes(bytes.length)})`);
    result.hidden = false;
    chartState = { counts, indexKey };
    drawMap(sensors, col, indexKey);
    drawTimeChart(times, bandsOf, indexKey);
    drawChart(counts, indexKey);
    drawBands(counts, rows, indexKey);
    drawTable(header || COLUMNS, preview, rows, indexKey);
    setStatus('done', rows ? 'Done.' : 'Done: no reading matches this query.');
  }

  // "YYYY-MM-DD HH:MM:SS" (UTC, the answers' form) as Unix seconds.
  function apiSeconds(text) {
    const m = /^(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)$/.exec(text || '');
    if (!m) return null;
    return Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]) / 1000;
  }

  // The colour of a value of an index on the map: by value where the
  // publisher colours values (the DAQI's ten), else by band.
  function colourOf(indexKey) {
    const ix = indexOf(indexKey);
    const vc = ix.valueColours;
    if (vc.length) return (v) => vc[Math.min(vc.length - 1, Math.max(0, v - ix.min))];
    return (v) => (ix.bands.find((b) => v >= b.lo && v <= b.hi) || ix.bands[ix.bands.length - 1]).colour;
  }

  function bandColours(indexKey) {
    const ix = indexOf(indexKey);
    const colour = colourOf(indexKey);
    return ix.bands.map((b) => ({ label: `${b.name} (${rangeText(b)})`, colour: colour(b.hi) }));
  }

  let map = null;

  function drawMap(sensors, col, indexKey) {
    if (!window.airqMap) return;
    if (!map) {
      map = window.airqMap.create($('map'), { onBox: boxToForm });
      $('map-zoom-in').addEventListener('click', () => map.zoom(1.5));
      $('map-zoom-out').addEventListener('click', () => map.zoom(1 / 1.5));
      $('map-box').addEventListener('click', () => map.startBox());
    }
    const ix = indexOf(indexKey);
    const points = [];
    for (const [id, { record }] of sensors) {
      const value = Number(record[col.AQI]);
      const p1 = record[col.P1];
      const p2 = record[col.P2];
      points.push({
        lat: Number(record[col.loc_lat]),
        lon: Number(record[col.loc_long]),
        value,
        label: `Sensor ${id} (${record[col.sensor_type]}, ${record[col.loc_country]}) · `
          + `${record[col.timestamp]} UTC · PM10 ${p1 || '–'} · PM2.5 ${p2 || '–'} µg/m³ · `
          + `${ix.short} ${value} (${record[col.Range]})`,
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
    if (!window.airqTimeChart) return;
    const data = window.airqTimeChart.draw($('timechart'), times, bandsOf, bandColours(indexKey));
    $('timechart-title').textContent = `Readings per ${data.bin === 86400 ? 'day' : 'hour'} (UTC), stacked by ${indexOf(indexKey).short} band`;
  }

  function fmtBytes(n) {
    if (n < 1024) return `${n} bytes`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
    return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  }

  function download() {
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

  // One SVG element maker and one axis-step rule for both charts: the
  // time chart's (timechart.js, loaded first).
  const { svg, niceStep } = window.airqTimeChart;

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
    const W = Math.round(Math.min(640, Math.max(300, $('chart').clientWidth || 640)));
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

  // --- table

  const table = { header: [], rows: [], col: -1, dir: 1, bars: [] };

  function drawTable(header, rows, total, indexKey) {
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
      button.append(name, mark);
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

  // ---------------------------------------------------------------- meta

  let latestDay = null;

  function useLatestDay() {
    if (!latestDay) return;
    $('startDate').value = `${latestDay}T00:00:00`;
    $('endDate').value = `${latestDay}T23:59:59`;
    setFieldError('startDate', null);
    setFieldError('endDate', null);
  }

  function countryName(code) {
    try {
      const names = new Intl.DisplayNames(['en'], { type: 'region' });
      const name = names.of(code.toUpperCase() === 'UK' ? 'GB' : code.toUpperCase());
      return name && name !== code ? name : '';
    } catch (e) {
      return '';
    }
  }

  // The server's options (indices, formats, limits) into the page's
  // tables and the form's selects.
  function useOptions(meta) {
    const indices = Array.isArray(meta.indices) ? meta.indices : [];
    const formats = Array.isArray(meta.formats) ? meta.formats : [];
    if (!indices.length || !formats.length || !meta.limits) throw new Error('the server sent no query options');
    INDICES = {};
    for (const ix of indices) {
      INDICES[ix.name] = {
        name: ix.title, short: ix.short, floor: ix.floor, min: ix.min, max: ix.max,
        valueColours: Array.isArray(ix.valueColours) ? ix.valueColours : [],
        bands: ix.bands.map((b) => ({
          name: b.name, lo: b.lo, hi: b.hi, colour: b.colour || undefined, abbr: b.abbr || undefined,
        })),
      };
      if (ix.default) DEFAULT_INDEX = ix.name;
    }
    FORMATS = {};
    for (const f of formats) {
      FORMATS[f.name] = { label: f.label, type: f.mediaType, ext: f.extension };
      if (f.default) DEFAULT_FORMAT = f.name;
    }
    LIMITS = {
      maxSpanSeconds: Number(meta.limits.maxSpanSeconds),
      maxRadiusKm: Number(meta.limits.maxRadiusKm),
      maxSensorTypes: Number(meta.limits.maxSensorTypes),
    };
    const index = $('index');
    index.replaceChildren(...indices.map((ix) => new Option(`${ix.title} (${rangeText({ lo: ix.min, hi: ix.max })})`, ix.name)));
    index.value = DEFAULT_INDEX;
    const format = $('format');
    format.replaceChildren(...formats.map((f) => new Option(f.label, f.name)));
    format.value = DEFAULT_FORMAT;
    applyIndex();
  }

  // Until the options are in, a submit has nothing to check against.
  const optionsLoaded = () => DEFAULT_INDEX !== '' && DEFAULT_FORMAT !== '';

  async function loadMeta() {
    const form = $('query');
    const summary = $('meta-summary');
    try {
      const signal = typeof AbortSignal.timeout === 'function' ? AbortSignal.timeout(20000) : undefined;
      const resp = await fetch('/api/meta', { headers: { Accept: 'application/json' }, signal });
      const meta = await readJson(resp);
      if (!resp.ok || !meta) throw new Error(errorText(resp, meta));
      useOptions(meta);
      const countries = (Array.isArray(meta.countries) ? meta.countries : [])
        .filter((c) => typeof c === 'string' && /^[A-Za-z]{2,3}$/.test(c))
        .sort();
      const select = $('country');
      const keep = select.value;
      select.replaceChildren(new Option('Any country', ''));
      for (const c of countries) {
        const name = countryName(c);
        select.append(new Option(name ? `${c} · ${name}` : c, c));
      }
      ensureOption(select, keep);
      select.value = keep;
      const last = typeof meta.last === 'string' ? parseDateTime(meta.last) : null;
      const first = typeof meta.first === 'string' ? parseDateTime(meta.first) : null;
      latestDay = last ? last.text.slice(0, 10) : null;
      $('latest-day').hidden = !latestDay;
      if (latestDay && first) {
        const n = Number(meta.readings) || 0;
        summary.textContent = `${fmtInt(n)} readings from ${first.text} to ${last.text} UTC, in ${countries.length} ${countries.length === 1 ? 'country' : 'countries'}.`;
      } else {
        summary.textContent = 'No readings are stored yet.';
      }
      if (!$('startDate').value && !$('endDate').value) useLatestDay();
      form.dataset.meta = 'loaded';
      return true;
    } catch (e) {
      $('latest-day').hidden = true;
      form.dataset.meta = 'failed';
      if (optionsLoaded()) {
        summary.textContent = `Could not load what data is available (${e.message}); enter the dates by hand.`;
        return true;
      }
      // Without the options the form cannot be used: try again shortly.
      summary.textContent = `Could not load the query options from the server (${e.message}); trying again in 10 s…`;
      return false;
    }
  }

  // Loads the options, again every 10 s until they are in, then shows the
  // result the link names, if any.
  async function start() {
    while (!(await loadMeta())) await sleep(10000);
    resume();
  }

  // ---------------------------------------------------------------- init

  function init() {
    $('query').addEventListener('submit', submit);
    $('download').addEventListener('click', download);
    $('latest-day').addEventListener('click', useLatestDay);
    for (const f of FIELDS) {
      for (const input of inputsOf(f)) {
        input.addEventListener('input', () => setFieldError(f, null));
        input.addEventListener('change', () => setFieldError(f, null));
      }
    }
    $('index').addEventListener('change', applyIndex);
    $('placeKind').addEventListener('change', applyPlace);
    window.addEventListener('popstate', () => {
      if (resultFromUrl()) resume();
      else {
        flow += 1;
        hideResult();
        showLink(null);
        setStatus('idle', 'No query yet: fill in the form and submit.');
      }
    });
    let resizeTimer = null;
    window.addEventListener('resize', () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => {
        if (!chartState || $('result').hidden) return;
        const w = Math.round(Math.min(640, Math.max(300, $('chart').clientWidth || 640)));
        if (w !== chartWidth) drawChart(chartState.counts, chartState.indexKey);
      }, 150);
    });
    start();
  }

  init();
})();
