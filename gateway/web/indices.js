// airq web page: the air-quality indices as the page shows them (bars,
// bands, colours), from the server's description of them in the shared
// state (state.js; GET /api/meta fills it).

import { state } from './state.js';

export const indexOf = (key) => state.indices[key] || state.indices[state.defaultIndex];
export const rangeText = (b) => (b.lo === b.hi ? `${b.lo}` : `${b.lo}–${b.hi}`);

// The chart's bars of an index: one per value where the publisher
// colours values (the DAQI's ten), one per band for the others (a bar
// per US EPA value would be 501 bars).
export function barsOf(key) {
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

// The position in `bars` (or in an index's bands: any list of { lo, hi }) of a
// value, or -1.
export const barIndex = (bars, value) => bars.findIndex((b) => value >= b.lo && value <= b.hi);

// The colour of a value of an index on the map: by value where the
// publisher colours values (the DAQI's ten), else by band.
export function colourOf(indexKey) {
  const ix = indexOf(indexKey);
  const vc = ix.valueColours;
  const of = vc.length
    ? (v) => vc[Math.min(vc.length - 1, Math.max(0, v - ix.min))]
    : (v) => (ix.bands.find((b) => v >= b.lo && v <= b.hi) || ix.bands[ix.bands.length - 1]).colour;
  // An hour without enough data has no index (an empty AQI).
  return (v) => (Number.isFinite(v) ? of(v) : NO_INDEX_COLOUR);
}

// The colour of a reading whose index is not defined.
export const NO_INDEX_COLOUR = '#9E9E9E';

// A cell's index value: a number, or NaN where the answer has none.
export const indexValue = (cell) => (cell === '' || cell === null || cell === undefined ? NaN : Number(cell));

export function bandColours(indexKey) {
  const ix = indexOf(indexKey);
  const colour = colourOf(indexKey);
  return ix.bands.map((b) => ({ label: `${b.name} (${rangeText(b)})`, colour: colour(b.hi) }));
}
