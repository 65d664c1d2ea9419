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
    for (const p of pts) {
      if (p.runs < 2 || p.high === p.low) continue;
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
      ctx.strokeStyle = css(p.role === "kept" ? "--spread-keep" : p.role === "baseline" ? "--spread-baseline" : "--spread-discard");
      ctx.lineWidth = 2;
      path(); ctx.stroke();
    }
    ctx.restore();
  },
};

// Each kept experiment is labelled with its short hypothesis, slanted so neighbours overlap less.
const labelPlugin = {
  id: "arLabels",
  afterDatasetsDraw(chart) {
    const pts = (chart.$ar?.points || []).filter((p) => p.role === "kept" && p.label);
    const { ctx, scales: { x, y }, chartArea } = chart;
    ctx.save();
    ctx.font = "11px " + css("--sans");
    ctx.fillStyle = css("--keep");
    ctx.textBaseline = "middle";
    for (const p of pts) {
      const px = x.getPixelForValue(p.seq), py = y.getPixelForValue(p.objective);
      // Labels may run into the right padding; beyond it they are cut with an ellipsis.
      const room = (chart.width - px - 10) / Math.cos(Math.PI / 7);
      let text = p.label;
      while (text.length > 6 && ctx.measureText(text + "…").width > room) text = text.slice(0, -1);
      ctx.save();
      ctx.translate(px + 7, py - 7);
      ctx.rotate(-Math.PI / 7);
      ctx.fillText(text === p.label ? text : text.trimEnd() + "…", 0, 0);
      ctx.restore();
    }
    ctx.restore();
  },
};

// A little air above and below the data, without inventing negative values for a metric
// that never goes below zero (losses, error rates, times).
function yRange(c) {
  const ys = c.points.flatMap((p) => [p.low, p.high]).concat(c.best_line.map(([, y]) => y));
  if (!ys.length) return { suggestedMin: undefined, suggestedMax: undefined };
  const lo = Math.min(...ys), hi = Math.max(...ys);
  const pad = (hi - lo) * 0.06 || Math.abs(hi) * 0.05 || 1;
  return { suggestedMin: lo >= 0 ? Math.max(0, lo - pad) : lo - pad, suggestedMax: hi + pad };
}

function renderChart(c) {
  const byRole = (role) => c.points.filter((p) => p.role === role).map((p) => ({ x: p.seq, y: p.objective, p }));
  const datasets = [
    { label: "running best", type: "line", data: c.best_line.map(([x, y]) => ({ x, y })), stepped: "before",
      borderColor: css("--best"), borderWidth: 2, pointRadius: 0, pointHitRadius: 0, fill: false, order: 3 },
    { label: "discarded", data: byRole("discarded"), backgroundColor: "rgba(152,162,179,.45)",
      borderColor: "rgba(152,162,179,.8)", pointRadius: 4, pointHoverRadius: 6, order: 2 },
    { label: "kept", data: byRole("kept"), backgroundColor: css("--keep"), borderColor: "#ffffff",
      borderWidth: 1.5, pointRadius: 6.5, pointHoverRadius: 8, order: 1 },
    { label: "baseline", data: byRole("baseline"), backgroundColor: css("--baseline"), borderColor: "#ffffff",
      borderWidth: 1.5, pointStyle: "rectRot", pointRadius: 8, pointHoverRadius: 10, order: 0 },
  ];
  const better = c.direction === "maximize" ? "higher is better" : "lower is better";
  $("chart-hint").textContent = `${c.points.length} measured · ${c.crashed_seqs.length} crashed or timed out · ${better}`
    + " · bars span repeated runs · click a point for its diff";

  if (state.chart) {
    state.chart.$ar = c;
    state.chart.data.datasets.forEach((ds, i) => { ds.data = datasets[i].data; });
    state.chart.options.scales.y.title.text = `${c.metric} (${better})`;
    state.chart.options.scales.x.max = Math.max(2, c.max_seq + 0.5);
    Object.assign(state.chart.options.scales.y, yRange(c));
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
          ticks: { color: muted, precision: 0, stepSize: c.max_seq > 40 ? undefined : 1,
            callback: (v) => (Number.isInteger(v) ? String(v) : "") },
          title: { display: true, text: "experiment #", color: muted } },
        y: { ...yRange(c), grid: { color: grid }, ticks: { color: muted },
          title: { display: true, text: `${c.metric} (${better})`, color: muted } },
      },
      plugins: {
        legend: { position: "top", align: "end", labels: { color: muted, usePointStyle: true, boxWidth: 8 } },
        tooltip: {
          callbacks: {
            title: (items) => { const p = items[0].raw.p; return p ? `${p.exp_id} · ${p.status}` : ""; },
            label: (item) => {
              const p = item.raw.p;
              if (!p) return `running best ${num(item.raw.y)}`;
              const lines = [`${c.metric} ${num(p.objective)}` + (p.runs > 1 ? ` (${p.runs} runs, ${num(p.low)}–${num(p.high)})` : "")];
              const exp = state.view?.experiments.find((e) => e.id === p.exp_id);
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
