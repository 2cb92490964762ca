// airq web page: the map of a result's sensors, on a canvas, over country
// outlines embedded in the gateway (Natural Earth via world-atlas, as
// TopoJSON): no tile server, no request to anyone but this gateway.
//
// One canvas draws everything (outlines, then one dot per sensor), so tens
// of thousands of points cost one draw per frame, not one DOM node each.
// Pointer: drag pans, the wheel zooms at the pointer, Shift+drag draws a
// box. Keyboard (the canvas is focusable): arrows pan, + and - zoom, N / P
// (or ] / [) step through the sensors shown, B starts a box at the view's
// centre. The focused or hovered sensor's reading shows in a tooltip and in
// a live region for screen readers.
//
// A module: result.js makes the map with `create`.

const MAX_LAT = 85.0511; // Web Mercator's square world
const MIN_ZOOM = 1;
const MAX_ZOOM = 512;
const HIT_RADIUS = 8; // px: how close the pointer must be to a dot
// When to swap the 1:110 m outlines for the 1:50 m ones.
const DETAIL_ZOOM = 6;

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

// Every ring of every country polygon.
function rings(topo) {
  const arcs = decodeArcs(topo);
  const out = [];
  for (const g of topo.objects.countries.geometries) {
    const polys = g.type === 'Polygon' ? [g.arcs] : g.type === 'MultiPolygon' ? g.arcs : [];
    for (const poly of polys) for (const r of poly) out.push(ring(arcs, r));
  }
  return out;
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
  let outlines = null; // rings in world coordinates
  let detailed = false;
  let loadingDetail = false;
  let points = []; // { x, y, colour, label, reading }
  let view = { zoom: 1, cx: 0.5, cy: 0.5 }; // centre in world coordinates
  let focused = -1; // index into points (keyboard)
  let hovered = -1;
  let order = []; // points' indices, west to east, for N / P
  let box = null; // { x0, y0, x1, y1 } in world coordinates while drawing
  let drag = null;
  let frame = 0;
  let cssW = 0;
  let cssH = 0;

  function toWorldRings(rs) {
    return rs.map((r) => r.map(([lon, lat]) => project(lon, lat)));
  }

  // The outlines' URLs come from the page, with their versions (so a
  // browser may keep them for good: they change only with the binary).
  async function loadOutlines(url) {
    const resp = await fetch(url, { headers: { Accept: 'application/json' } });
    if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`);
    return toWorldRings(rings(await resp.json()));
  }

  loadOutlines(root.dataset.outlines)
    .then((r) => { if (!detailed) outlines = r; root.dataset.outlinesState = 'loaded'; redraw(); })
    .catch((e) => { root.dataset.outlinesState = 'failed'; console.warn('airq map:', e); });

  function maybeDetail() {
    if (detailed || loadingDetail || view.zoom < DETAIL_ZOOM) return;
    loadingDetail = true;
    loadOutlines(root.dataset.detail)
      .then((r) => { outlines = r; detailed = true; redraw(); })
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

  function resize() {
    const rect = canvas.getBoundingClientRect();
    cssW = Math.max(1, Math.round(rect.width));
    cssH = Math.max(1, Math.round(rect.height));
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(cssW * dpr);
    canvas.height = Math.round(cssH * dpr);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  }

  function redraw() {
    if (frame) return;
    frame = requestAnimationFrame(() => { frame = 0; draw(); });
  }

  function draw() {
    resize();
    ctx.fillStyle = '#dbe9f4';
    ctx.fillRect(0, 0, cssW, cssH);
    if (outlines) {
      ctx.beginPath();
      const s = scale();
      for (const r of outlines) {
        for (let i = 0; i < r.length; i += 1) {
          const x = (r[i][0] - view.cx) * s + cssW / 2;
          const y = (r[i][1] - view.cy) * s + cssH / 2;
          if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
        }
        ctx.closePath();
      }
      ctx.fillStyle = '#f7f5ef';
      ctx.fill('evenodd');
      ctx.strokeStyle = '#9a9a9a';
      ctx.lineWidth = 0.6;
      ctx.stroke();
    }
    const radius = view.zoom >= 16 ? 5 : view.zoom >= 4 ? 4 : 3;
    ctx.lineWidth = 0.75;
    ctx.strokeStyle = 'rgba(0,0,0,0.55)';
    let shown = 0;
    for (const p of points) {
      const [x, y] = toScreen(p.x, p.y);
      if (x < -radius || y < -radius || x > cssW + radius || y > cssH + radius) continue;
      shown += 1;
      ctx.fillStyle = p.colour;
      if (p.cell) {
        // A grid cell: its square, at least a point's size.
        const [x0, y0] = toScreen(p.cell.x0, p.cell.y0);
        const [x1, y1] = toScreen(p.cell.x1, p.cell.y1);
        const w = Math.max(2 * radius, Math.abs(x1 - x0));
        const h = Math.max(2 * radius, Math.abs(y1 - y0));
        ctx.fillRect(x - w / 2, y - h / 2, w, h);
        continue;
      }
      ctx.beginPath();
      ctx.arc(x, y, radius, 0, 2 * Math.PI);
      ctx.fill();
      ctx.stroke();
    }
    root.dataset.drawn = String(shown);
    const mark = focused >= 0 ? focused : hovered;
    if (mark >= 0 && points[mark]) {
      const [x, y] = toScreen(points[mark].x, points[mark].y);
      ctx.beginPath();
      ctx.arc(x, y, radius + 4, 0, 2 * Math.PI);
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
  }

  function showTip(i, announce) {
    const p = points[i];
    if (!p) { tip.hidden = true; return; }
    const [x, y] = toScreen(p.x, p.y);
    tip.textContent = p.label;
    tip.hidden = false;
    tip.style.left = `${Math.round(Math.min(Math.max(4, x + 10), cssW - 200))}px`;
    tip.style.top = `${Math.round(Math.min(Math.max(4, y + 10), cssH - 40))}px`;
    if (announce) live.textContent = p.label;
  }

  function nearest(px, py) {
    let best = -1;
    let bestD = HIT_RADIUS * HIT_RADIUS;
    for (let i = 0; i < points.length; i += 1) {
      const [x, y] = toScreen(points[i].x, points[i].y);
      const d = (x - px) ** 2 + (y - py) ** 2;
      if (d <= bestD) { bestD = d; best = i; }
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
    if (focused >= 0) showTip(focused, false);
    redraw();
  }

  function finishBox() {
    const b = box;
    box = null;
    redraw();
    if (!b || !options.onBox) return;
    const [lon0, lat0] = unproject(Math.min(b.x0, b.x1), Math.max(b.y0, b.y1));
    const [lon1, lat1] = unproject(Math.max(b.x0, b.x1), Math.min(b.y0, b.y1));
    if (lon1 - lon0 < 1e-4 || lat1 - lat0 < 1e-4) return;
    options.onBox([round(lon0, 4), round(lat0, 4), round(lon1, 4), round(lat1, 4)]);
  }

  canvas.addEventListener('pointerdown', (e) => {
    canvas.setPointerCapture(e.pointerId);
    const rect = canvas.getBoundingClientRect();
    const [px, py] = [e.clientX - rect.left, e.clientY - rect.top];
    if (e.shiftKey || root.dataset.mode === 'box') {
      const [wx, wy] = toWorld(px, py);
      box = { x0: wx, y0: wy, x1: wx, y1: wy };
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
    const i = nearest(px, py);
    if (i !== hovered) {
      hovered = i;
      if (i >= 0) showTip(i, false); else if (focused < 0) tip.hidden = true;
      redraw();
    }
  });
  const endDrag = (e) => {
    if (drag && drag.box) {
      root.dataset.mode = '';
      finishBox();
    } else if (drag && e.type === 'pointerup' && options.onPick) {
      // A click (no drag) on a dot picks it.
      const rect = canvas.getBoundingClientRect();
      const [px, py] = [e.clientX - rect.left, e.clientY - rect.top];
      if (Math.hypot(px - drag.px, py - drag.py) < 4) {
        const i = nearest(px, py);
        if (i >= 0) options.onPick(points[i].reading);
      }
    }
    drag = null;
  };
  canvas.addEventListener('pointerup', endDrag);
  canvas.addEventListener('pointercancel', endDrag);
  canvas.addEventListener('pointerleave', () => {
    if (!drag && focused < 0) { hovered = -1; tip.hidden = true; redraw(); }
  });
  canvas.addEventListener('wheel', (e) => {
    e.preventDefault();
    const rect = canvas.getBoundingClientRect();
    zoomAt(e.deltaY < 0 ? 1.25 : 0.8, e.clientX - rect.left, e.clientY - rect.top);
  }, { passive: false });

  function step(dir) {
    if (!order.length) return;
    const at = order.indexOf(focused);
    const next = order[(at + dir + order.length) % order.length];
    focused = next;
    // Bring it into view.
    const [x, y] = toScreen(points[next].x, points[next].y);
    if (x < 0 || y < 0 || x > cssW || y > cssH) {
      view.cx = points[next].x;
      view.cy = points[next].y;
    }
    showTip(next, true);
    root.dataset.focused = String(next);
    redraw();
  }

  canvas.addEventListener('keydown', (e) => {
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
      Escape: () => { focused = -1; tip.hidden = true; box = null; root.dataset.mode = ''; },
      Enter: () => { if (focused >= 0 && options.onPick) options.onPick(points[focused].reading); },
    };
    const act = keys[e.key] || keys[e.key.toLowerCase()];
    if (!act) return;
    e.preventDefault();
    act();
    clampView();
    if (focused >= 0) showTip(focused, false);
    redraw();
  });
  canvas.addEventListener('blur', () => {
    focused = -1;
    if (hovered < 0) tip.hidden = true;
    redraw();
  });

  new ResizeObserver(() => redraw()).observe(canvas);

  /** Starts drawing a box with the pointer (the "Draw a box" button). */
  function startBox() {
    root.dataset.mode = 'box';
    canvas.focus();
  }

  /**
   * Shows `readings` ({ lat, lon, value, label, and for a grid cell
   * `cell`: [minLon, minLat, maxLon, maxLat], drawn as its square}), coloured by
   * `palette` (value → colour), and fits the view to them, unless
   * `keepView` (a refresh of the same map keeps where the user looks).
   */
  function setPoints(readings, palette, legendItems, keepView = false) {
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
      points.push({ x, y, cell, colour: palette(r.value), label: r.label, reading: r });
    }
    order = points.map((_, i) => i).sort((a, b) => points[a].x - points[b].x || points[a].y - points[b].y);
    focused = -1;
    hovered = -1;
    tip.hidden = true;
    root.dataset.points = String(points.length);
    if (!keepView || !cssW) fit();
    legend.replaceChildren(...legendItems.map(({ colour, label }) => {
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
    if (!points.length) { view = { zoom: 1, cx: 0.5, cy: 0.5 }; return; }
    let [x0, y0, x1, y1] = [1, 1, 0, 0];
    for (const p of points) {
      x0 = Math.min(x0, p.x); x1 = Math.max(x1, p.x);
      y0 = Math.min(y0, p.y); y1 = Math.max(y1, p.y);
    }
    resize();
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
