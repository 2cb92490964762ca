// airq web page: the map of a result's sensors, on a canvas, over country
// outlines embedded in the gateway (Natural Earth via world-atlas, as
// TopoJSON): no tile server, no request to anyone but this gateway.
//
// One canvas draws everything (outlines, then the sensors), so tens of
// thousands of sensors cost one draw per frame, not one DOM node each.
// What keeps a frame short (a pan redraws every frame):
//
// - The outlines are projected once per zoom level into a `Path2D` in
//   pixels from the world's corner, holding only the rings near the view
//   (three views wide and high) and only the points at least half a pixel
//   apart; a pan within that region only moves the canvas's transform.
// - Sensors are gathered into a grid of CLUSTER_PX squares, fixed to the
//   world at each zoom level (so a pan does not regroup them): a square
//   holding several draws as one disc with their count, in the colour of
//   the worst of them. Zoomed in, each square holds one, drawn alone;
//   from CLUSTER_UNTIL on, every sensor is drawn alone.
// - The canvas is sized (which clears and resets it) only when its box
//   changes, never per frame.
//
// Rings that cross ±180° (Fiji, Russia, Antarctica) are unwrapped into
// one continuous ring (a ring around a pole closes along it) and drawn
// once more a world's width to the other side, so no edge spans the map.
//
// Pointer: drag pans, the wheel zooms at the pointer, Shift+drag draws a
// box, a click on a sensor picks it and on a group zooms into it.
// Keyboard (the canvas is focusable, role "application", so a screen
// reader passes the keys on): arrows pan, + and - zoom, N / P (or ] / [)
// step through the sensors in view from the one nearest the centre
// outwards, Enter picks, B draws a box (arrows size it, Shift+arrows move
// it, Enter uses it, Esc drops it). What the map shows is summarised in
// a description the canvas points to; the focused sensor's reading shows
// in a tooltip and in a live region.
//
// A module: result.js and now.js make maps with `create`.

import { nextTask } from './util.js';

const MAX_LAT = 85.0511; // Web Mercator's square world
const MIN_ZOOM = 1;
const MAX_ZOOM = 512;
const HIT_RADIUS = 8; // px: how close the pointer must be to a dot
// When to swap the 1:110 m outlines for the 1:50 m ones.
const DETAIL_ZOOM = 6;
// The side of a grouping square, in CSS pixels.
const CLUSTER_PX = 28;
// From this zoom on every sensor is drawn alone.
const CLUSTER_UNTIL = 128;
// Points of an outline closer than this (CSS px) to the last one kept are
// left out of the path: they would draw nothing.
const SIMPLIFY_PX = 0.5;
// The keyboard box: its first size and each arrow's step, in CSS px.
const BOX_START_PX = 80;
const BOX_STEP_PX = 20;

// ---- TopoJSON: delta-encoded, quantized arcs → rings of [lon, lat]

function decodeArcs(topo) {
  const [sx, sy] = topo.transform.scale;
  const [tx, ty] = topo.transform.translate;
  return topo.arcs.map((arc) => {
    let x = 0;
    let y = 0;
    return arc.map(([dx, dy]) => {
      x += dx;
      y += dy;
      return [x * sx + tx, y * sy + ty];
    });
  });
}

function ring(arcs, indices) {
  const out = [];
  for (const i of indices) {
    const arc = i < 0 ? arcs[~i].slice().reverse() : arcs[i];
    // Consecutive arcs share their end point.
    out.push(...(out.length ? arc.slice(1) : arc));
  }
  return out;
}

/**
 * `r` (a closed ring of [lon, lat]) with its longitudes made continuous:
 * a step of more than 180° is the ring crossing ±180°, so the rest of the
 * ring moves a whole turn the other way. A ring that ends a turn away
 * from where it began goes around a pole: it is closed along that pole.
 */
function unwrap(r) {
  const out = [];
  let shift = 0;
  for (let i = 0; i < r.length; i += 1) {
    const [lon, lat] = r[i];
    if (i > 0) {
      const prev = r[i - 1][0];
      if (lon - prev > 180) shift -= 360;
      else if (lon - prev < -180) shift += 360;
    }
    out.push([lon + shift, lat]);
  }
  if (shift !== 0 && out.length) {
    const mean = out.reduce((s, p) => s + p[1], 0) / out.length;
    const pole = mean < 0 ? -90 : 90;
    out.push([out[out.length - 1][0], pole], [out[0][0], pole]);
  }
  return out;
}

