// autoresearch dashboard: draws what /api/session returns (the shared read model) and redraws
// it when /api/stream says the ledger changed. No polling, no page reload, no remote resources.
// Every value from the ledger reaches the page through textContent, never as HTML.
"use strict";

const state = {
  picked: null,       // the session the user chose (or ?tag=); null follows the latest one
  shown: null,        // the tag of the session on the page
  sessionsKey: "",    // the session list last put in the dropdown
  view: null,         // the last /api/session payload, merged with what the page held
  rows: new Map(),    // experiment id -> row, every experiment of the shown session
  points: new Map(),  // experiment id -> chart point
  rowEls: new Map(),  // experiment id -> its <tr>, built once and rebuilt only when its row changes
  showAll: false,     // the table shows every matching experiment, not only TABLE_LIMIT of them
  drawn: {},          // what each part of the page was last drawn from: unchanged, it is not redrawn
  chartDirty: false,  // the chart's data changed since it was last drawn ...
  chartTimer: null,   // ... and a redraw is scheduled (at most one per CHART_GAP_MS)
  chartLast: 0,       // when the chart was last drawn (performance.now())
  chartGap: 0,        // the least time between two redraws: CHART_GAP_MS, more for a slow chart
  stamp: 0,           // the version of the last answer: the next request asks for newer
  range: null,        // the chart's visible range in that answer (points depend on it)
  sort: { key: "seq", desc: false },
  filter: "all",
  chart: null,
  source: null,       // the EventSource
  inflight: false,    // a refresh is running ...
  pending: false,     // ... and another change arrived meanwhile: fetch once more after it
  seen: new Map(),    // experiment id -> when it was first shown, to flash the new ones
  detailId: null,
  tick: null,
};

const $ = (id) => document.getElementById(id);
const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

// The nodes to put in an element: nested lists flattened, and the parts left out (`cond ? x :
// null`) dropped. append and replaceChildren would write a null as the text "null", so every
// child reaches the page through here (el and fill), never those methods directly.
function nodes(children) {
  return children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false)
    .map((c) => (c instanceof Node ? c : document.createTextNode(String(c))));
}

// Replaces an element's children (see nodes).
function fill(node, ...children) {
  node.replaceChildren(...nodes(children));
  return node;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  node.append(...nodes(children));
  return node;
}

// --- formatting ---------------------------------------------------------------------------------

// toPrecision's trailing zeros dropped, those after a decimal point only: 100 stays "100"
// (stripping any zeros at the end made it "1", and a gain of 100% read "1% better").
const dropZeros = (t) => (t.includes(".") ? t.replace(/\.?0+(?=e|$)/, "") : t);
const num = (v, d = 5) => (v === null || v === undefined ? "—" : dropZeros(Number(v).toPrecision(d)));
const signed = (v, d = 4) => (v === null || v === undefined ? "—" : (v > 0 ? "+" : v < 0 ? "−" : "±") + num(Math.abs(v), d));
const usd = (v) => (v === null || v === undefined ? "—" : "$" + Number(v).toFixed(v < 10 ? 3 : 2));

// The twin of views.format.fmt_rate: "12.5 experiments / hour", "4,210 … / hour", then per
// minute or per second once the hourly number gets long.
function perHour(rate, noun = "experiments") {
  const int = (v) => Math.round(v).toLocaleString("en");
  if (rate < 100) return `${num(rate, 3)} ${noun} / hour`;
  if (rate < 6000) return `${int(rate)} ${noun} / hour`;
  return rate / 60 < 6000 ? `${int(rate / 60)} ${noun} / min` : `${int(rate / 3600)} ${noun} / s`;
}

// Python's round(): a tie goes to the even neighbour (68.5 → 68, 69.5 → 70), where Math.round
// goes up. The tie test is exact: x % 1 of a double is.
const roundHalfEven = (x) => (Math.abs(x % 1) === 0.5 ? 2 * Math.round(x / 2) : Math.round(x));

// Python's f"{x:.1f}" for x ≥ 0. toFixed rounds the exact binary value as Python does, except
// on an exact tie (x.x25 or x.x75 is one only when x·4 is a whole number), which it rounds up
// where Python goes to the even digit: 4.25 is "4.2" there, "4.3" here.
function fixed1(x) {
  const tie = Number.isInteger(x * 4) && !Number.isInteger(x * 2);
  return (tie ? roundHalfEven(x * 10) / 10 : x).toFixed(1);
}

// The twin of views.format.fmt_duration: whole seconds rounded as Python rounds them, so
// `status`, `show` and the page say "1 min 09 s" of the same 68.6 s.
function duration(s) {
  if (s === null || s === undefined || !Number.isFinite(s)) return "—";
  const whole = roundHalfEven(s);
  if (whole < 60) return s < 10 ? fixed1(s) + " s" : `${whole} s`;
  const h = Math.floor(whole / 3600), m = Math.floor((whole % 3600) / 60), sec = whole % 60;
  return h ? `${h} h ${String(m).padStart(2, "0")} min` : `${m} min ${String(sec).padStart(2, "0")} s`;
}

