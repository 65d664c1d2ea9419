"""The one read model of a session, shared by the dashboard, the report and the tests.

Everything a human sees about a session (header numbers, chart series, the confidence figure,
the experiments table) is computed here, once, from the ledger. The web page, progress.png and
report.html only draw what this module returns, so they cannot disagree with each other.

"Best" means the current incumbent: the last kept experiment (the baseline while nothing is kept).
That is what the session branch holds and what `finalize` turns into branches. A lucky discarded
draw can have a better raw number, but it lost its comparison, so it is not the result.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from autoresearch.errors import AutoresearchError
from autoresearch.ledger import ExperimentRow, Ledger, RunRow, SessionRow
from autoresearch.state import SessionLock, StatePaths

LEDGER_PATH = Path(".autoresearch") / "ledger.db"

KEPT = ("keep",)
DISCARDED = ("discard", "rejected")
CRASHED = ("crash", "timeout")
OPEN = ("proposed", "running")
# Session states in which the clock is still running (elapsed time counts up to now).
LIVE_SESSION_STATES = ("created", "running")

Level = Literal["green", "yellow", "red", "unknown"]


class LedgerNotFoundError(AutoresearchError):
    """There is no ledger in this repository (no session ever ran here)."""


class SessionNotFoundError(AutoresearchError):
    """The requested session tag is not in the ledger."""


@dataclass(frozen=True)
class ChartPoint:
    """One experiment with a measured objective. `low`/`high` span its repeated runs."""

    seq: int
    exp_id: str
    status: str
    role: Literal["baseline", "kept", "discarded"]
    objective: float
    low: float
    high: float
    runs: int
    label: str


@dataclass(frozen=True)
class ChartData:
    metric: str
    direction: str
    points: list[ChartPoint]
    # The incumbent as a step function of the experiment number: (seq, value) at each change,
    # closed by a final point at the last experiment so the line reaches the right edge.
    best_line: list[tuple[int, float]]
    baseline: float | None
    crashed_seqs: list[int]
    max_seq: int


@dataclass(frozen=True)
class Confidence:
    """How far the best result stands above the noise: improvement / σ of the baseline repeats."""

    ratio: float | None
    level: Level
    improvement: float | None
    noise: float | None
    noise_runs: int
    label: str
    explanation: str


@dataclass(frozen=True)
class ExperimentView:
    id: str
    seq: int
    kind: str
    status: str
    objective: float | None
    incumbent_objective: float | None
    delta: float | None
    threshold: float | None
    runs: int
    run_values: list[float]
    duration_s: float | None
    cost_usd: float
    hypothesis: str
    decision_reason: str
    commit_sha: str | None
    parent_commit: str | None
    files: list[str]
    lines_added: int
    lines_removed: int
    started_at: float
    finished_at: float | None


@dataclass(frozen=True)
class SessionSummary:
    tag: str
    branch: str
    base_commit: str
    status: str
    metric: str
    direction: str
    proposer: str
    created_at: float
    last_activity: float
    elapsed_s: float
    live: bool
    # The ledger says running but no process holds the session lock (killed, machine rebooted).
    process_gone: bool
    experiments_per_hour: float | None
    counts: dict[str, int]
    baseline: float | None
    baseline_id: str | None
    best: float | None
    best_id: str | None
    best_hypothesis: str
    improvement: float | None
    improvement_pct: float | None
    noise: float | None
    cost_usd: float
    max_usd: float | None
    max_hours: float | None
    max_experiments: int | None


@dataclass(frozen=True)
class SessionView:
    summary: SessionSummary
    chart: ChartData
    confidence: Confidence
    experiments: list[ExperimentView] = field(default_factory=list)


# --- opening the ledger -------------------------------------------------------------------------


def open_ledger(repo: Path) -> Ledger:
    """The repository's ledger, read-only: views must never change a session."""
    path = repo / LEDGER_PATH
    if not path.is_file():
        raise LedgerNotFoundError(
            "no autoresearch ledger in this repository",
            where=str(path),
            fix="run `autoresearch run` here first (or pass --repo to point at the repository)",
        )
    return Ledger(path, readonly=True)


def resolve_session(ledger: Ledger, tag: str | None) -> SessionRow:
    """The session named `tag`, or the most recently active one when no tag is given."""
    session = ledger.session(tag) if tag else ledger.latest_session()
    if session is not None:
        return session
    known = [s.tag for s in ledger.sessions()]
    if tag is None:
        raise SessionNotFoundError(
            "the ledger has no session yet", where=str(ledger.path), fix="run `autoresearch run`"
        )
    raise SessionNotFoundError(
        f"no session tagged {tag!r}",
        where=str(ledger.path),
        fix=("known tags: " + ", ".join(known)) if known else "run `autoresearch run` first",
    )


