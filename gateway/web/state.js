// airq web page: the state the modules share, in one object. Plain
// JavaScript modules, no globals: a module imports this object and reads
// or sets its fields; state only one module uses stays in that module.

export const state = {
  // What the server offers, from GET /api/meta (common/core has the
  // indices, their bands and their publishers' colours; the gateway its
  // limits): nothing of it is written here. Filled by loadMeta (app.js)
  // before the form is used.
  //   indices[name] = {name: title, short, floor, min, max, valueColours, hourlyWindow,
  //     bands: [{name, lo, hi, colour, abbr}]}; `floor` is the lowest
  //     minAqi it takes (the DAQI's 0: no lower bound); `valueColours`
  //     colours each value where the publisher does (DAQI).
  //   formats[name] = {label, type, ext}
  //   resolutions[name] = {label, description, stepSeconds, maxSpanSeconds}
  //   limits = {maxSpanSeconds, maxAggregateSpanSeconds, maxRadiusKm, maxSensorTypes}
  //   aggregate = {periods: [name], by: [name]}: what a query's
  //     `aggregate` takes
  //   quality = {values: ["all", "no-flags"], flags: [{name, rule}]}: what
  //     a query's `quality` takes
  //   correction = {methods, summary, source, maxKappa, rhMax: {default,
  //     min, max}}: what a query's `correction` takes
  indices: {},
  defaultIndex: '',
  formats: {},
  defaultFormat: '',
  resolutions: {},
  defaultResolution: '',
  limits: { maxSpanSeconds: 0, maxAggregateSpanSeconds: 0, maxRadiusKm: 0, maxSensorTypes: 0 },
  aggregate: { periods: [], by: [] },
  quality: { values: [], resolutions: [], flags: [] },
  correction: { methods: [], summary: '', source: '', maxKappa: 0, rhMax: { default: 0, min: 0, max: 0 } },
  // The query a result answers travels in its link beside the id, so that
  // a reload or a shared link shows (and refills the form with) it too.
  shownQuery: null,
};

// Until the options are in, a submit has nothing to check against.
export const optionsLoaded = () => state.defaultIndex !== '' && state.defaultFormat !== '';