// The twin of Python's format(v, "+.4g"), the form `status` prints the verified headline in
// (headline.Headline.describe): "+0.5", "-0.7646", "+1.5e+06".
function pyG(v, digits = 4) {
  const sign = v < 0 || Object.is(v, -0) ? "-" : "+";
  const a = Math.abs(v);
  if (a === 0) return sign + "0";
  const [mantissa, exp] = a.toExponential(digits - 1).split("e");
  const e = Number(exp);
  const strip = (t) => (t.includes(".") ? t.replace(/\.?0+$/, "") : t);
  if (e < -4 || e >= digits) {
    return `${sign}${strip(mantissa)}e${e < 0 ? "-" : "+"}${String(Math.abs(e)).padStart(2, "0")}`;
  }
  return sign + strip(a.toFixed(digits - 1 - e));
}

// An improvement is a decrease when minimizing: colour deltas by what they mean, not their sign.
function deltaClass(delta, direction) {
  if (delta === null || delta === undefined || delta === 0) return "";
  const good = direction === "maximize" ? delta > 0 : delta < 0;
  return good ? "better" : "worse";
}

// --- data ---------------------------------------------------------------------------------------

async function getJSON(url) {
  const resp = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  const body = await resp.json().catch(() => ({ error: `HTTP ${resp.status}` }));
  if (!resp.ok) throw Object.assign(new Error(body.error || `HTTP ${resp.status}`), { body });
  return body;
}

const q = () => (state.picked ? "?tag=" + encodeURIComponent(state.picked) : "");

// /api/session?since=<stamp> answers with what changed since the last answer (views/live.py):
// the experiments and chart points newer than the stamp, plus the summary and the chart's
// whole-session parts. The page keeps every row and point it was sent and merges the news in.
function sessionURL(since) {
  const p = new URLSearchParams();
  if (state.picked) p.set("tag", state.picked);
  if (since) {
    p.set("since", String(since));
    if (state.range) p.set("range", state.range.join(","));
  }
  const s = p.toString();
  return "api/session" + (s ? "?" + s : "");
}

// The merged lists are rebuilt only when something in them changed; otherwise the page keeps the
// arrays it has, and whatever was drawn from them (the table, the chart) is left as it is.
function merge(view) {
  const prev = view.full ? null : state.view;
  if (view.full) { state.rows.clear(); state.points.clear(); state.rowEls.clear(); }
  for (const e of view.experiments) state.rows.set(e.id, e);
  let moved = view.full || view.chart.points_full || view.chart.points.length > 0;
  if (view.full || view.chart.points_full) state.points.clear();
  else for (const id of view.chart.changed) moved = state.points.delete(id) || moved;
  for (const p of view.chart.points) state.points.set(p.exp_id, p);
  state.stamp = view.stamp;
  state.range = view.chart.y_min === null ? null : [view.chart.y_min, view.chart.y_max];
  const bySeq = (a, b) => a.seq - b.seq;
  view.experiments = prev && !view.experiments.length ? prev.experiments
    : [...state.rows.values()].sort(bySeq);
  view.chart.points = prev && !moved ? prev.chart.points : [...state.points.values()].sort(bySeq);
  return view;
}

async function fetchView() {
  let view = await getJSON(sessionURL(state.stamp));
  if (view.summary.tag !== state.shown) {
    resetSession(view.summary.tag);
    if (!view.full) view = await getJSON(sessionURL(0));
  }
  merge(view);
  // Rows the page holds and the session no longer has (or the reverse): start over.
  if (state.rows.size !== view.count) view = merge(await getJSON(sessionURL(0)));
  return view;
}

// Every update re-reads the session list too: a session started after the page opened shows up
// in the dropdown, and is followed when the user has not picked one.
async function refresh() {
  if (state.inflight) { state.pending = true; return; }
  state.inflight = true;
  try {
    do {
      state.pending = false;
      const [sessions, view] = await Promise.all([getJSON("api/sessions"), fetchView()]);
      showError(null);
      renderSessions(sessions, view.summary.tag);
      render(view);
    } while (state.pending);
  } catch (err) {
    showError(err);
  } finally {
    state.inflight = false;
  }
}

function showError(err) {
  const box = $("error");
  if (!err) { box.hidden = true; return; }
  const b = err.body || {};
  box.textContent = [b.error || err.message, b.where && "where: " + b.where, b.fix && "fix: " + b.fix]
    .filter(Boolean).join("\n");
  box.hidden = false;
}

function connect() {
  if (state.source) state.source.close();
  const live = $("live");
  const source = new EventSource("api/stream" + q());
  source.addEventListener("open", () => { live.className = "live on"; live.lastChild.textContent = "live"; });
  source.addEventListener("error", () => { live.className = "live off"; live.lastChild.textContent = "reconnecting"; });
  source.addEventListener("update", () => refresh());
  state.source = source;
}

// --- sessions -----------------------------------------------------------------------------------

