// The progress chart of the dashboard (Chart.js, vendored): the objective per experiment,
// discarded runs faint, kept ones labelled, the running best as a step line, the baseline
// marked, and repeated runs as vertical spread bars. Uses the helpers and `state` of app.js.
"use strict";

// Vertical bars for the spread of repeated runs, drawn over the points: a marker is often
// taller than the spread it stands for and would hide it. The bars use a darker shade of the
// marker's hue, so they read on top of it, and their caps are wider than the markers.
const SPREAD_RADIUS = { discarded: 4, kept: 6.5, baseline: 8 };
const spreadPlugin = {
  id: "arSpread",
  afterDatasetsDraw(chart) {
    const pts = chart.$ar?.points || [];
    const { ctx, scales: { x, y }, chartArea } = chart;
    ctx.save();
    ctx.beginPath();
    ctx.rect(chartArea.left, chartArea.top, chartArea.right - chartArea.left, chartArea.bottom - chartArea.top);
    ctx.clip();
    ctx.lineCap = "butt";
    // Read once per draw: each getComputedStyle may force the page's style to be recomputed.
    const colour = { kept: css("--spread-keep"), baseline: css("--spread-baseline"), discarded: css("--spread-discard") };
    for (const p of pts) {
      if (p.runs < 2 || p.high === p.low || p.off_scale) continue;
      // Whole pixels: a 2 px line on them is crisp, not a blur of two half-covered columns.
      const px = Math.round(x.getPixelForValue(p.seq));
      const lo = Math.round(y.getPixelForValue(p.low)), hi = Math.round(y.getPixelForValue(p.high));
      const cap = (SPREAD_RADIUS[p.role] || 4) + 6;
      const path = () => {
        ctx.beginPath();
        ctx.moveTo(px, lo); ctx.lineTo(px, hi);
        ctx.moveTo(px - cap, lo); ctx.lineTo(px + cap, lo);
        ctx.moveTo(px - cap, hi); ctx.lineTo(px + cap, hi);
      };
      ctx.strokeStyle = colour[p.role] || colour.discarded;
      ctx.lineWidth = 2;
      path(); ctx.stroke();
    }
    ctx.restore();
  },
};

// Each kept experiment is labelled with its short hypothesis on a slanted strip beside it (as in
// progress.png: report/labels.py). Labels are placed right to left; each goes up, or down when
// that leaves it more room, and keeps the longest prefix of its text that stays inside the plot
// and clear of every label already placed (a binary search: a longer prefix covers more). One
// that cannot keep LABEL_MIN_PX of text is left out; its tooltip still has the hypothesis.
const LABEL_SLANT = Math.PI / 7;
const LABEL_MIN_PX = 44;
const LABEL_HEIGHT = 13;

// The strip a text of `w` px drawn from (x, y) at `angle` covers (canvas coordinates).
function strip(x, y, angle, w, pad = 1.5) {
  const tx = Math.cos(angle), ty = Math.sin(angle), nx = -ty, ny = tx, h = LABEL_HEIGHT / 2 + pad;
  return [[-1, -pad], [-1, w + pad], [1, w + pad], [1, -pad]]
    .map(([s, t]) => [x + nx * s * h + tx * t, y + ny * s * h + ty * t]);
}

// Separating-axis test for two convex polygons.
function overlaps(a, b) {
  for (const poly of [a, b]) {
    for (let i = 0; i < poly.length; i++) {
      const [x1, y1] = poly[i], [x2, y2] = poly[(i + 1) % poly.length];
      const nx = y2 - y1, ny = x1 - x2;
      const pa = a.map(([x, y]) => nx * x + ny * y), pb = b.map(([x, y]) => nx * x + ny * y);
      if (Math.max(...pa) <= Math.min(...pb) || Math.max(...pb) <= Math.min(...pa)) return false;
    }
  }
  return true;
}

function labelBoxes(chart, pts, ctx) {
  const { x, y } = chart.scales, area = chart.chartArea;
  const cos = Math.cos(LABEL_SLANT), sin = Math.sin(LABEL_SLANT);
  const right = chart.width - 4;
  const prefix = (label, n) => (n >= label.length ? label : label.slice(0, n).trimEnd() + "…");
  const placed = [];
  const out = [];
  for (const p of [...pts].sort((a, b) => b.seq - a.seq)) {
    const px = x.getPixelForValue(p.seq), py = y.getPixelForValue(p.objective);
    let best = null;
    for (const up of [true, false]) {
      const ax = px + 7, ay = up ? py - 7 : py + 7, angle = up ? -LABEL_SLANT : LABEL_SLANT;
      const edge = up ? ay - area.top : area.bottom - ay;
      const room = Math.min((right - ax) / cos, (edge - LABEL_HEIGHT / 2) / sin);
      const free = (n) => {
        const w = ctx.measureText(prefix(p.label, n)).width;
        if (w > room) return null;
        const s = strip(ax, ay, angle, w);
        return placed.some((q) => overlaps(s, q)) ? null : s;
      };
      let lo = 1, hi = p.label.length, fit = null;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1, s = free(mid);
        if (s) { fit = { n: mid, s }; lo = mid + 1; } else hi = mid - 1;
      }
      if (!fit) continue;
      const text = prefix(p.label, fit.n);
      if (text !== p.label && ctx.measureText(text).width < LABEL_MIN_PX) continue;
      if (!best || fit.n > best.n) best = { n: fit.n, s: fit.s, box: { p, ax, ay, angle, text } };
    }
    if (best) { placed.push(best.s); out.push(best.box); }
  }
  return out;
}