// How long outlines are projected before the page's thread is let go.
const SLICE_MS = 8;

// Every ring of every country polygon, unwrapped and projected, in slices
// of SLICE_MS (the 1:50 m outlines take a phone a few hundred ms).
async function worldRings(topo) {
  const arcs = decodeArcs(topo);
  const out = [];
  let slice = performance.now();
  for (const g of topo.objects.countries.geometries) {
    const polys = g.type === 'Polygon' ? [g.arcs] : g.type === 'MultiPolygon' ? g.arcs : [];
    for (const poly of polys) for (const r of poly) out.push(worldRing(unwrap(ring(arcs, r))));
    if (performance.now() - slice > SLICE_MS) {
      await nextTask();
      slice = performance.now();
    }
  }
  return out;
}

// The outlines by URL, loaded and projected once for every map of the
// page. The URLs come from the page, with their versions (so a browser
// may keep them for good: they change only with the binary).
const outlineSets = new Map();
function outlinesAt(url) {
  if (!outlineSets.has(url)) {
    const load = (async () => {
      const resp = await fetch(url, { headers: { Accept: 'application/json' } });
      if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`);
      return worldRings(await resp.json());
    })();
    // A failure is not kept: the next map asks again.
    load.catch(() => outlineSets.delete(url));
    outlineSets.set(url, load);
  }
  return outlineSets.get(url);
}

// ---- Web Mercator, world = [0, 1] × [0, 1]

export function project(lon, lat) {
  const l = Math.max(-MAX_LAT, Math.min(MAX_LAT, lat)) * Math.PI / 180;
  return [(lon + 180) / 360, (1 - Math.log(Math.tan(Math.PI / 4 + l / 2)) / Math.PI) / 2];
}

export function unproject(x, y) {
  const lon = x * 360 - 180;
  const lat = (2 * Math.atan(Math.exp(Math.PI * (1 - 2 * y))) - Math.PI / 2) * 180 / Math.PI;
  return [lon, lat];
}

const round = (v, digits) => Number(v.toFixed(digits));

// A ring in world coordinates, flat ([x0, y0, x1, y1, …]), with its box.
function worldRing(r) {
  const pts = new Float64Array(r.length * 2);
  let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
  r.forEach(([lon, lat], i) => {
    const [x, y] = project(lon, lat);
    pts[2 * i] = x;
    pts[2 * i + 1] = y;
    if (x < x0) x0 = x;
    if (x > x1) x1 = x;
    if (y < y0) y0 = y;
    if (y > y1) y1 = y;
  });
  return { pts, box: [x0, y0, x1, y1] };
}

/**
 * Makes a map in `root` (an element holding a canvas, a tooltip and a
 * legend list, see index.html). Options: `onBox(bbox)` is called with
 * [minLon, minLat, maxLon, maxLat] when the user draws a box; `onPick(reading)`
 * with the reading of a dot the user clicks (or presses Enter on).
 */
export function create(root, options) {
  const canvas = root.querySelector('canvas');
  const tip = root.querySelector('.map-tip');
  const live = root.querySelector('.map-live');
  const legend = root.querySelector('.map-legend');
  const ctx = canvas.getContext('2d');
  // What the map shows, in words: the canvas's description (with the
  // help text it already names).
  const summary = document.createElement('p');
  summary.className = 'visually-hidden map-summary';
  summary.id = `${root.id || 'map'}-summary`;
  root.append(summary);
  canvas.setAttribute('role', 'application');
  canvas.setAttribute('aria-roledescription', 'map');
  canvas.setAttribute('aria-describedby',
    [summary.id, canvas.getAttribute('aria-describedby')].filter(Boolean).join(' '));

  let outlines = null; // [{ pts, box }] in world coordinates
  let outlineCache = null; // { s, region, path }
  let detailed = false;
  let loadingDetail = false;
  let points = []; // { x, y, cell, value, colour, label, reading }
  let groups = null; // { s, list: [{ x, y, members, worst }] }
  let legendItems = [];
  let view = { zoom: 1, cx: 0.5, cy: 0.5 }; // centre in world coordinates
  let focused = -1; // index into points (keyboard)
  let hovered = null; // { point } or { group }
  let stepping = null; // { key, order } for N / P
  let box = null; // { x0, y0, x1, y1 } in world coordinates while drawing
  let keyBox = false; // the box is being drawn from the keyboard
  let drag = null;
  let frame = 0;
  let summaryTimer = 0;
  let cssW = 0;
  let cssH = 0;
  let dpr = 1;
  let sized = false;


  function setOutlines(r) {
    outlines = r;
    outlineCache = null;
    redraw();
  }

  outlinesAt(root.dataset.outlines)
    .then((r) => { if (!detailed) setOutlines(r); root.dataset.outlinesState = 'loaded'; })
    .catch((e) => { root.dataset.outlinesState = 'failed'; console.warn('airq map:', e); });

  function maybeDetail() {
    if (detailed || loadingDetail || view.zoom < DETAIL_ZOOM) return;
    loadingDetail = true;
    outlinesAt(root.dataset.detail)
      .then((r) => { detailed = true; setOutlines(r); root.dataset.detailState = 'loaded'; })
      .catch((e) => console.warn('airq map:', e))
      .finally(() => { loadingDetail = false; });
  }

  // world → CSS pixels
  function scale() { return Math.min(cssW, cssH * 1.6) * view.zoom; }
  function toScreen(x, y) {
    const s = scale();
    return [(x - view.cx) * s + cssW / 2, (y - view.cy) * s + cssH / 2];
  }
  function toWorld(px, py) {
    const s = scale();
    return [(px - cssW / 2) / s + view.cx, (py - cssH / 2) / s + view.cy];
  }
  // The view's extent in world coordinates.
  function extent() {
    const [x0, y0] = toWorld(0, 0);
    const [x1, y1] = toWorld(cssW, cssH);
    return [x0, y0, x1, y1];
  }

  // Sizes the canvas to its box (which clears it): only when that changed.
  function resize() {
    const rect = canvas.getBoundingClientRect();
    const w = Math.max(1, Math.round(rect.width));
    const h = Math.max(1, Math.round(rect.height));
    const d = window.devicePixelRatio || 1;
    if (sized && w === cssW && h === cssH && d === dpr) return;
    cssW = w;
    cssH = h;
    dpr = d;
    canvas.width = Math.round(cssW * dpr);
    canvas.height = Math.round(cssH * dpr);
    sized = true;
    outlineCache = null;
    groups = null;
  }

  function redraw() {
    if (frame) return;
    frame = requestAnimationFrame(() => { frame = 0; draw(); });
  }

  // The outlines near the view as one path, in pixels from the world's
  // corner at scale `s`: made again only when the zoom changes or the
  // view leaves the region it covers.
  function outlinePath(s) {
    const [vx0, vy0, vx1, vy1] = extent();
    const c = outlineCache;
    if (c && c.s === s && vx0 >= c.region[0] && vy0 >= c.region[1]
      && vx1 <= c.region[2] && vy1 <= c.region[3]) return c.path;
    const w = vx1 - vx0;
    const h = vy1 - vy0;
    const region = [vx0 - w, vy0 - h, vx1 + w, vy1 + h];
    const path = new Path2D();
    const min2 = (SIMPLIFY_PX / s) ** 2;
    let kept = 0;
    for (const { pts, box: b } of outlines) {
      // The ring where it is, and a ring unwrapped past ±180° a world's
      // width to the other side too.
      for (const shift of [0, -1, 1]) {
        if ((shift < 0 && b[2] <= 1) || (shift > 0 && b[0] >= 0)) continue;
        if (b[2] + shift < region[0] || b[0] + shift > region[2]
          || b[3] < region[1] || b[1] > region[3]) continue;
        let lx = pts[0];
        let ly = pts[1];
        path.moveTo((lx + shift) * s, ly * s);
        const n = pts.length;
        for (let i = 2; i < n; i += 2) {
          const x = pts[i];
          const y = pts[i + 1];
          if ((x - lx) ** 2 + (y - ly) ** 2 < min2 && i < n - 2) continue;
          path.lineTo((x + shift) * s, y * s);
          lx = x;
          ly = y;
          kept += 1;
        }
        path.closePath();
      }
    }
    outlineCache = { s, region, path };
    root.dataset.outlinePoints = String(kept);
    return path;
  }

  // The sensors gathered into the grid of the zoom level `s`.
  function grouped(s) {
    if (groups && groups.s === s) return groups.list;
    const cells = new Map();
    const alone = view.zoom >= CLUSTER_UNTIL;
    // A square's number (a number key is cheaper than a string): fewer
    // than 2²⁰ squares a side up to MAX_ZOOM.
    const side = CLUSTER_PX / s;
    points.forEach((p, i) => {
      const key = alone ? i : Math.floor(p.x / side) * 1048576 + Math.floor(p.y / side);
      let g = cells.get(key);
      if (!g) {
        g = { x: 0, y: 0, members: [], worst: i };
        cells.set(key, g);
      }
      g.x += p.x;
      g.y += p.y;
      g.members.push(i);
      if (rank(p.value) > rank(points[g.worst].value)) g.worst = i;
    });
    const list = [...cells.values()];
    for (const g of list) {
      g.x /= g.members.length;
      g.y /= g.members.length;
    }
    groups = { s, list };
    return list;
  }

  // At most half a square, so that neighbouring discs barely overlap.
const groupRadius = (n) => Math.min(CLUSTER_PX / 2, 7 + 1.6 * Math.log2(n));

  function draw() {
    const t0 = performance.now();
    resize();
    const s = scale();
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = '#dbe9f4';
    ctx.fillRect(0, 0, cssW, cssH);
    if (outlines) {
      const path = outlinePath(s);
      ctx.save();
      ctx.setTransform(dpr, 0, 0, dpr, dpr * (cssW / 2 - view.cx * s), dpr * (cssH / 2 - view.cy * s));
      // The world's square only: a ring past ±180° shows on the other
      // side, not in the void beyond the map's edge.
      ctx.beginPath();
      ctx.rect(0, 0, s, s);
      ctx.clip();
      ctx.fillStyle = '#f7f5ef';
      ctx.fill(path, 'evenodd');
      ctx.strokeStyle = '#9a9a9a';
      ctx.lineWidth = 0.6;
      ctx.stroke(path);
      ctx.restore();
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    }
    const radius = view.zoom >= 16 ? 5 : view.zoom >= 4 ? 4 : 3;
    let shown = 0;
    let marks = 0;
    let clusters = 0;
    const labels = [];
    for (const g of grouped(s)) {
      const [x, y] = toScreen(g.x, g.y);
      const many = g.members.length > 1;
      const r = many ? groupRadius(g.members.length) : radius;
      if (x < -r || y < -r || x > cssW + r || y > cssH + r) continue;
      shown += g.members.length;
      marks += 1;
      const p = points[g.worst];
      ctx.fillStyle = p.colour;
      if (!many && p.cell) {
        // A grid cell: its square, at least a point's size.
        const [x0, y0] = toScreen(p.cell.x0, p.cell.y0);
        const [x1, y1] = toScreen(p.cell.x1, p.cell.y1);
        const w = Math.max(2 * radius, Math.abs(x1 - x0));
        const h = Math.max(2 * radius, Math.abs(y1 - y0));
        ctx.fillRect(x - w / 2, y - h / 2, w, h);
        continue;
      }
      ctx.beginPath();
      ctx.arc(x, y, r, 0, 2 * Math.PI);
      ctx.fill();
      ctx.lineWidth = many ? 1.5 : 0.75;
      ctx.strokeStyle = many ? '#1b1b1b' : 'rgba(0,0,0,0.55)';
      ctx.stroke();
      if (many) {
        clusters += 1;
        labels.push([x, y, g.members.length]);
      }
    }
    // The counts, on a white halo so that they read on any colour.
    ctx.font = '600 10px system-ui, sans-serif';
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.lineWidth = 3;
    ctx.strokeStyle = '#ffffff';
    ctx.fillStyle = '#1b1b1b';
    for (const [x, y, n] of labels) {
      const text = n >= 1000 ? `${Math.round(n / 100) / 10}k` : String(n);
      ctx.strokeText(text, x, y);
      ctx.fillText(text, x, y);
    }
    root.dataset.drawn = String(shown);
    root.dataset.marks = String(marks);
    root.dataset.clusters = String(clusters);
    const mark = focused >= 0 ? focused : (hovered && hovered.point !== undefined ? hovered.point : -1);
    if (mark >= 0 && points[mark]) {
      // The sensor itself, on top of any group it is in.
      const [x, y] = toScreen(points[mark].x, points[mark].y);
      ctx.beginPath();
      ctx.arc(x, y, radius + 1, 0, 2 * Math.PI);
      ctx.fillStyle = points[mark].colour;
      ctx.fill();
      ctx.beginPath();
      ctx.arc(x, y, radius + 4, 0, 2 * Math.PI);
      ctx.lineWidth = 2.5;
      ctx.strokeStyle = '#1b1b1b';
      ctx.stroke();
    } else if (hovered && hovered.group) {
      const [x, y] = toScreen(hovered.group.x, hovered.group.y);
      ctx.beginPath();
      ctx.arc(x, y, groupRadius(hovered.group.members.length) + 3, 0, 2 * Math.PI);
      ctx.lineWidth = 2.5;
      ctx.strokeStyle = '#1b1b1b';
      ctx.stroke();
    }
    if (box) {
      const [x0, y0] = toScreen(box.x0, box.y0);
      const [x1, y1] = toScreen(box.x1, box.y1);
      ctx.fillStyle = 'rgba(30,80,160,0.15)';
      ctx.fillRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
      ctx.strokeStyle = '#1e50a0';
      ctx.lineWidth = 1.5;
      ctx.strokeRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
    }
    // For tests and the page's measurements: where the map looks, and
    // how long this frame's drawing took.
    root.dataset.view = JSON.stringify({ cx: view.cx, cy: view.cy, s, w: cssW, h: cssH });
    root.dataset.drawMs = (performance.now() - t0).toFixed(2);
    scheduleSummary();
  }

  // ---- what the map shows, in words (debounced: a pan redraws often)

  function scheduleSummary() {
    clearTimeout(summaryTimer);
    summaryTimer = setTimeout(summarise, 400);
  }

  function summarise() {
    const inView = visible();
    if (!points.length) {
      summary.textContent = 'The map shows no sensor.';
      return;
    }
    const byColour = new Map();
    for (const i of inView) byColour.set(points[i].colour, (byColour.get(points[i].colour) || 0) + 1);
    const parts = legendItems
      .filter(({ colour }) => byColour.get(colour))
      .map(({ colour, label }) => `${label}: ${byColour.get(colour)}`);
    const [lon0, lat1] = unproject(...toWorld(0, 0));
    const [lon1, lat0] = unproject(...toWorld(cssW, cssH));
    const where = `longitudes ${Math.round(Math.max(-180, lon0))} to ${Math.round(Math.min(180, lon1))}, `
      + `latitudes ${Math.round(lat0)} to ${Math.round(lat1)}`;
    summary.textContent = `${points.length} sensors on the map; ${inView.length} in view (${where})`
      + (parts.length ? `, by colour: ${parts.join('; ')}.` : '.');
  }

  // The sensors in view, by index.
  function visible() {
    const out = [];
    points.forEach((p, i) => {
      const [x, y] = toScreen(p.x, p.y);
      if (x >= 0 && y >= 0 && x <= cssW && y <= cssH) out.push(i);
    });
    return out;
  }

  function showTip(i, announce) {
    const p = points[i];
    if (!p) { tip.hidden = true; return; }
    placeTip(p.x, p.y, labelOf(p), announce);
  }

  function placeTip(wx, wy, text, announce) {
    const [x, y] = toScreen(wx, wy);
    tip.textContent = text;
    tip.hidden = false;
    tip.style.left = `${Math.round(Math.min(Math.max(4, x + 10), cssW - 200))}px`;
    tip.style.top = `${Math.round(Math.min(Math.max(4, y + 10), cssH - 40))}px`;
    if (announce) live.textContent = text;
  }

  const groupLabel = (g) => `${g.members.length} sensors here; the worst: ${labelOf(points[g.worst])}. Click to zoom in.`;

  // The sensor or group under the pointer: { point } or { group } or null.
  function nearest(px, py) {
    let best = null;
    let bestD = Infinity;
    for (const g of grouped(scale())) {
      const [x, y] = toScreen(g.x, g.y);
      const reach = g.members.length > 1 ? groupRadius(g.members.length) : HIT_RADIUS;
      const d = Math.hypot(x - px, y - py);
      if (d <= reach && d < bestD) {
        bestD = d;
        best = g.members.length > 1 ? { group: g } : { point: g.members[0] };
      }
    }
    return best;
  }

  function clampView() {
    view.zoom = Math.max(MIN_ZOOM, Math.min(MAX_ZOOM, view.zoom));
    view.cx = Math.max(0, Math.min(1, view.cx));
    view.cy = Math.max(0, Math.min(1, view.cy));
  }

  function zoomAt(factor, px, py) {
    const [wx, wy] = toWorld(px, py);
    view.zoom *= factor;
    clampView();
    const [nx, ny] = toWorld(px, py);
    view.cx += wx - nx;
    view.cy += wy - ny;
    clampView();
    maybeDetail();
    // The groups change with the zoom: what was under the pointer is not.
    hovered = null;
    if (focused >= 0) showTip(focused, false);
    else tip.hidden = true;
    redraw();
  }

  // A box's bounds, [minLon, minLat, maxLon, maxLat], within the world.
  function boxBounds(b) {
    const clampX = (x) => Math.max(0, Math.min(1, x));
    const [lon0, lat0] = unproject(clampX(Math.min(b.x0, b.x1)), clampX(Math.max(b.y0, b.y1)));
    const [lon1, lat1] = unproject(clampX(Math.max(b.x0, b.x1)), clampX(Math.min(b.y0, b.y1)));
    return [round(lon0, 4), round(lat0, 4), round(lon1, 4), round(lat1, 4)];
  }

  function finishBox() {
    const b = box;
    box = null;
    keyBox = false;
    root.dataset.mode = '';
    redraw();
    if (!b || !options.onBox) return;
    const bounds = boxBounds(b);
    if (bounds[2] - bounds[0] < 1e-4 || bounds[3] - bounds[1] < 1e-4) return;
    options.onBox(bounds);
  }

  canvas.addEventListener('pointerdown', (e) => {
    try { canvas.setPointerCapture(e.pointerId); } catch (err) { /* a synthetic pointer */ }
    const rect = canvas.getBoundingClientRect();
    const [px, py] = [e.clientX - rect.left, e.clientY - rect.top];
    if (e.shiftKey || root.dataset.mode === 'box') {
      const [wx, wy] = toWorld(px, py);
      box = { x0: wx, y0: wy, x1: wx, y1: wy };
      keyBox = false;
      drag = { box: true };
    } else {
      drag = { px, py, cx: view.cx, cy: view.cy };
    }
  });
  canvas.addEventListener('pointermove', (e) => {
    const rect = canvas.getBoundingClientRect();
    const [px, py] = [e.clientX - rect.left, e.clientY - rect.top];
    if (drag && drag.box) {
      [box.x1, box.y1] = toWorld(px, py);
      redraw();
      return;
    }
    if (drag) {
      const s = scale();
      view.cx = drag.cx - (px - drag.px) / s;
      view.cy = drag.cy - (py - drag.py) / s;
      clampView();
      tip.hidden = true;
      redraw();
      return;
    }
    const hit = nearest(px, py);
    const same = (hit && hovered && hit.point === hovered.point && hit.group === hovered.group) || (!hit && !hovered);
    if (!same) {
      hovered = hit;
      if (hit && hit.point !== undefined) showTip(hit.point, false);
      else if (hit) placeTip(hit.group.x, hit.group.y, groupLabel(hit.group), false);
      else if (focused < 0) tip.hidden = true;
      redraw();
    }
  });
  const endDrag = (e) => {
    if (drag && drag.box) {
      finishBox();
    } else if (drag && e.type === 'pointerup') {
      // A click (no drag): on a sensor picks it, on a group zooms into it.
      const rect = canvas.getBoundingClientRect();
      const [px, py] = [e.clientX - rect.left, e.clientY - rect.top];
      if (Math.hypot(px - drag.px, py - drag.py) < 4) {
        const hit = nearest(px, py);
        if (hit && hit.group) {
          const [gx, gy] = toScreen(hit.group.x, hit.group.y);
          zoomAt(4, gx, gy);
        } else if (hit && options.onPick) {
          options.onPick(points[hit.point].reading);
        }
      }
    }
    drag = null;
  };
  canvas.addEventListener('pointerup', endDrag);
  canvas.addEventListener('pointercancel', endDrag);
  canvas.addEventListener('pointerleave', () => {
    if (!drag && focused < 0) { hovered = null; tip.hidden = true; redraw(); }
  });
  canvas.addEventListener('wheel', (e) => {
    e.preventDefault();
    const rect = canvas.getBoundingClientRect();
    zoomAt(e.deltaY < 0 ? 1.25 : 0.8, e.clientX - rect.left, e.clientY - rect.top);
  }, { passive: false });

  // N / P: the sensors in view, nearest the centre first; the order is
  // made again once the view has moved.
  function step(dir) {
    const key = `${view.cx},${view.cy},${view.zoom},${points.length}`;
    if (!stepping || stepping.key !== key) {
      const order = visible();
      const d = (i) => (points[i].x - view.cx) ** 2 + (points[i].y - view.cy) ** 2;
      order.sort((a, b) => d(a) - d(b) || a - b);
      stepping = { key, order, at: -1 };
    }
    const { order } = stepping;
    if (!order.length) {
      live.textContent = 'No sensor in view: zoom out (minus) or pan (arrows).';
      return;
    }
    // From none: N takes the nearest, P the farthest.
    stepping.at = stepping.at < 0 ? (dir > 0 ? 0 : order.length - 1)
      : (stepping.at + dir + order.length) % order.length;
    focused = order[stepping.at];
    showTip(focused, true);
    root.dataset.focused = String(focused);
  }

  // B: a box at the view's centre, sized and moved with the arrows.
  function keyboardBox() {
    const [x0, y0] = toWorld(cssW / 2 - BOX_START_PX / 2, cssH / 2 - BOX_START_PX / 2);
    const [x1, y1] = toWorld(cssW / 2 + BOX_START_PX / 2, cssH / 2 + BOX_START_PX / 2);
    box = { x0, y0, x1, y1 };
    keyBox = true;
    root.dataset.mode = 'box';
    live.textContent = 'Drawing a box: the arrows size it, Shift and the arrows move it, Enter uses it, Escape drops it.';
  }

  // Where the keyboard's box is, told once the arrows pause.
  let boxTimer = 0;
  function announceBox() {
    clearTimeout(boxTimer);
    boxTimer = setTimeout(() => {
      if (!box) return;
      const [w, so, e, n] = boxBounds(box);
      live.textContent = `Box: longitudes ${w} to ${e}, latitudes ${so} to ${n}. Enter uses it.`;
    }, 500);
  }

  function moveBox(dx, dy, whole) {
    const d = BOX_STEP_PX / scale();
    if (whole) {
      box.x0 += dx * d; box.x1 += dx * d;
      box.y0 += dy * d; box.y1 += dy * d;
    } else {
      box.x1 = Math.max(box.x0 + d, box.x1 + dx * d);
      box.y1 = Math.max(box.y0 + d, box.y1 + dy * d);
    }
  }

  canvas.addEventListener('keydown', (e) => {
    if (keyBox && box) {
      const arrows = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
      if (arrows[e.key]) {
        e.preventDefault();
        moveBox(...arrows[e.key], e.shiftKey);
        announceBox();
        redraw();
        return;
      }
      if (e.key === 'Enter') { e.preventDefault(); finishBox(); return; }
    }
    const pan = 60 / scale();
    const keys = {
      ArrowLeft: () => { view.cx -= pan; },
      ArrowRight: () => { view.cx += pan; },
      ArrowUp: () => { view.cy -= pan; },
      ArrowDown: () => { view.cy += pan; },
      '+': () => zoomAt(1.5, cssW / 2, cssH / 2),
      '=': () => zoomAt(1.5, cssW / 2, cssH / 2),
      '-': () => zoomAt(1 / 1.5, cssW / 2, cssH / 2),
      n: () => step(1),
      ']': () => step(1),
      p: () => step(-1),
      '[': () => step(-1),
      b: () => { if (options.onBox) keyboardBox(); },
      Escape: () => { focused = -1; tip.hidden = true; box = null; keyBox = false; root.dataset.mode = ''; },
      Enter: () => { if (focused >= 0 && options.onPick) options.onPick(points[focused].reading); },
    };
    const act = keys[e.key] || keys[e.key.toLowerCase()];
    if (!act || e.ctrlKey || e.metaKey || e.altKey) return;
    e.preventDefault();
    act();
    clampView();
    if (focused >= 0) showTip(focused, false);
    redraw();
  });
  canvas.addEventListener('blur', () => {
    focused = -1;
    if (!hovered) tip.hidden = true;
    redraw();
  });

  new ResizeObserver(() => { sized = false; redraw(); }).observe(canvas);

  /** Starts drawing a box with the pointer (the "Draw a box" button). */
  function startBox() {
    root.dataset.mode = 'box';
    canvas.focus();
    live.textContent = 'Drag on the map to draw the box, or press B to draw it with the arrow keys.';
  }

  /**
   * Shows `readings` ({ lat, lon, value, label (text, or a function
   * giving it), and for a grid cell `cell`:
   * [minLon, minLat, maxLon, maxLat], drawn as its square}), coloured by
   * `palette` (value → colour), and fits the view to them, unless
   * `keepView` (a refresh of the same map keeps where the user looks).
   */
  function setPoints(readings, palette, items, keepView = false) {
    // A refresh keeps the sensor focused from the keyboard (by its id).
    const kept = keepView && focused >= 0 && points[focused] ? points[focused].reading.sensor : undefined;
    points = [];
    for (const r of readings) {
      if (!Number.isFinite(r.lat) || !Number.isFinite(r.lon)) continue;
      const [x, y] = project(r.lon, r.lat);
      let cell = null;
      if (Array.isArray(r.cell) && r.cell.every(Number.isFinite)) {
        const [x0, y0] = project(r.cell[0], r.cell[3]);
        const [x1, y1] = project(r.cell[2], r.cell[1]);
        cell = { x0, y0, x1, y1 };
      }
      points.push({ x, y, cell, value: r.value, colour: palette(r.value), label: r.label, reading: r });
    }
    groups = null;
    stepping = null;
    focused = kept === undefined ? -1 : points.findIndex((p) => p.reading.sensor === kept);
    hovered = null;
    if (focused >= 0) showTip(focused, false);
    else tip.hidden = true;
    root.dataset.points = String(points.length);
    if (!keepView || !cssW) fit();
    legendItems = items;
    legend.replaceChildren(...items.map(({ colour, label }) => {
      const li = document.createElement('li');
      const sw = document.createElement('span');
      sw.className = 'swatch';
      sw.style.background = colour;
      li.append(sw, document.createTextNode(label));
      return li;
    }));
    redraw();
  }

  function fit() {
    resize();
    if (!points.length) { view = { zoom: 1, cx: 0.5, cy: 0.5 }; return; }
    let [x0, y0, x1, y1] = [1, 1, 0, 0];
    for (const p of points) {
      x0 = Math.min(x0, p.x); x1 = Math.max(x1, p.x);
      y0 = Math.min(y0, p.y); y1 = Math.max(y1, p.y);
    }
    const span = Math.max(x1 - x0, (y1 - y0) * (cssW / Math.max(1, cssH)), 1e-4);
    view = { zoom: Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, 0.85 / span / (Math.min(cssW, cssH * 1.6) / cssW))),
      cx: (x0 + x1) / 2, cy: (y0 + y1) / 2 };
    clampView();
    maybeDetail();
  }

  /** Zooms about the view's centre (the + and − buttons). */
  function zoom(factor) { resize(); zoomAt(factor, cssW / 2, cssH / 2); }

  return { setPoints, startBox, redraw, zoom, point: (i) => points[i] };
}

// A point's text: a string, or a function making it when first shown (a
// map of thousands of points shows a few).
function labelOf(p) {
  return typeof p.label === 'function' ? p.label() : p.label;
}

// How bad a value is, for a group's colour: a missing value is the least.
function rank(value) {
  return Number.isFinite(value) ? value : -Infinity;
}