// Another session on the page: forget the chart and which rows were already seen.
function resetSession(tag) {
  state.shown = tag;
  state.seen.clear();
  state.rows.clear();
  state.points.clear();
  state.rowEls.clear();
  state.showAll = false;
  state.drawn = {};
  state.view = null;
  state.stamp = 0;
  state.range = null;
  if (state.chart) { state.chart.destroy(); state.chart = null; }
  if (state.chartTimer) { clearTimeout(state.chartTimer); state.chartTimer = null; }
  state.chartDirty = false;
}

function renderSessions(s, shown) {
  const select = $("session-select");
  const key = JSON.stringify([shown, s.sessions.map((x) => [x.tag, x.status])]);
  // Rebuilt only when something changed, so an open dropdown is not closed under the user.
  if (key === state.sessionsKey) return;
  state.sessionsKey = key;
  fill(select, s.sessions.slice().reverse().map((x) =>
    el("option", { value: x.tag, selected: x.tag === shown }, `${x.tag} (${x.status})`)));
  select.value = shown;
}

// --- rendering ----------------------------------------------------------------------------------

// Each part is redrawn only when what it shows changed: an update that brings one experiment
// adds (or rebuilds) that experiment's row and leaves every other row, and the chart, alone.
function render(view) {
  state.view = view;
  const header = JSON.stringify([view.summary, view.confidence]);
  if (header !== state.drawn.header) {
    state.drawn.header = header;
    renderHeader(view.summary, view.confidence, view.experiments);
  }
  renderChartSoon(view.chart);
  renderFilters(view.experiments);
  renderTable();
  document.body.dataset.tag = view.summary.tag;
  document.body.dataset.experiments = String(view.experiments.length);
}

// The chart is drawn at once the first time (the page is not complete without it); after that,
// only when its data changed, and at most once per CHART_GAP_MS (or three times as long as a
// redraw takes, on a slow machine): the updates in between are drawn together.
const CHART_GAP_MS = 1000;

function renderChartSoon(c) {
  if (c.points !== state.drawn.points || chartKey(c) !== state.drawn.chartKey) state.chartDirty = true;
  if (!state.chartDirty) return;
  if (!state.chart) { drawChart(); return; }
  if (state.chartTimer) return;   // the one already scheduled draws the latest data
  const wait = Math.max(0, state.chartLast + state.chartGap - performance.now());
  state.chartTimer = setTimeout(() => { state.chartTimer = null; drawChart(); }, wait);
}

function drawChart() {
  const view = state.view;
  if (!view || !state.chartDirty) return;
  const c = view.chart;
  const t = performance.now();
  renderChart(c);
  state.chartLast = performance.now();
  state.chartGap = Math.max(CHART_GAP_MS, 3 * (state.chartLast - t));
  state.chartDirty = false;
  state.drawn.points = c.points;
  state.drawn.chartKey = chartKey(c);
}

// The chart's whole-session parts (running best, range, axis): the points are compared apart.
const chartKey = (c) => JSON.stringify(Object.entries(c)
  .filter(([k]) => k !== "points" && k !== "points_full" && k !== "changed"));

// The verified headline (headline.py: best vs baseline re-measured in interleaved pairs when the
// session ended), as `status` says it: the re-measured gain and its interval, "covers 0: not
// shown to be better" when the interval does, and "did not reproduce" when it lies below 0.
// Null when there is nothing to say (nothing kept, a live session, headline_pairs = 0).
const VERIFIED_CONFIDENCE = 95;   // headline.CONFIDENCE, the interval every headline records

function verifiedHeadline(s) {
  if (s.verified === null || s.verified === undefined) {
    // status: "not yet: `autoresearch report --verify` re-measures best vs baseline ...".
    if (s.live || s.headline_off || !s.best_id || s.best_id === s.baseline_id) return null;
    return { verdict: "unverified",
      text: "not verified yet: `autoresearch report --verify` re-measures best vs baseline" };
  }
  const est = s.verified_improvement;
  // A verification that measured no pair says why in its own words.
  if (est === null || est === undefined) return { verdict: "unverified", text: s.verified };
  // JSON has no infinity: one pair has an unbounded interval, sent as nulls.
  const low = s.verified_low ?? -Infinity, high = s.verified_high ?? Infinity;
  const pairs = s.verified_pairs;
  const worse = high < 0;
  const covers = low <= 0 && 0 <= high;
  let text;
  if (pairs >= 2 && low === high) {
    // Every pair gave the same difference: no interval to give (Interval.zero_noise).
    text = `verified: best vs baseline ${pyG(est)} ${s.metric} in every pair (${pairs} pairs)`;
  } else {
    const span = Number.isFinite(low) ? ` [${pyG(low)}, ${pyG(high)}] at ${VERIFIED_CONFIDENCE}%` : "";
    text = `verified: improves ${s.metric} by ${pyG(est)}${span}`;
  }
  if (covers) text += " (covers 0: not shown to be better)";
  if (worse) text += "; worse than the baseline when re-measured: the measurement it was kept on did not reproduce";
  return { verdict: worse ? "worse" : covers ? "covers-0" : "better", text };
}

