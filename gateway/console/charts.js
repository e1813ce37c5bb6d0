// The gateway console's charts and DOM helpers (no library): small canvas
// line charts, one per metric, one line per node, time on x (the window
// ends at the newest sample of any node), 0..a rounded maximum on y; the
// error-frames-by-code table; `el`, which makes elements from text only.
'use strict';

(() => {
  const PALETTE = ['#4f9cf9', '#f59e0b', '#34d399', '#f472b6', '#a78bfa', '#facc15', '#22d3ee', '#fb7185', '#a3e635', '#94a3b8'];
  const GRID = 'rgba(148, 163, 184, 0.18)';
  const TEXT = '#94a3b8';
  const FONT = '11px system-ui, -apple-system, "Segoe UI", sans-serif';

  /** A colour per node id, stable for the life of the page. */
  const assigned = new Map();
  function colorFor(id) {
    if (!assigned.has(id)) assigned.set(id, PALETTE[assigned.size % PALETTE.length]);
    return assigned.get(id);
  }

  /** The smallest "round" number (1, 2, 2.5, 5 x 10^k) >= v; 1 for nothing. */
  function niceMax(v) {
    if (!(v > 0) || !Number.isFinite(v)) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  const SI = ['', 'k', 'M', 'G', 'T'];
  const BIN = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  /** Formats `v` by kind: count, rate, bytes, bytes/s, pct. */
  function format(v, kind) {
    if (v == null || !Number.isFinite(v)) return '–';
    if (kind === 'pct') return `${v < 10 ? v.toFixed(1) : Math.round(v)}%`;
    if (kind === 'bytes' || kind === 'bytes/s') {
      let i = 0;
      while (Math.abs(v) >= 1024 && i < BIN.length - 1) { v /= 1024; i++; }
      const n = i === 0 || Math.abs(v) >= 100 ? Math.round(v) : v.toFixed(1);
      return `${n} ${BIN[i]}${kind === 'bytes/s' ? '/s' : ''}`;
    }
    let i = 0;
    while (Math.abs(v) >= 1000 && i < SI.length - 1) { v /= 1000; i++; }
    if (i > 0) return `${Math.abs(v) >= 100 ? Math.round(v) : v.toFixed(1)}${SI[i]}`;
    if (kind === 'count' || Number.isInteger(v)) return String(Math.round(v));
    return Math.abs(v) >= 100 ? String(Math.round(v)) : String(Number(v.toFixed(Math.abs(v) >= 10 ? 1 : 2)));
  }

  /**
   * Draws `lines` ([{color, values, endMs, intervalMs}], values oldest
   * first, null for a missing sample) on `canvas`, over the `windowMs`
   * before `endMs`. `kind` formats the y-axis maximum.
   */
  function draw(canvas, { lines, endMs, windowMs, kind }) {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(canvas.clientWidth, 50);
    const h = Math.max(canvas.clientHeight, 40);
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext('2d');
    if (!ctx) return;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = FONT;

    let max = 0;
    for (const l of lines) for (const v of l.values) if (Number.isFinite(v) && v > max) max = v;
    const top = niceMax(max);
    const pad = { l: 4, r: 4, t: 16, b: 16 };
    const pw = w - pad.l - pad.r;
    const ph = h - pad.t - pad.b;
    const x = (t) => pad.l + pw * (1 - (endMs - t) / windowMs);
    const y = (v) => pad.t + ph * (1 - Math.min(v, top) / top);

    // Grid: 0, half, max; and minutes.
    ctx.strokeStyle = GRID;
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (const f of [0, 0.5, 1]) {
      const gy = Math.round(pad.t + ph * f) + 0.5;
      ctx.moveTo(pad.l, gy);
      ctx.lineTo(w - pad.r, gy);
    }
    for (let m = windowMs / 4; m < windowMs; m += windowMs / 4) {
      const gx = Math.round(x(endMs - m)) + 0.5;
      ctx.moveTo(gx, pad.t);
      ctx.lineTo(gx, pad.t + ph);
    }
    ctx.stroke();

    ctx.fillStyle = TEXT;
    ctx.textBaseline = 'alphabetic';
    ctx.textAlign = 'left';
    ctx.fillText(format(top, kind), pad.l, pad.t - 4);
    ctx.fillText(windowMs >= 120_000 ? `-${Math.round(windowMs / 60_000)} min` : `-${Math.round(windowMs / 1000)} s`, pad.l, h - 3);
    ctx.textAlign = 'right';
    ctx.fillText('now', w - pad.r, h - 3);

    ctx.save();
    ctx.beginPath();
    ctx.rect(pad.l, 0, pw, h);
    ctx.clip();
    ctx.lineWidth = 1.6;
    ctx.lineJoin = 'round';
    for (const l of lines) {
      const n = l.values.length;
      ctx.strokeStyle = l.color;
      ctx.beginPath();
      let pen = false;
      for (let i = 0; i < n; i++) {
        const v = l.values[i];
        if (!Number.isFinite(v)) { pen = false; continue; }
        const px = x(l.endMs - (n - 1 - i) * l.intervalMs);
        if (px < pad.l - 2) continue;
        const py = y(v);
        if (pen) ctx.lineTo(px, py);
        else { ctx.moveTo(px, py); pen = true; }
      }
      ctx.stroke();
    }
    ctx.restore();
  }

  // [series key, title, kind]: rates are per second; connections and
  // inbox_depth are gauges, cpu is percent of one core, rss bytes.
  const METRICS = [
    ['connections', 'Connections', 'count'],
    ['connects', 'Connects /s', 'rate'],
    ['msgs_in', 'Messages in /s', 'rate'],
    ['deliveries', 'Deliveries /s', 'rate'],
    ['errors', 'Error frames /s', 'rate'],
    ['slow_closes', 'Slow-consumer closes /s', 'rate'],
    ['inbox_depth', 'Shard inbox depth', 'count'],
    ['bus_bytes', 'Bus traffic', 'bytes/s'],
    ['cpu', 'CPU (% of one core)', 'pct'],
    ['rss', 'Resident memory', 'bytes'],
  ];

  /** The window shown: the shortest of 1, 2, 5, 10 minutes that holds every line's samples. */
  const WINDOWS_MS = [60_000, 120_000, 300_000, 600_000];
  function windowFor(bodies) {
    const span = Math.max(0, ...bodies.map((b) => {
      const n = Math.max(0, ...Object.values(b.series).map((a) => (Array.isArray(a) ? a.length : 0)));
      return (n - 1) * (Number(b.interval_ms) || 1000);
    }));
    return WINDOWS_MS.find((w) => w >= span) || WINDOWS_MS[WINDOWS_MS.length - 1];
  }
  const lastOf = (a) => (Array.isArray(a) && a.length ? a[a.length - 1] : null);

  /** Makes an element: el('td', {className: 'num'}, 'text' | [children]). */
  function el(tag, props = {}, content) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k.startsWith('data-')) e.setAttribute(k, v);
      else e[k] = v;
    }
    if (Array.isArray(content)) e.append(...content.filter((c) => c != null));
    else if (content != null) e.textContent = String(content);
    return e;
  }

  /** Colours come from data, so they are set through the CSSOM (CSP allows it). */
  function paintSwatches(root) {
    for (const sw of root.querySelectorAll('.swatch[data-color]')) sw.style.backgroundColor = sw.dataset.color;
  }

  /** One chart per metric in `grid` (made once, kept in `charts`), one line per node of `ids`. */
  function renderCharts(grid, charts, ids, series) {
    const ok = ids.filter((id) => {
      const r = series.get(id);
      return r && r.ok && r.body && r.body.series;
    });
    // Each node's clock places its own samples; the window ends at the newest.
    const endMs = ok.length ? Math.max(...ok.map((id) => Number(series.get(id).body.end_ms) || 0)) : Date.now();
    const windowMs = windowFor(ok.map((id) => series.get(id).body));
    for (const [key, title, kind] of METRICS) {
      let c = charts.get(key);
      if (!c) {
        c = { legend: el('div', { className: 'chart-legend' }), now: el('span', { className: 'now' }), canvas: el('canvas', { className: 'chart' }) };
        const head = el('div', { className: 'chart-head' }, [el('h3', {}, title), c.now]);
        grid.append(el('figure', { className: 'chart-card', 'data-metric': key }, [head, c.canvas, c.legend]));
        charts.set(key, c);
      }
      let sum = 0;
      const lines = [];
      const items = [];
      for (const id of ok) {
        const b = series.get(id).body;
        const values = Array.isArray(b.series[key]) ? b.series[key] : [];
        const cur = lastOf(values);
        if (Number.isFinite(cur)) sum += cur;
        const color = colorFor(id);
        lines.push({ color, values, endMs: Number(b.end_ms) || endMs, intervalMs: Number(b.interval_ms) || 1000 });
        items.push(el('span', { className: 'item' }, [
          el('span', { className: 'swatch', 'data-color': color }), document.createTextNode(`${id} `), el('b', {}, format(cur, kind)),
        ]));
      }
      c.now.textContent = ok.length ? `now ${format(sum, kind)}` : 'no data';
      c.legend.replaceChildren(...items);
      paintSwatches(c.legend);
      draw(c.canvas, { lines, endMs, windowMs, kind });
    }
  }

  /** Error frames per code and node, summed over the window, in `table`. */
  function renderErrorCodes(table, ids, series) {
    const counts = new Map(); // code -> Map(node -> count)
    for (const id of ids) {
      const r = series.get(id);
      const by = r && r.ok && r.body && r.body.errors_by_code;
      if (!by || typeof by !== 'object') continue;
      for (const [code, values] of Object.entries(by)) {
        const n = Array.isArray(values) ? values.reduce((a, v) => a + (Number.isFinite(v) ? v : 0), 0) : 0;
        if (!counts.has(code)) counts.set(code, new Map());
        counts.get(code).set(id, n);
      }
    }
    const codes = [...counts.keys()].filter((c) => [...counts.get(c).values()].some((n) => n > 0)).sort();
    table.tHead.replaceChildren(el('tr', {}, [el('th', {}, 'code'), ...ids.map((id) => el('th', { className: 'num' }, id)), el('th', { className: 'num' }, 'total')]));
    const rows = codes.map((code) => {
      const per = counts.get(code);
      const total = [...per.values()].reduce((a, b) => a + b, 0);
      return el('tr', { 'data-code': code }, [el('td', {}, code), ...ids.map((id) => el('td', { className: 'num' }, format(per.get(id) || 0, 'count'))), el('td', { className: 'num' }, format(total, 'count'))]);
    });
    if (!rows.length) rows.push(el('tr', {}, [el('td', { className: 'dim', colSpan: ids.length + 2 }, 'no error frames in the window')]));
    table.tBodies[0].replaceChildren(...rows);
  }

  window.GatewayCharts = { el, draw, format, colorFor, niceMax, lastOf, paintSwatches, renderCharts, renderErrorCodes, METRICS };
})();
