// airq web page: the entry module (the page's one script). Loads the
// query options and what data is stored from GET /api/meta, wires the
// form, the result view and the history to the other modules, and shows
// the result the page's link names, if any. Plain JavaScript modules, no
// library and no build step; the page talks only to the gateway that
// served it (/api/meta, /api/query, /api/results/{id}).

import { state, optionsLoaded } from './state.js';
import { $, fmtInt, humanSpan, parseDateTime, sleep } from './util.js';
import { rangeText } from './indices.js';
import { errorText, getMeta, readJson } from './api.js';
import {
  FIELDS, applyIndex, applyPlace, ensureOption, fillAggregateOptions, fillCorrectionOptions,
  fillQualityOptions, inputsOf, setFieldError,
} from './form.js';
import { followHistory, resume, submit } from './flow.js';
import { download, fitChart } from './result.js';
import { startNow } from './now.js';

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
  state.indices = {};
  for (const ix of indices) {
    state.indices[ix.name] = {
      name: ix.title, short: ix.short, floor: ix.floor, min: ix.min, max: ix.max,
      valueColours: Array.isArray(ix.valueColours) ? ix.valueColours : [],
      hourlyWindow: typeof ix.hourlyWindow === 'string' ? ix.hourlyWindow : '',
      bands: ix.bands.map((b) => ({
        name: b.name, lo: b.lo, hi: b.hi, colour: b.colour || undefined, abbr: b.abbr || undefined,
        pm25From: Number(b.pm25From) || 0,
      })),
    };
    if (ix.default) state.defaultIndex = ix.name;
  }
  state.formats = {};
  for (const f of formats) {
    state.formats[f.name] = { label: f.label, type: f.mediaType, ext: f.extension };
    if (f.default) state.defaultFormat = f.name;
  }
  state.resolutions = {};
  for (const r of Array.isArray(meta.resolutions) ? meta.resolutions : []) {
    state.resolutions[r.name] = {
      label: r.label, description: r.description, stepSeconds: Number(r.stepSeconds), maxSpanSeconds: Number(r.maxSpanSeconds),
    };
    if (r.default) state.defaultResolution = r.name;
  }
  const aggregate = meta.aggregate && typeof meta.aggregate === 'object' ? meta.aggregate : {};
  state.aggregate = {
    periods: Array.isArray(aggregate.periods) ? aggregate.periods : [],
    by: Array.isArray(aggregate.by) ? aggregate.by : [],
  };
  const quality = meta.quality && typeof meta.quality === 'object' ? meta.quality : {};
  state.quality = {
    values: Array.isArray(quality.values) ? quality.values.filter((v) => typeof v === 'string') : [],
    resolutions: Array.isArray(quality.resolutions)
      ? quality.resolutions.filter((r) => typeof r === 'string') : [],
    flags: (Array.isArray(quality.flags) ? quality.flags : [])
      .filter((f) => f && typeof f.name === 'string')
      .map((f) => ({ name: f.name, rule: typeof f.rule === 'string' ? f.rule : '' })),
  };
  const correction = meta.correction && typeof meta.correction === 'object' ? meta.correction : {};
  const rhMax = correction.rhMax && typeof correction.rhMax === 'object' ? correction.rhMax : {};
  state.correction = {
    methods: Array.isArray(correction.methods) ? correction.methods.filter((m) => typeof m === 'string') : [],
    summary: typeof correction.summary === 'string' ? correction.summary : '',
    source: typeof correction.source === 'string' && /^https:\/\//.test(correction.source) ? correction.source : '',
    maxKappa: Number(correction.maxKappa) || 0,
    rhMax: { default: Number(rhMax.default), min: Number(rhMax.min), max: Number(rhMax.max) },
  };
  state.limits = {
    maxSpanSeconds: Number(meta.limits.maxSpanSeconds),
    maxAggregateSpanSeconds: Number(meta.limits.maxAggregateSpanSeconds) || Number(meta.limits.maxSpanSeconds),
    maxRadiusKm: Number(meta.limits.maxRadiusKm),
    maxSensorTypes: Number(meta.limits.maxSensorTypes),
  };
  // The tagline names the indices this server computes.
  const titles = indices.map((ix) => `the ${ix.title}`);
  $('index-titles').textContent = titles.length > 1
    ? `: ${titles.slice(0, -1).join(', ')} and ${titles[titles.length - 1]}`
    : `: ${titles[0]}`;
  const index = $('index');
  index.replaceChildren(...indices.map((ix) => new Option(`${ix.title} (${rangeText({ lo: ix.min, hi: ix.max })})`, ix.name)));
  index.value = state.defaultIndex;
  const format = $('format');
  format.replaceChildren(...formats.map((f) => new Option(f.label, f.name)));
  format.value = state.defaultFormat;
  const resolution = $('resolution');
  resolution.replaceChildren(...Object.entries(state.resolutions).map(([name, r]) => new Option(
    `${r.label} · at most ${humanSpan(r.maxSpanSeconds)}`, name,
  )));
  resolution.value = state.defaultResolution;
  resolution.disabled = !Object.keys(state.resolutions).length;
  fillAggregateOptions();
  fillQualityOptions();
  fillCorrectionOptions();
  applyIndex();
}

async function loadMeta() {
  const form = $('query');
  const summary = $('meta-summary');
  try {
    const resp = await getMeta();
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
  startNow();
  resume();
}

// ---------------------------------------------------------------- init

// A module runs once the page is parsed (as a deferred script did), so
// every element is there.
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
  window.addEventListener('popstate', followHistory);
  let resizeTimer = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(fitChart, 150);
  });
  start();
}

init();