// The best card without a baseline figure: still to come, or its attempt did not pass (status:
// "not measured yet (t-0001 did not pass)"), as a paused session whose baseline crashed has it.
function baselineMissing(s, experiments) {
  // What became of the attempt, as status says it (terminal._baseline_attempt): "did not pass"
  // only when it ended failing, not when it was cut short.
  const attempt = experiments.find((r) => r.id === s.baseline_id);
  if (!attempt || (s.live && OPEN_STATUSES.includes(attempt.status))) return "waiting for the baseline";
  const what = OPEN_STATUSES.includes(attempt.status)
    ? "was left open by a process that died; a resume runs it again"
    : attempt.status === "interrupted" ? "was interrupted; a resume runs it again" : "did not pass";
  return `baseline not measured yet (${s.baseline_id} ${what})`;
}

function renderHeader(s, conf, experiments) {
  document.title = `${s.tag} · autoresearch`;
  const pill = $("status-pill");
  pill.textContent = s.process_gone ? `${s.status} · process gone` : s.status;
  pill.className = "pill " + (s.process_gone ? "gone" : s.status);
  pill.title = s.process_gone ? "The ledger says the session runs, but no process holds its lock: "
    + "it was killed or the machine restarted. `autoresearch run` resumes it." : "";
  $("branch").textContent = s.branch;

  const arrow = s.direction === "maximize" ? "↑" : "↓";
  $("best").textContent = s.best === null ? "—" : `${num(s.best)} ${arrow}`;
  const pct = s.improvement_pct;
  const verified = verifiedHeadline(s);
  // A re-measured gain that is not shown to be real takes back the session's "% better".
  const doubted = verified && (verified.verdict === "covers-0" || verified.verdict === "worse");
  const kept = Boolean(s.best_id && s.best_id !== s.baseline_id);
  fill($("best-sub"), s.baseline === null ? baselineMissing(s, experiments) : [
    `baseline ${num(s.baseline)}`,
    // status: "best  the baseline (nothing kept yet)", not "0% better".
    !kept ? " · nothing kept yet" : pct === null || doubted ? ""
      : ` · ${num(Math.abs(pct), 3)}% ${pct >= 0 ? "better" : "worse"}`,
    kept ? el("div", { class: "nowrap", text: `best: ${s.best_id}` }) : null,
    verified ? el("div", { class: "verified " + verified.verdict, "data-verified": verified.verdict,
      title: s.verified || "", text: verified.text }) : null,
  ]);

  const box = $("confidence");
  box.className = "card stat confidence " + conf.level;
  $("conf-value").textContent = conf.label;
  $("conf-sub").textContent = conf.noise === null ? "noise σ not measured"
    : `improvement ${signed(conf.improvement)} ÷ σ ${num(conf.noise, 3)}`
      + (conf.noise_basis ? ` (${conf.noise_basis})` : "");
  $("conf-tip").textContent = conf.explanation;
  box.title = "";

  const c = s.counts;
  // Every experiment, the baseline included: the table's rows and `run -n`'s count.
  $("n-exp").textContent = String(c.total);
  // The twin of views.format.fmt_composition: "the baseline + 1 candidate".
  const plural = (n, noun) => `${n} ${noun}${n === 1 ? "" : "s"}`;
  $("n-exp-sub").textContent = [c.baseline ? "the baseline" : "",
    c.baseline || c.candidates ? plural(c.candidates, "candidate") : "",
    c.baseline_failed ? plural(c.baseline_failed, "failed baseline attempt") : ""]
    .filter(Boolean).join(" + ");
  // The twin of views.format.fmt_counts: the same outcomes, in the same order and words.
  const words = [["keep", "kept"], ["discard", "discarded"], ["crash", "crashed"],
    ["timeout", "timed out"], ["rejected", "rejected"], ["interrupted", "interrupted"],
    ["open", s.process_gone ? LEFT_OPEN_WORDS : "running"]];
  fill($("counts"), words
    .filter(([k]) => c[k] || k === "keep" || k === "discard" || k === "crash")
    .map(([k, label]) => el("span", { "data-count": k },
      el("i", { class: "dot", style: `background: var(--${k})` }),
      el("b", { text: String(c[k] || 0) }), " " + label)));

  state.elapsedBase = { s: s.elapsed_s, at: Date.now(), live: s.live };
  paintElapsed();
  const rate = s.experiments_per_hour;
  // The rate is per hour of running; after pauses between runs, say how much that was.
  const paused = s.active_s < 0.9 * s.elapsed_s;
  $("rate").textContent = [rate === null ? "" : perHour(rate),
    paused ? `${duration(s.active_s)} running` : "",
    s.max_hours ? `limit ${s.max_hours} h` : ""].filter(Boolean).join(" · ");
  if (state.tick) clearInterval(state.tick);
  // The clock of a live session ticks locally; no request is made for it.
  state.tick = s.live ? setInterval(paintElapsed, 1000) : null;

  $("spend").textContent = usd(s.cost_usd);
  const bar = $("spend-bar");
  if (s.max_usd) {
    const frac = s.cost_usd / s.max_usd;
    bar.style.width = Math.min(100, 100 * frac).toFixed(1) + "%";
    bar.className = frac >= 1 ? "over" : frac >= 0.8 ? "high" : "";
    $("spend-sub").textContent = `of ${usd(s.max_usd)} budget (${(100 * frac).toFixed(0)}%)`;
  } else {
    bar.style.width = "0";
    $("spend-sub").textContent = "no spending limit set";
  }
  // Machine time priced ([limits] compute_usd_per_hour): the spend is both parts, said so.
  if (s.compute_usd !== null && s.compute_usd !== undefined) {
    $("spend-sub").textContent += ` · ${s.spend}`;
  }
}