# --- building the view --------------------------------------------------------------------------


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def short_label(hypothesis: str, limit: int = 48) -> str:
    """The first line of a hypothesis, cut at a word boundary to fit a chart label."""
    line = hypothesis.strip().splitlines()[0] if hypothesis.strip() else ""
    if len(line) <= limit:
        return line
    cut = line[: limit - 1].rsplit(" ", 1)[0] if " " in line[: limit - 1] else line[: limit - 1]
    return cut.rstrip(",;:. ") + "…"


def _run_values(runs: Sequence[RunRow], metric: str) -> list[float]:
    values = [r.metrics.get(metric) for r in runs]
    return [v for v in values if v is not None and math.isfinite(v)]


def _better(a: float, b: float, direction: str) -> bool:
    return a > b if direction == "maximize" else a < b


def _improvement(best: float | None, baseline: float | None, direction: str) -> float | None:
    """Signed so that a positive number is always an improvement, whatever the direction."""
    if not (_finite(best) and _finite(baseline)):
        return None
    assert best is not None and baseline is not None
    return best - baseline if direction == "maximize" else baseline - best


def confidence(
    improvement: float | None, noise: float | None, noise_runs: int, metric: str
) -> Confidence:
    """Colour thresholds: ≥ 2σ green, 1–2σ yellow, < 1σ red (see the explanation text)."""
    meaning = (
        "Improvement of the best kept result over the baseline, in units of the noise floor σ "
        f"(the standard deviation of {metric} over the baseline's "
        f"{f'{noise_runs} ' if noise_runs else ''}repeated runs). "
        "≥ 2σ (green): unlikely to be noise. 1–2σ (yellow): suggestive, worth re-measuring. "
        "< 1σ (red): within run-to-run noise."
    )
    if improvement is None:
        return Confidence(None, "unknown", None, noise, noise_runs, "—",
                          "No baseline measurement yet. " + meaning)
    if noise is None or not math.isfinite(noise) or noise < 0:
        return Confidence(None, "unknown", improvement, noise, noise_runs, "σ unknown",
                          "The noise floor was not measured (the baseline needs at least two "
                          "repeated runs), so the improvement cannot be compared with it. " + meaning)
    if noise == 0:
        # Identical repeats: a deterministic target. Any real improvement is beyond its noise,
        # but there is no finite ratio to show.
        level0: Level = "green" if improvement > 0 else "red"
        return Confidence(None, level0, improvement, 0.0, noise_runs,
                          "∞σ" if improvement > 0 else "0σ",
                          "The baseline's repeated runs gave identical values (σ = 0): the "
                          "measurement is deterministic, so any improvement is beyond run-to-run "
                          "noise. " + meaning)
    ratio = improvement / noise
    level: Level = "green" if ratio >= 2 else "yellow" if ratio >= 1 else "red"
    return Confidence(ratio, level, improvement, noise, noise_runs, f"{ratio:.1f}σ", meaning)


def _lock_holder_alive(ledger_path: Path, tag: str) -> bool:
    """Whether the process named in the session's lock file still exists."""
    lock = StatePaths(ledger_path.parent.parent, tag).lock
    return SessionLock(lock).live_holder() is not None


def _noise(session: SessionRow, baseline_values: list[float]) -> float | None:
    if _finite(session.noise):
        return session.noise
    # Older or interrupted sessions may not have stored σ; the baseline repeats still give it.
    return statistics.stdev(baseline_values) if len(baseline_values) >= 2 else None


def experiment_view(exp: ExperimentRow, runs: Sequence[RunRow], metric: str) -> ExperimentView:
    # The baseline's runs are all repeats of the same code; whatever role the session gave
    # them, they are the spread (and the noise floor) of the baseline.
    candidates = list(runs) if exp.kind == "baseline" else [r for r in runs if r.role == "candidate"]
    return ExperimentView(
        id=exp.id, seq=exp.seq, kind=exp.kind, status=exp.status,
        objective=exp.objective if _finite(exp.objective) else None,
        incumbent_objective=exp.incumbent_objective if _finite(exp.incumbent_objective) else None,
        delta=exp.delta if _finite(exp.delta) else None,
        threshold=exp.threshold if _finite(exp.threshold) else None,
        runs=len(candidates), run_values=_run_values(candidates, metric),
        duration_s=exp.duration_s, cost_usd=exp.cost_usd, hypothesis=exp.hypothesis,
        decision_reason=exp.decision_reason, commit_sha=exp.commit_sha,
        parent_commit=exp.parent_commit, files=list(exp.files), lines_added=exp.lines_added,
        lines_removed=exp.lines_removed, started_at=exp.started_at, finished_at=exp.finished_at,
    )


