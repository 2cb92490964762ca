// airq web page: the query form, the result flow and the result view.
// Plain JavaScript, no library and no build step; it talks only to the
// gateway that served it (/api/meta, /api/query, /api/results/{id}).
'use strict';

(() => {
  // The DEFRA DAQI colours of indices 1..10.
  const PALETTE = ['#9CFF9C', '#31FF00', '#31CF00', '#FFFF00', '#FFCF00',
    '#FF9A00', '#FF6464', '#FF0000', '#990000', '#CE30FF'];
  const BANDS = [
    { name: 'Low', lo: 1, hi: 3 },
    { name: 'Moderate', lo: 4, hi: 6 },
    { name: 'High', lo: 7, hi: 9 },
    { name: 'Very High', lo: 10, hi: 10 },
  ];
  // The query's fields, as the API names them; each has an input of that id.
  const FIELDS = ['startDate', 'endDate', 'country', 'minAqi', 'maxAqi', 'range'];
  const LABELS = {
    startDate: 'Start', endDate: 'End', country: 'Country',
    minAqi: 'Minimum AQI', maxAqi: 'Maximum AQI', range: 'AQI band',
  };
  // The server's default limit on endDate - startDate.
  const MAX_SPAN_SECONDS = 31 * 24 * 3600;
  const MAX_AQI = 10;
  const PREVIEW_ROWS = 100;
  const NUMERIC_COLUMNS = new Set(['id', 'sensor_id', 'loc_id', 'loc_lat', 'loc_long',
    'loc_alt', 'P1', 'P2', 'AQI']);
  // Consecutive failed polls (network errors, 503s) before giving up.
  const MAX_POLL_FAILURES = 10;
  const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  const SVG_NS = 'http://www.w3.org/2000/svg';

  const $ = (id) => document.getElementById(id);
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
      } else if (span > MAX_SPAN_SECONDS) {
        err('endDate', `the range spans ${humanSpan(span)} but at most ${humanSpan(MAX_SPAN_SECONDS)} is allowed`);
      }
    }

    const country = $('country').value.trim();
    if (country !== '') {
      if (/^[A-Za-z]{2,3}$/.test(country)) body.country = country.toUpperCase();
      else err('country', `must be a 2- or 3-letter country code such as DE, got "${country}"`);
    }

    const aqi = {};
    for (const [name, fallback] of [['minAqi', 0], ['maxAqi', MAX_AQI]]) {
      const input = $(name);
      const raw = input.value.trim();
      if (input.validity && input.validity.badInput) {
        err(name, `must be a whole number from 0 to ${MAX_AQI}`);
      } else if (raw === '') {
        aqi[name] = fallback;
      } else if (/^\d+$/.test(raw) && Number(raw) <= MAX_AQI) {
        aqi[name] = Number(raw);
      } else {
        err(name, `must be a whole number from 0 to ${MAX_AQI}, got ${raw}`);
      }
      if (aqi[name] !== undefined) body[name] = aqi[name];
    }
    if (aqi.minAqi !== undefined && aqi.maxAqi !== undefined && aqi.minAqi > aqi.maxAqi) {
      err('minAqi', `(${aqi.minAqi}) is greater than the maximum (${aqi.maxAqi})`);
    }

    const band = $('range').value;
    if (band !== '') {
      if (BANDS.some((b) => b.name === band)) body.range = band;
      else err('range', `unknown band "${band}"; expected Low, Moderate, High or Very High`);
    }
    return { errors, body };
  }

  // The API's messages name fields as the API does; the page names them
  // as the form does.
  const MESSAGE_NAMES = {
    startDate: 'the start', endDate: 'the end', minAqi: 'the minimum AQI', maxAqi: 'the maximum AQI',
  };

  // "is required" reads as "End is required"; other messages stand alone,
  // starting with a capital.
  function withLabel(field, message) {
    const text = message.replace(/\b(startDate|endDate|minAqi|maxAqi)\b/g, (name) => MESSAGE_NAMES[name]);
    if (/^(is|must|\()/.test(text)) return `${LABELS[field]} ${text}`;
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  function setDescribedBy(input, id, on) {
    const ids = (input.getAttribute('aria-describedby') || '').split(/\s+/).filter((x) => x && x !== id);
    if (on) ids.push(id);
    if (ids.length) input.setAttribute('aria-describedby', ids.join(' '));
    else input.removeAttribute('aria-describedby');
  }

  function setFieldError(field, message) {
    const input = $(field);
    const box = $(`${field}-error`);
    if (!input || !box) return;
    box.textContent = message || '';
    box.hidden = !message;
    if (message) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
    setDescribedBy(input, box.id, Boolean(message));
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
    if (first) $(first).focus();
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
      if (query && query[f] !== undefined && query[f] !== '') url.searchParams.set(f, String(query[f]));
    }
    return url.href;
  }

  function queryFromUrl() {
    const params = new URLSearchParams(window.location.search);
    const query = {};
    for (const f of FIELDS) {
      const v = params.get(f);
      if (v !== null && v.trim() !== '') query[f] = v.trim();
    }
    return Object.keys(query).length ? query : null;
  }

  function ensureOption(select, value) {
    if (value && ![...select.options].some((o) => o.value === value)) select.append(new Option(value, value));
  }

  // Puts a query (as the API takes it) back into the form.
  function fillForm(query) {
    for (const f of ['startDate', 'endDate']) {
      const d = typeof query[f] === 'string' ? parseDateTime(query[f]) : null;
      if (d) $(f).value = d.text.replace(' ', 'T');
    }
    if (typeof query.country === 'string') {
      ensureOption($('country'), query.country.toUpperCase());
      $('country').value = query.country.toUpperCase();
    }
    for (const f of ['minAqi', 'maxAqi']) {
      if (query[f] !== undefined && /^\d+$/.test(String(query[f]))) $(f).value = String(query[f]);
    }
    if (typeof query.range === 'string' && BANDS.some((b) => b.name === query.range)) $('range').value = query.range;
  }

  // "DE · 2018-06-03 00:00:00 to 2018-06-03 23:59:59 UTC · AQI 1–10 · any band"
  function describe(query) {
    if (!query) return '';
    const parts = [query.country ? String(query.country).toUpperCase() : 'Any country'];
    if (query.startDate && query.endDate) parts.push(`${query.startDate} to ${query.endDate} UTC`);
    parts.push(`AQI ${query.minAqi ?? 0}–${query.maxAqi ?? MAX_AQI}`);
    parts.push(query.range ? `${query.range} band` : 'any band');
    return parts.join(' · ');
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
    const headers = { 'Content-Type': 'application/json', Accept: 'text/csv, application/json' };
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
          headers: { Accept: 'text/csv, application/json' }, cache: 'no-store', signal,
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
    poll(id, my, null).catch((e) => {
      if (my === flow && e.name !== 'AbortError') setStatus('error', `Could not get the result: ${e.message}.`);
    });
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

  function filenameFrom(headers) {
    const cd = headers.get('Content-Disposition') || '';
    const m = /filename="?([^";]+)"?/i.exec(cd);
    const name = m ? m[1].replace(/[^A-Za-z0-9._-]/g, '') : '';
    return name || 'airq-result.csv';
  }

  // ------------------------------------------------------- result view

  let current = null; // { url, filename, size }

  function hideResult() {
    $('result').hidden = true;
    stopElapsed();
  }

  function showResult(buf, headers, how) {
    stopElapsed();
    const bytes = new Uint8Array(buf);
    const text = new TextDecoder('utf-8').decode(bytes);
    const counts = new Array(10).fill(0);
    const preview = [];
    let header = null;
    let aqiCol = -1;
    let rows = 0;
    parseCsv(text, (record) => {
      if (header === null) {
        header = record;
        aqiCol = record.indexOf('AQI');
        return;
      }
      rows += 1;
      if (preview.length < PREVIEW_ROWS) preview.push(record);
      const aqi = Number(record[aqiCol]);
      if (Number.isInteger(aqi) && aqi >= 1 && aqi <= 10) counts[aqi - 1] += 1;
    });
    const declared = headers.get('X-Airq-Rows');
    if (declared !== null && Number(declared) !== rows) {
      console.warn(`airq: the server counted ${declared} rows, the page ${rows}`);
    }

    if (current) URL.revokeObjectURL(current.url);
    const blob = new Blob([bytes], { type: 'text/csv' });
    current = { url: URL.createObjectURL(blob), filename: filenameFrom(headers), size: bytes.length };

    const result = $('result');
    result.dataset.rows = String(rows);
    result.dataset.filename = current.filename;
    $('row-count').textContent = fmtInt(rows);
    $('row-label').textContent = rows === 1 ? 'reading' : 'readings';
    $('answer').textContent = `· ${how}`;
    $('query-desc').textContent = describe(shownQuery);
    $('query-desc').hidden = !shownQuery;
    $('download').setAttribute('aria-label', `Download CSV (${current.filename}, ${fmtBytes(bytes.length)})`);
    result.hidden = false;
    chartCounts = counts;
    drawChart(counts);
    drawBands(counts, rows);
    drawTable(header || [], preview, rows);
    setStatus('done', rows ? 'Done.' : 'Done: no reading matches this query.');
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

  function svg(name, attrs, text) {
    const node = document.createElementNS(SVG_NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // The smallest "nice" whole step of which 4 cover `max`.
  function niceStep(max) {
    const rough = Math.max(1, max / 4);
    const mag = 10 ** Math.floor(Math.log10(rough));
    for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) {
      const step = m * mag;
      if (Number.isInteger(step) && step >= rough) return step;
    }
    return 10 * mag;
  }

  const bandOf = (index) => BANDS.find((b) => index >= b.lo && index <= b.hi);

  let chartCounts = null;
  let chartWidth = 0;

  // Drawn at the width it is shown at, so its text stays legible on a
  // phone; redrawn when that width changes.
  function drawChart(counts) {
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
    const root = svg('svg', {
      viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': 'chart-title chart-desc', focusable: 'false',
    });
    root.append(
      svg('title', { id: 'chart-title' }, 'Readings per AQI index'),
      svg('desc', { id: 'chart-desc' }, counts.map((c, i) => `index ${i + 1} (${bandOf(i + 1).name}): ${c}`).join('; ')),
    );
    for (let k = 0; k <= 4; k += 1) {
      const y = base - (plotH * k) / 4;
      if (k > 0) root.append(svg('line', { class: 'grid-line', x1: left, x2: W - right, y1: y, y2: y }));
      root.append(svg('text', { x: left - 6, y: y + 4, 'text-anchor': 'end', 'font-size': fs }, fmtCount(step * k)));
    }
    const slot = plotW / 10;
    const barW = slot * 0.72;
    counts.forEach((count, i) => {
      const h = count > 0 ? Math.max(1.5, (count / scale) * plotH) : 0;
      const x = left + i * slot + (slot - barW) / 2;
      const bar = svg('rect', {
        class: 'bar', x, y: base - h, width: barW, height: h, fill: PALETTE[i],
        stroke: '#57606a', 'stroke-width': count > 0 ? 0.75 : 0,
        'data-index': i + 1, 'data-count': count,
      });
      bar.append(svg('title', {}, `AQI ${i + 1} (${bandOf(i + 1).name}): ${fmtInt(count)} readings`));
      root.append(bar);
      root.append(svg('text', {
        x: x + barW / 2, y: base - h - 6, 'text-anchor': 'middle', 'font-size': fs, class: 'count',
      }, fmtCount(count)));
      root.append(svg('text', {
        x: x + barW / 2, y: base + 17, 'text-anchor': 'middle', 'font-size': 13, 'font-weight': 600,
      }, String(i + 1)));
    });
    root.append(svg('line', { class: 'axis', x1: left, x2: W - right, y1: base, y2: base }));
    for (const b of BANDS) {
      const x1 = left + (b.lo - 1) * slot + 4;
      const x2 = left + b.hi * slot - 4;
      const y = base + 30;
      root.append(svg('line', { class: 'band-line', x1, x2, y1: y, y2: y }));
      root.append(svg('line', { class: 'band-line', x1, x2: x1, y1: y - 5, y2: y }));
      root.append(svg('line', { class: 'band-line', x1: x2, x2, y1: y - 5, y2: y }));
      // The last band is one bar wide: its name ends at the plot's edge,
      // a line lower when narrow so that it clears its neighbour's.
      const last = b.hi === 10;
      root.append(svg('text', {
        x: last ? W - 2 : (x1 + x2) / 2,
        y: y + 17 + (last && narrow ? 15 : 0),
        'text-anchor': last ? 'end' : 'middle',
        'font-size': fs + 1,
      }, b.name));
    }
    root.append(svg('text', { x: 4, y: 14, 'font-size': fs }, 'readings'));
    $('chart').replaceChildren(root);
  }

  function drawBands(counts, total) {
    const items = BANDS.map((b) => {
      let n = 0;
      for (let i = b.lo; i <= b.hi; i += 1) n += counts[i - 1];
      const li = document.createElement('li');
      li.dataset.band = b.name;
      for (let i = b.lo; i <= b.hi; i += 1) {
        const sw = document.createElement('span');
        sw.className = 'swatch';
        sw.style.background = PALETTE[i - 1];
        sw.setAttribute('aria-hidden', 'true');
        li.append(sw);
      }
      const share = total ? (n / total) * 100 : 0;
      const pct = !total ? '' : ` (${share > 0 && share < 1 ? '<1' : Math.round(share)}%)`;
      const range = b.lo === b.hi ? `${b.lo}` : `${b.lo}–${b.hi}`;
      li.append(` ${b.name} (${range}): ${fmtInt(n)}${pct}`);
      return li;
    });
    $('bands').replaceChildren(...items);
  }

  // --- table

  const table = { header: [], rows: [], col: -1, dir: 1 };

  function drawTable(header, rows, total) {
    table.header = header;
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
          const aqi = Number(value);
          if (Number.isInteger(aqi) && aqi >= 1 && aqi <= 10) {
            const chip = document.createElement('span');
            chip.className = 'aqi-chip';
            chip.style.background = PALETTE[aqi - 1];
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

  async function loadMeta() {
    const form = $('query');
    const summary = $('meta-summary');
    try {
      const signal = typeof AbortSignal.timeout === 'function' ? AbortSignal.timeout(20000) : undefined;
      const resp = await fetch('/api/meta', { headers: { Accept: 'application/json' }, signal });
      const meta = await readJson(resp);
      if (!resp.ok || !meta) throw new Error(errorText(resp, meta));
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
    } catch (e) {
      summary.textContent = `Could not load what data is available (${e.message}); enter the dates by hand.`;
      $('latest-day').hidden = true;
      form.dataset.meta = 'failed';
    }
  }

  // ---------------------------------------------------------------- init

  function init() {
    $('query').addEventListener('submit', submit);
    $('download').addEventListener('click', download);
    $('latest-day').addEventListener('click', useLatestDay);
    for (const f of FIELDS) {
      $(f).addEventListener('input', () => setFieldError(f, null));
      $(f).addEventListener('change', () => setFieldError(f, null));
    }
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
        if (!chartCounts || $('result').hidden) return;
        const w = Math.round(Math.min(640, Math.max(300, $('chart').clientWidth || 640)));
        if (w !== chartWidth) drawChart(chartCounts);
      }, 150);
    });
    loadMeta();
    resume();
  }

  init();
})();