function paintElapsed() {
  const e = state.elapsedBase;
  if (!e) return;
  const s = e.live ? e.s + (Date.now() - e.at) / 1000 : e.s;
  $("elapsed").textContent = duration(s);
}

// --- the experiments table ----------------------------------------------------------------------

// The baseline is recorded with status `keep`, but it is not a kept change: it has a filter of
// its own, so "keep" counts what the header calls kept.
// A baseline attempt that failed (and was resumed) shows as what it was: crash or timeout.
// An open experiment of a session whose process died is not running: it was left open (status
// counts it "left open by a dead process"; a resume marks it interrupted).
const OPEN_STATUSES = ["proposed", "running"];
const LEFT_OPEN = "left open";
const LEFT_OPEN_WORDS = "left open by a dead process";   // views.format.fmt_counts
const processGone = () => Boolean(state.view && state.view.summary.process_gone);
const rowGroup = (r) => (r.kind === "baseline" && r.status === "keep" ? "baseline"
  : OPEN_STATUSES.includes(r.status) && processGone() ? LEFT_OPEN : r.status);
const groupClass = (g) => g.replace(/ /g, "-");

// A keep the review gate blocked is a discard with a review mark; it has a filter of its own
// (beside the statuses) so the blocked ones can be found at once.
const BLOCKED = "blocked by review";
const reviewBlocked = (r) => Boolean(r.review && r.review.blocked);
const matchesFilter = (r) => state.filter === "all"
  || (state.filter === BLOCKED ? reviewBlocked(r) : rowGroup(r) === state.filter);

function renderFilters(rows) {
  const counts = {};
  for (const r of rows) counts[rowGroup(r)] = (counts[rowGroup(r)] || 0) + 1;
  const statuses = ["all", ...Object.keys(counts).sort((a, b) =>
    (a === "baseline" ? -1 : b === "baseline" ? 1 : a.localeCompare(b)))];
  const blocked = rows.filter(reviewBlocked).length;
  if (blocked) { statuses.push(BLOCKED); counts[BLOCKED] = blocked; }
  if (!statuses.includes(state.filter)) state.filter = "all";
  const key = JSON.stringify([statuses, counts, rows.length, state.filter]);
  if (key === state.drawn.filters) return;
  state.drawn.filters = key;
  fill($("filters"), statuses.map((s) => el("button", {
    class: "chip" + (s === BLOCKED ? " review-chip" : ""), type: "button", "data-status": s,
    "aria-pressed": String(s === state.filter),
    title: s === LEFT_OPEN ? `${LEFT_OPEN_WORDS}: \`autoresearch run\` resumes the session, `
      + "marks them interrupted and asks the proposer again" : null,
    onclick: () => { state.filter = s; renderFilters(state.view.experiments); renderTable(); },
  }, s, el("span", { class: "n", text: String(s === "all" ? rows.length : counts[s]) }))));
}

// The status cell: the status, and the review gate's mark when it reviewed the experiment.
function reviewMark(r) {
  const m = r.review;
  if (!m) return null;
  const title = reviewHeadline(m) + (m.reviews > 1 ? ` (the last of ${m.reviews} reviews)` : "")
    + " · details in the experiment's drawer";
  if (m.blocked) return el("span", { class: "badge review-blocked", title, text: BLOCKED });
  const counts = REVIEW_COLOURS.filter((c) => m[c]).map((c) =>
    el("span", { class: "rcount " + c, text: `${m[c]} ${c}` }));
  // No LLM pass was made (the cap could not afford one): said, as results and status say it.
  const offline = m.offline_only ? " (offline reviewers only)" : "";
  return el("span", { class: "review-mark", title: title + (m.offline_only
    ? " · the LLM reviewers were not asked (the drawer says why)" : "") },
    counts.length ? [...counts, offline] : "reviewed" + offline);
}

// At most TABLE_LIMIT rows are in the page (unless the user asks for all): the newest ones in
// the id order, else the first ones of the chosen order. Filtering and sorting go over every
// experiment the page holds; only the rows shown are elements.
const TABLE_LIMIT = 300;
const FLASH_MS = 2500;

function compareRows(key, desc) {
  return (a, b) => {
    const va = a[key], vb = b[key];
    if (va === vb) return a.seq - b.seq;
    if (va === null || va === undefined) return 1;   // blanks last in both directions
    if (vb === null || vb === undefined) return -1;
    const cmp = typeof va === "string" ? va.localeCompare(vb) : va - vb;
    return desc ? -cmp : cmp;
  };
}