def _chart(rows: list[ExperimentView], metric: str, direction: str) -> ChartData:
    points: list[ChartPoint] = []
    best_line: list[tuple[int, float]] = []
    baseline: float | None = None
    for e in rows:
        if e.objective is None:
            continue
        is_baseline = e.kind == "baseline"
        role: Literal["baseline", "kept", "discarded"] = (
            "baseline" if is_baseline else "kept" if e.status in KEPT else "discarded"
        )
        spread = e.run_values or [e.objective]
        points.append(ChartPoint(
            seq=e.seq, exp_id=e.id, status=e.status, role=role, objective=e.objective,
            low=min(spread), high=max(spread), runs=len(e.run_values),
            label="baseline" if is_baseline else short_label(e.hypothesis) if role == "kept" else "",
        ))
        if is_baseline and baseline is None:
            baseline = e.objective
        if role != "discarded":
            best_line.append((e.seq, e.objective))
    max_seq = max((e.seq for e in rows), default=0)
    if best_line and best_line[-1][0] < max_seq:
        best_line.append((max_seq, best_line[-1][1]))
    crashed = [e.seq for e in rows if e.status in CRASHED]
    return ChartData(metric, direction, points, best_line, baseline, crashed, max_seq)


def build_view(ledger: Ledger, session: SessionRow, *, now: float | None = None) -> SessionView:
    """Read one session from the ledger and compute everything the views show."""
    now = time.time() if now is None else now
    metric = session.metric
    exps = ledger.experiments(session.id)
    runs_by_exp: dict[str, list[RunRow]] = {}
    for run in ledger.session_runs(session.id):
        runs_by_exp.setdefault(run.experiment_id, []).append(run)
    rows = [experiment_view(e, runs_by_exp.get(e.id, []), metric) for e in exps]
    chart = _chart(rows, metric, session.direction)

    base_row = next((r for r in rows if r.kind == "baseline"), None)
    kept = [r for r in rows if r.status in KEPT and r.kind != "baseline" and r.objective is not None]
    best_row = kept[-1] if kept else base_row
    baseline = base_row.objective if base_row else None
    best = best_row.objective if best_row else None
    improvement = _improvement(best, baseline, session.direction)
    noise = _noise(session, base_row.run_values if base_row else [])

    counts = {s: 0 for s in ("keep", "discard", "crash", "timeout", "rejected", "interrupted")}
    counts["open"] = 0
    for r in rows:
        if r.kind == "baseline":
            continue
        key = "open" if r.status in OPEN else r.status
        counts[key] = counts.get(key, 0) + 1
    counts["total"] = sum(1 for r in rows if r.kind != "baseline")

    stamps = [session.updated_at, session.created_at]
    stamps += [t for r in rows for t in (r.started_at, r.finished_at) if t is not None]
    last_activity = max(stamps)
    claims_live = session.status in LIVE_SESSION_STATES
    live = claims_live and _lock_holder_alive(ledger.path, session.tag)
    elapsed = max(0.0, (now if live else last_activity) - session.created_at)
    finished = sum(1 for r in rows if r.kind != "baseline" and r.status not in OPEN)
    per_hour = finished / (elapsed / 3600.0) if elapsed >= 1.0 and finished else None

    limits: Mapping[str, Any] = session.config.get("limits") or {}
    summary = SessionSummary(
        tag=session.tag, branch=session.branch, base_commit=session.base_commit,
        status=session.status, metric=metric, direction=session.direction,
        proposer=session.proposer, created_at=session.created_at, last_activity=last_activity,
        elapsed_s=elapsed, live=live, process_gone=claims_live and not live,
        experiments_per_hour=per_hour, counts=counts,
        baseline=baseline, baseline_id=base_row.id if base_row else None,
        best=best, best_id=best_row.id if best_row else None,
        best_hypothesis=best_row.hypothesis if best_row else "",
        improvement=improvement,
        improvement_pct=(100.0 * improvement / abs(baseline)
                         if improvement is not None and baseline else None),
        noise=noise, cost_usd=float(ledger.usage_totals(session.id)["cost_usd"]),
        max_usd=limits.get("max_usd"), max_hours=limits.get("max_hours"),
        max_experiments=limits.get("max_experiments"),
    )
    noise_runs = len(base_row.run_values) if base_row else 0
    conf = confidence(improvement, noise, noise_runs, metric)
    return SessionView(summary, chart, conf, rows)


# --- serialising --------------------------------------------------------------------------------


def clean_json(value: Any) -> Any:
    """JSON has no NaN/Infinity: map non-finite floats to null, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value


def view_to_json(view: SessionView) -> dict[str, Any]:
    data: dict[str, Any] = clean_json(asdict(view))
    return data