const labelPlugin = {
  id: "arLabels",
  afterDatasetsDraw(chart) {
    const all = chart.$ar?.points || [];
    const { ctx, scales: { x, y } } = chart;
    ctx.save();
    ctx.font = "11px " + css("--sans");
    ctx.fillStyle = css("--keep");
    ctx.textBaseline = "middle";
    for (const { ax, ay, angle, text } of labelBoxes(chart, all.filter((p) => p.role === "kept" && p.label), ctx)) {
      ctx.save();
      ctx.translate(ax, ay);
      ctx.rotate(angle);
      ctx.fillText(text, 0, 0);
      ctx.restore();
    }
    // A point beyond the visible range sits at its edge as a triangle pointing the way it went;
    // its real value is written beside it.
    ctx.fillStyle = css("--muted");
    const offScale = all.filter((q) => q.off_scale);
    const range = offScale.length ? yRange(chart.$ar) : null;
    for (const p of offScale) {
      const px = x.getPixelForValue(p.seq), py = y.getPixelForValue(edgeValue(chart.$ar, p, range));
      ctx.fillText(`${num(p.objective)} ${p.off_scale === "high" ? "↑" : "↓"}`, px + 8, py);
    }
    ctx.restore();
  },
};

// A little air above and below the data, without inventing negative values for a metric
// that never goes below zero (losses, error rates, times). When the read model cut far outliers
// off (y_min/y_max), the range is fixed to the rest and the outliers are drawn at its edges.
function yRange(c) {
  const clipped = c.y_min !== null && c.y_min !== undefined;
  const yTicks = { color: css("--muted") };
  const ys = clipped ? [c.y_min, c.y_max]
    : c.points.flatMap((p) => [p.low, p.high]).concat(c.best_line.map(([, y]) => y));
  if (!ys.length) return { min: undefined, max: undefined, suggestedMin: undefined, suggestedMax: undefined, ticks: yTicks };
  const lo = Math.min(...ys), hi = Math.max(...ys);
  const pad = (hi - lo) * (clipped ? 0.1 : 0.06) || Math.abs(hi) * 0.05 || 1;
  const bottom = lo >= 0 ? Math.max(0, lo - pad) : lo - pad;
  // A fixed range would put its odd ends (14.7, 8.2) among the round ticks: leave them unlabelled.
  return clipped ? { min: bottom, max: hi + pad, suggestedMin: undefined, suggestedMax: undefined,
    ticks: { ...yTicks, includeBounds: false } }
    : { min: undefined, max: undefined, suggestedMin: bottom, suggestedMax: hi + pad, ticks: { ...yTicks, includeBounds: true } };
}

// Where an off-scale point is drawn: in the padding between the visible range and the edge.
// `r` is yRange(c), computed once by the caller: it goes over every point, so recomputing it per
// point made a redraw quadratic (seconds at 10,000 experiments, on every live update).
function edgeValue(c, p, r) {
  if (p.off_scale === "high") return (c.y_max + r.max) / 2;
  if (p.off_scale === "low") return (c.y_min + r.min) / 2;
  return p.objective;
}

// Integer ticks that always include the first and the last experiment, as many as fit.
function xTicks(maxSeq, widthPx) {
  const n = Math.max(2, maxSeq);
  const fit = Math.max(4, Math.floor(widthPx / 42));
  if (n <= fit) return Array.from({ length: n }, (_, i) => i + 1);
  const raw = n / fit, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const ticks = [1];
  for (let v = step; v < n - step / 2; v += step) if (v > 1 + step / 2) ticks.push(v);
  ticks.push(n);
  return ticks;
}