// Every matching experiment in the table's order, and the part of it that is shown.
function tableRows(rows) {
  const { key, desc } = state.sort;
  const all = rows.filter(matchesFilter);   // in id order already
  if (key === "seq") { if (desc) all.reverse(); } else all.sort(compareRows(key, desc));
  if (state.showAll || all.length <= TABLE_LIMIT) return { all, shown: all };
  const newestLast = key === "seq" && !desc;
  return { all, shown: newestLast ? all.slice(-TABLE_LIMIT) : all.slice(0, TABLE_LIMIT) };
}

function rowElement(r, direction, first) {
  const tr = el("tr", { tabindex: "0", "data-id": r.id, onclick: () => openDetail(r.id),
    onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); openDetail(r.id); } } },
    el("td", { class: "num mono", text: r.id }),
    el("td", {}, el("span", { class: "badge " + groupClass(rowGroup(r)), text: rowGroup(r) }), reviewMark(r)),
    el("td", { class: "num", text: num(r.objective) }),
    el("td", { class: "num " + deltaClass(r.delta, direction), text: signed(r.improvement) }),
    el("td", { class: "num " + deltaClass(r.delta, direction), text: signed(r.delta) }),
    el("td", { class: "num", text: String(r.runs) }),
    el("td", { class: "num", text: duration(r.duration_s) }),
    el("td", { class: "num", text: r.cost_usd ? usd(r.cost_usd) : "—" }),
    el("td", { class: "hyp", text: r.hypothesis.split("\n")[0] }));
  tr.$row = r;   // the row it was built from: a row the server sends again is a new object
  tr.$direction = direction;
  tr.$gone = processGone();   // an open row reads "left open" once the process is gone
  // New rows flash for a moment; a row rebuilt within that moment keeps the flash going.
  if (!first && Date.now() - (state.seen.get(r.id) ?? Date.now()) < FLASH_MS) tr.classList.add("fresh");
  return tr;
}

function renderTable() {
  const view = state.view;
  if (!view) return;
  const rows = view.experiments, direction = view.summary.direction;
  const { key, desc } = state.sort;
  const input = [key, desc, state.filter, state.showAll, direction, processGone()];
  const drawn = state.drawn.table;
  if (drawn && drawn.rows === rows && input.every((v, i) => v === drawn.input[i])) return;
  state.drawn.table = { rows, input };

  document.querySelectorAll("#experiments th[data-key]").forEach((th) => {
    const on = th.dataset.key === key;
    th.classList.toggle("sorted", on);
    th.classList.toggle("desc", on && desc);
    th.setAttribute("aria-sort", on ? (desc ? "descending" : "ascending") : "none");
  });
  const first = state.seen.size === 0;
  const { all, shown } = tableRows(rows);
  const now = Date.now();
  const want = shown.map((r) => {
    let tr = state.rowEls.get(r.id);
    if (!tr || tr.$row !== r || tr.$direction !== direction || tr.$gone !== processGone()) {
      const built = rowElement(r, direction, first);
      if (tr && tr.isConnected) tr.replaceWith(built);   // in place: no other row moves
      state.rowEls.set(r.id, built);
      tr = built;
    } else if (tr.classList.contains("fresh") && now - (state.seen.get(r.id) ?? now) >= FLASH_MS) {
      tr.classList.remove("fresh");   // flashed already: moving it must not flash it again
    }
    return tr;
  });
  // Only the rows that leave or join the shown part are removed or inserted; the rest stay.
  const body = $("experiments").tBodies[0];
  const keep = new Set(want);
  for (const tr of [...body.children]) if (!keep.has(tr)) tr.remove();
  let at = body.firstElementChild;
  for (const tr of want) {
    if (tr === at) at = at.nextElementSibling;
    else body.insertBefore(tr, at);
  }
  // The elements of rows no longer shown are let go once there are many of them.
  if (state.rowEls.size > 2 * want.length + TABLE_LIMIT) {
    for (const [id, tr] of state.rowEls) if (!tr.isConnected) state.rowEls.delete(id);
  }
  rows.forEach((r) => { if (!state.seen.has(r.id)) state.seen.set(r.id, first ? 0 : now); });
  $("table-empty").hidden = all.length > 0;
  renderMore(all.length, shown.length, key === "seq");
}

// "Showing the newest 300 of 2,002 experiments · show all 2,002" (and back).
function renderMore(total, shown, bySeq) {
  const box = $("table-more");
  const n = (v) => v.toLocaleString("en");
  if (total <= TABLE_LIMIT) { box.hidden = true; return; }
  box.hidden = false;
  $("table-more-text").textContent = state.showAll ? `Showing all ${n(total)} experiments.`
    : `Showing the ${bySeq ? "newest" : "first"} ${n(shown)} of ${n(total)} experiments`
      + (bySeq ? "." : " in this order.");
  $("table-more-toggle").textContent = state.showAll ? `show the ${bySeq ? "newest" : "first"} ${n(TABLE_LIMIT)} only`
    : `show all ${n(total)}`;
}

// --- the review gate's review -------------------------------------------------------------------

const REVIEW_COLOURS = ["red", "yellow", "purple"];
const REVIEW_MEANING = { red: "fix before merge", yellow: "worth a look",
  purple: "about existing code or past bugs" };

// The twin of views.review.headline: "review: 1 red, 2 yellow — blocked the keep".
function reviewHeadline(m) {
  const counts = REVIEW_COLOURS.filter((c) => m[c]).map((c) => `${m[c]} ${c}`).join(", ");
  return `review: ${counts || "no findings"}` + (m.blocked ? " — blocked the keep" : "");
}

// The code a finding is about, with the head revision's line numbers.
function evidenceView(f) {
  const width = String(f.start_line + f.evidence.split("\n").length).length;
  return el("pre", { class: "code evidence" }, f.evidence.replace(/\n$/, "").split("\n").map((line, i) =>
    el("span", {}, el("i", { class: "ln", text: String(f.start_line + i).padStart(width) }), line ? codeLine(line) : "\u200b")));
}

// One finding: its place and title at a glance, the explanation and the code on a click.
function findingView(f) {
  // The twin of views.review.finding_meta.
  const meta = [f.sources.join(", "), f.angle, f.category !== f.angle ? f.category : "",
    `confidence ${f.confidence.toFixed(2)}`, f.known ? "reported before" : ""].filter(Boolean).join(" · ");
  return el("details", { class: "finding " + f.colour, "data-colour": f.colour },
    el("summary", {},
      el("span", { class: "loc mono", text: f.location }), " ",
      el("span", { class: "ftitle", text: f.title }),
      f.blocking ? el("span", { class: "badge review-blocked", text: "blocked the keep" }) : null),
    el("div", { class: "fmeta", text: meta }),
    f.body && f.body !== f.title ? el("p", { class: "fbody", text: f.body }) : null,
    f.evidence.trim() ? evidenceView(f) : null);
}

function reviewView(rv) {
  const groups = REVIEW_COLOURS.map((c) => {
    const found = rv.findings.filter((f) => f.colour === c);
    return found.length ? el("div", { class: "review-group " + c, "data-colour": c },
      el("div", { class: "group-title", text: `${c}: ${REVIEW_MEANING[c]} (${found.length})` }),
      found.map(findingView)) : null;
  });
  const reviewers = rv.reviewers.map((r) => el("tr", { class: r.status },
    el("td", { text: r.name }), el("td", { text: r.kind }), el("td", { text: r.status }),
    el("td", { class: "num", text: r.status === "ok" ? String(r.findings) : "" }),
    el("td", { class: "num", text: r.seconds ? duration(r.seconds) : "" }),
    el("td", { class: "wrap", text: r.note })));
  return el("div", { class: "review" + (rv.blocked ? " blocked" : ""), "data-review": String(rv.id) },
    el("div", { class: "review-head", text: rv.headline }),
    groups,
    rv.failed.map((r) => el("p", { class: "review-failed", text: `${r.name} failed: ${r.note || "no detail"} (a failed reviewer never blocks)` })),
    el("div", { class: "review-cost", text: rv.cost_line }),
    el("details", { class: "review-reviewers" },
      el("summary", { text: `every reviewer (${rv.reviewers.length})` }),
      el("table", { class: "runs" },
        el("thead", {}, el("tr", {}, ["reviewer", "kind", "status", "findings", "time", "note"].map((h) => el("th", { text: h })))),
        el("tbody", {}, reviewers)),
      rv.scale ? el("p", { class: "note", text: rv.scale }) : null,
      rv.notes.map((n) => el("p", { class: "note", text: n }))));
}

// --- the detail drawer --------------------------------------------------------------------------

// A line of code whose bidirectional controls the server replaced by markers (⟨U+202E⟩, see
// unicode_controls.py): each marker stands out, as text like the rest.
function codeLine(line) {
  return line.split(/(\u27e8U\+[0-9A-F]{4}\u27e9)/).map((part, i) =>
    i % 2 ? el("span", { class: "bidi", title: "a bidirectional control character, shown instead of obeyed", text: part }) : part);
}

function diffView(text, warning) {
  return el("div", {}, warning ? el("p", { class: "bidi-warning", text: "⚠ " + warning }) : null,
    el("pre", { class: "code diff" }, text.split("\n").map((line) => {
      const cls = line.startsWith("+++") || line.startsWith("---") || line.startsWith("diff ") || line.startsWith("index ") ? "meta"
        : line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : line.startsWith("@@") ? "hunk" : "";
      return el("span", { class: cls }, line ? codeLine(line) : "\u200b");
    })));
}

// The environment fingerprint as report.html's table has it (report.content.flatten): one
// "dotted.key: value" line each, a missing value (JSON null, such as no GPU) as "—".
function fingerprintLines(data, prefix = "") {
  const shown = (v) => (v === null ? "—" : typeof v === "object"
    ? JSON.stringify(v, (k, x) => (x === null ? "—" : x)) : String(v));
  return Object.keys(data).sort().flatMap((key) => {
    const v = data[key];
    const name = prefix + key;
    return v !== null && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length
      ? fingerprintLines(v, name + ".") : [`${name}: ${shown(v)}`];
  });
}