function renderChart(c) {
  const range = yRange(c);
  const byRole = (role) => c.points.filter((p) => p.role === role).map((p) => ({ x: p.seq, y: edgeValue(c, p, range), p }));
  const offStyle = (style) => (ctx) => (ctx.raw?.p?.off_scale ? "triangle" : style);
  const offTurn = (ctx) => (ctx.raw?.p?.off_scale === "low" ? 180 : 0);
  const datasets = [
    { label: "running best", type: "line", data: c.best_line.map(([x, y]) => ({ x, y })), stepped: "before",
      borderColor: css("--best"), borderWidth: 2, pointRadius: 0, pointHitRadius: 0, pointStyle: "line", fill: false, order: 3 },
    { label: "discarded", data: byRole("discarded"), backgroundColor: "rgba(152,162,179,.45)",
      borderColor: "rgba(152,162,179,.8)", pointRadius: 4, pointHoverRadius: 6, order: 2,
      pointStyle: offStyle("circle"), rotation: offTurn, arStyle: "circle" },
    { label: "kept", data: byRole("kept"), backgroundColor: css("--keep"), borderColor: "#ffffff",
      borderWidth: 1.5, pointRadius: 6.5, pointHoverRadius: 8, order: 1,
      pointStyle: offStyle("circle"), rotation: offTurn, arStyle: "circle" },
    { label: "baseline", data: byRole("baseline"), backgroundColor: css("--baseline"), borderColor: "#ffffff",
      borderWidth: 1.5, pointStyle: "rectRot", pointRadius: 8, pointHoverRadius: 10, order: 0 },
  ];
  const better = c.direction === "maximize" ? "higher is better" : "lower is better";
  const off = c.points.filter((p) => p.off_scale).length;
  $("chart-hint").textContent = `${c.points.length} measured · ${c.crashed_seqs.length} crashed or timed out · ${better}`
    + (off ? ` · ${off} off the scale (▲▼ at the edge)` : "")
    + " · bars span repeated runs · click a point for its diff";

  if (state.chart) {
    state.chart.$ar = c;
    state.chart.data.datasets.forEach((ds, i) => { ds.data = datasets[i].data; });
    state.chart.options.scales.y.title.text = `${c.metric} (${better})`;
    state.chart.options.scales.x.max = Math.max(2, c.max_seq + 0.5);
    Object.assign(state.chart.options.scales.y, range);
    state.chart.update("none");
    return;
  }
  const grid = css("--line"), muted = css("--muted");
  const chart = new Chart($("progress"), {
    type: "scatter",
    data: { datasets },
    options: {
      animation: false,
      maintainAspectRatio: false,
      interaction: { mode: "nearest", intersect: true },
      layout: { padding: { right: 90, top: 12 } },
      scales: {
        x: { type: "linear", min: 0.5, max: Math.max(2, c.max_seq + 0.5), grid: { color: grid },
          afterBuildTicks: (axis) => {
            axis.ticks = xTicks(axis.chart.$ar?.max_seq ?? c.max_seq, axis.chart.width).map((value) => ({ value }));
          },
          ticks: { color: muted, autoSkip: false, maxRotation: 0, callback: (v) => String(v) },
          title: { display: true, text: "experiment #", color: muted } },
        y: { ...range, grid: { color: grid },
          title: { display: true, text: `${c.metric} (${better})`, color: muted } },
      },
      plugins: {
        legend: { position: "top", align: "end", labels: { color: muted, usePointStyle: true, boxWidth: 8, padding: 16,
          // Each role's own marker, even when its first point is an off-scale triangle.
          generateLabels: (ch) => Chart.defaults.plugins.legend.labels.generateLabels(ch).map((item) => {
            const base = ch.data.datasets[item.datasetIndex].arStyle;
            return base ? { ...item, pointStyle: base, rotation: 0 } : item;
          }) } },
        tooltip: {
          callbacks: {
            title: (items) => { const p = items[0].raw.p; return p ? `${p.exp_id} · ${p.status}` : ""; },
            label: (item) => {
              const p = item.raw.p;
              if (!p) return `running best ${num(item.raw.y)}`;
              const lines = [`${c.metric} ${num(p.objective)}` + (p.runs > 1 ? ` (${p.runs} runs, ${num(p.low)}–${num(p.high)})` : "")];
              const exp = state.rows.get(p.exp_id);
              if (exp && exp.hypothesis) lines.push(exp.hypothesis.split("\n")[0].slice(0, 90));
              return lines;
            },
          },
        },
      },
      onClick: (_evt, elements) => {
        const hit = elements.find((e) => chart.data.datasets[e.datasetIndex].data[e.index]?.p);
        if (hit) openDetail(chart.data.datasets[hit.datasetIndex].data[hit.index].p.exp_id);
      },
      onHover: (evt, elements) => { evt.native.target.style.cursor = elements.length ? "pointer" : "default"; },
    },
    plugins: [spreadPlugin, labelPlugin],
  });
  // The plugins read the points from here; draw once more now that they can see them.
  chart.$ar = c;
  chart.update("none");
  state.chart = chart;
}