function kv(pairs) {
  return el("dl", { class: "kv" }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)]));
}

async function openDetail(id) {
  state.detailId = id;
  $("detail-id").textContent = id;
  $("detail-title").textContent = "loading…";
  fill($("detail-body"));
  $("detail").hidden = false;
  $("scrim").hidden = false;
  let d;
  try {
    d = await getJSON("api/experiment/" + encodeURIComponent(id));
  } catch (err) {
    $("detail-title").textContent = err.message;
    return;
  }
  if (state.detailId !== id) return;   // another one was opened meanwhile
  const e = d.experiment;
  const direction = state.view?.summary.direction;
  $("detail-title").textContent = e.hypothesis.split("\n")[0] || e.id;
  const status = el("span", { class: "badge " + groupClass(rowGroup(e)), text: rowGroup(e) });
  const fp = d.fingerprint;
  fill($("detail-body"),
    el("h4", { text: "Decision" }),
    el("div", { class: "reason" }, status, " ", e.decision_reason || "—"),
    kv([["objective", num(e.objective, 6)], ["incumbent", num(e.incumbent_objective, 6)],
      ["improvement", el("span", { class: deltaClass(e.delta, direction), text: signed(e.improvement) })],
      ["Δ vs incumbent", el("span", { class: deltaClass(e.delta, direction), text: signed(e.delta) })],
      ["threshold", e.threshold === null ? null : num(e.threshold, 4)],
      ["runs", e.run_values.length ? `${e.runs}: ${e.run_values.map((v) => num(v)).join(", ")}` : String(e.runs)],
      ["duration", duration(e.duration_s)], ["cost", e.cost_usd ? usd(e.cost_usd) : null],
      ["commit", e.commit_sha ? el("span", { class: "mono", text: e.commit_sha.slice(0, 12) }) : null],
      ["files", e.files.length ? `${e.files.join(", ")} (+${e.lines_added} −${e.lines_removed})` : null]]),
    d.rationale ? el("p", { class: "note", text: d.rationale }) : null,
    d.reviews.length ? el("h4", { text: d.reviews.length > 1 ? `Reviews (${d.reviews.length}, the last decided)` : "Review" }) : null,
    d.reviews.map(reviewView),
    el("h4", { text: "Diff" }),
    d.diff ? diffView(d.diff, d.diff_warning) : el("p", { class: "note", text: d.diff_note || "No diff." }),
    el("h4", {}, "Log tail", d.log_path ? el("span", { class: "path mono", text: d.log_path }) : null),
    d.log_tail ? el("pre", { class: "code log" }, d.log_tail) : el("p", { class: "note", text: "No log recorded." }),
    el("h4", { text: "Environment fingerprint" }),
    fp ? el("pre", { class: "code fingerprint" }, fingerprintLines(fp).join("\n")) : el("p", { class: "note", text: "No fingerprint recorded." }),
    d.runs.length ? el("h4", { text: "Runs" }) : null,
    d.runs.length ? el("table", { class: "runs" },
      el("thead", {}, el("tr", {}, ["role", "#", "status", "exit", "duration", "metrics"].map((h) => el("th", { text: h })))),
      el("tbody", {}, d.runs.map((r) => el("tr", {},
        el("td", { text: r.role }), el("td", { text: String(r.idx) }), el("td", { text: r.status }),
        el("td", { text: r.exit_code === null ? "—" : String(r.exit_code) }), el("td", { text: duration(r.duration_s) }),
        el("td", { class: "mono", text: Object.entries(r.metrics).map(([k, v]) => `${k}=${num(v, 6)}`).join("  ") }))))) : null,
  );
}

function closeDetail() {
  state.detailId = null;
  $("detail").hidden = true;
  $("scrim").hidden = true;
}

// --- start --------------------------------------------------------------------------------------

async function start() {
  // The token arrives once in the URL; the server answered with a cookie, so drop it from the
  // address bar (and from history) before anything can copy it.
  const params = new URLSearchParams(location.search);
  if (params.has("token")) {
    params.delete("token");
    history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : ""));
  }
  // Each header holds a button, so the keyboard sorts too (Tab to it, Enter or Space); its
  // click bubbles up to the header, as a mouse click anywhere on the header does.
  document.querySelectorAll("#experiments th[data-key]").forEach((th) => th.addEventListener("click", () => {
    const key = th.dataset.key;
    state.sort = { key, desc: state.sort.key === key ? !state.sort.desc : false };
    renderTable();
  }));
  $("table-more-toggle").addEventListener("click", () => { state.showAll = !state.showAll; renderTable(); });
  $("detail-close").addEventListener("click", closeDetail);
  $("scrim").addEventListener("click", closeDetail);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeDetail(); });
  $("session-select").addEventListener("change", (e) => {
    state.picked = e.target.value;   // from now on this one is shown, even when others start
    resetSession(state.picked);
    refresh();
    connect();
  });
  state.picked = params.get("tag") || null;
  // The first `update` event from the stream triggers the first render (and fills the list).
  connect();
}

document.addEventListener("DOMContentLoaded", start);
