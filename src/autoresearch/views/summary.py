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
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from autoresearch.budget import active_seconds, price_per_hour, session_spend
from autoresearch.config import CONFIG_NAME
from autoresearch.errors import AutoresearchError
from autoresearch.headline import latest as latest_headline
from autoresearch.ledger import Ledger, RunRow, SessionRow
from autoresearch.state import SessionLock, StatePaths
from autoresearch.views.chart import KEPT, ChartData, ChartPoint, build_chart, short_label
from autoresearch.views.confidence import Confidence, Level, confidence
from autoresearch.views.experiment import ExperimentView, experiment_view, finite
from autoresearch.views.format import count_key, headline_doubt
from autoresearch.views.noise import NoiseFloor, noise_floor

# Re-exported: the read model's parts, for the dashboard, the report and the tests.
__all__ = [
    "ChartData", "ChartPoint", "Confidence", "ExperimentView", "Level", "NoiseFloor",
    "SessionSummary", "SessionView", "build_view", "clean_json", "compose_view", "confidence", "experiment_view",
    "open_ledger", "resolve_session", "short_label", "view_to_json",
]

LEDGER_PATH = Path(".autoresearch") / "ledger.db"

DISCARDED = ("discard", "rejected")
OPEN = ("proposed", "running")
# Session states in which the clock is still running (elapsed time counts up to now).
LIVE_SESSION_STATES = ("created", "running")


class LedgerNotFoundError(AutoresearchError):
    """There is no ledger in this repository (no session ever ran here)."""


class SessionNotFoundError(AutoresearchError):
    """The requested session tag is not in the ledger."""


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
    # The time experiments were actually running: a session resumed after a night off has a
    # long elapsed time but not a long active one. The rate is per active hour.
    active_s: float
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
    improvement: float | None      # best vs baseline, signed so that positive is better
    improvement_pct: float | None
    best_delta: float | None       # the metric's own change, best − baseline
    noise: float | None            # the decision rule's pooled σ (what the engine recorded)
    baseline_noise: float | None   # σ of the baseline's own repeated runs (≥ 2 of them)
    baseline_runs: int
    cost_usd: float  # the session's spend: model calls, plus machine time when it is priced
    max_usd: float | None
    max_hours: float | None
    max_experiments: int | None
    # The parts of cost_usd (budget.py): model calls, and machine time at [limits]
    # compute_usd_per_hour (None when not priced); `spend` says both in words.
    model_usd: float = 0.0
    compute_usd: float | None = None
    compute_usd_per_hour: float | None = None
    spend: str = ""
    headline_off: bool = False  # [decision] headline_pairs = 0: never verified, by choice
    # The headline verified at the end of the session (headline.py): best vs baseline
    # re-measured in interleaved pairs; None until it was, or when the best changed since.
    verified: str | None = None
    verified_improvement: float | None = None
    verified_low: float | None = None
    verified_high: float | None = None
    verified_pairs: int = 0

    @property
    def doubt(self) -> str | None:
        """Why the improvement the session's runs claim is not borne out by its verified
        headline (views.format.headline_doubt); None when it is, or nothing was verified."""
        return headline_doubt(self.verified_pairs, self.verified_improvement, self.verified_low,
                              self.verified_high)
    # The status of the baseline attempt `baseline_id` names: why there is no baseline figure
    # yet (still running, interrupted, or failed).
    baseline_status: str | None = None


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
        # Without autoresearch.toml, `run` would fail too: the first step is `init`.
        first = ("run `autoresearch run` here first" if (repo / CONFIG_NAME).is_file()
                 else "set the project up with `autoresearch init`, then `autoresearch run`")
        raise LedgerNotFoundError(
            "no autoresearch ledger in this repository",
            where=str(path),
            fix=f"{first} (or pass --repo to point at the repository)",
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


def experiment_counts(rows: Sequence[ExperimentView]) -> dict[str, int]:
    """How many experiments of each kind. The baseline is counted on its own, never as a keep,
    so "keep" agrees with the kept candidates everywhere (header, chips, report).

    "candidates" is every experiment but the baseline; "total" is every experiment, the baseline
    included, as `run --iterations N` counts them and the table lists them.
    """
    counts = {s: 0 for s in ("keep", "discard", "crash", "timeout", "rejected", "interrupted")}
    counts["open"] = 0
    counts["baseline"] = 0
    counts["baseline_failed"] = 0
    for r in rows:
        key = count_key(r.kind, r.status)
        counts[key] = counts.get(key, 0) + 1
    counts["total"] = len(rows)
    counts["candidates"] = len(rows) - counts["baseline"] - counts["baseline_failed"]
    return counts


def baseline_row(rows: Sequence[ExperimentView]) -> ExperimentView | None:
    """The baseline the session measured against: the attempt that passed (a resumed session
    may have failed attempts before it, whose runs never count); else the latest attempt."""
    attempts = [r for r in rows if r.kind == "baseline"]
    passed = [r for r in attempts if r.status in KEPT]
    chosen = passed or attempts
    return chosen[-1] if chosen else None


def _improvement(best: float | None, baseline: float | None, direction: str) -> float | None:
    """Signed so that a positive number is always an improvement, whatever the direction."""
    if not (finite(best) and finite(baseline)):
        return None
    assert best is not None and baseline is not None
    return best - baseline if direction == "maximize" else baseline - best


def lock_holder_alive(ledger_path: Path, tag: str) -> bool:
    """Whether the process named in the session's lock file still exists."""
    lock = StatePaths(ledger_path.parent.parent, tag).lock
    return SessionLock(lock).live_holder() is not None


def build_view(ledger: Ledger, session: SessionRow, *, now: float | None = None) -> SessionView:
    """Read one session from the ledger and compute everything the views show, from one
    moment's rows (`Ledger.snapshot`: a running session records between the reads)."""
    with ledger.snapshot():
        exps = ledger.experiments(session.id)
        all_runs = ledger.session_runs(session.id)
        runs_by_exp: dict[str, list[RunRow]] = {}
        for run in all_runs:
            runs_by_exp.setdefault(run.experiment_id, []).append(run)
        reviews = ledger.review_marks(session.id)
        rows = [experiment_view(e, runs_by_exp.get(e.id, []), session.metric, session.direction,
                                reviews.get(e.id))
                for e in exps]
        return compose_view(ledger, session, rows, all_runs, now=now)


def compose_view(ledger: Ledger, session: SessionRow, rows: Sequence[ExperimentView],
                 all_runs: Sequence[RunRow], *, now: float | None = None) -> SessionView:
    """Everything the views show, from the experiments (in sequence order) and their runs
    (views.live keeps both up to date between calls, reading only what changed)."""
    now = time.time() if now is None else now
    metric = session.metric
    rows = list(rows)
    chart = build_chart(rows, metric, session.direction)

    base_row = baseline_row(rows)
    kept = [r for r in rows if r.status in KEPT and r.kind != "baseline" and r.objective is not None]
    # The engine's incumbent: the keep decided last (with overlapping experiments, not the
    # highest number).
    best_row = max(kept, key=lambda r: (r.finished_at or 0.0, r.seq)) if kept else base_row
    baseline = base_row.objective if base_row else None
    best = best_row.objective if best_row else None
    improvement = _improvement(best, baseline, session.direction)
    floor = noise_floor(all_runs, metric, base_row.id if base_row else None, session.noise,
                        {e.id: e.status for e in rows})

    counts = experiment_counts(rows)

    stamps = [session.updated_at, session.created_at]
    stamps += [t for r in rows for t in (r.started_at, r.finished_at) if t is not None]
    last_activity = max(stamps)
    claims_live = session.status in LIVE_SESSION_STATES
    live = claims_live and lock_holder_alive(ledger.path, session.tag)
    until = now if live else last_activity
    elapsed = max(0.0, until - session.created_at)
    active = active_seconds([(r.started_at, r.finished_at) for r in rows], until)
    # Experiments that got a verdict: one interrupted (a stop, a kill) is run again from zero.
    finished = sum(1 for r in rows if r.kind != "baseline" and r.status not in OPEN
                   and r.status != "interrupted")
    per_hour = finished / (active / 3600.0) if active >= 1.0 and finished else None

    limits: Mapping[str, Any] = session.config.get("limits") or {}
    deterministic = bool((session.config.get("decision") or {}).get("deterministic"))
    spend = session_spend(ledger, session.id, price_per_hour(limits), until)
    verified = latest_headline(ledger, session.id)
    best_commit = best_row.commit_sha if best_row else None
    if verified is not None and verified.best_commit != best_commit:
        verified = None  # it verified an earlier best
    interval = verified.interval if verified else None
    summary = SessionSummary(
        tag=session.tag, branch=session.branch, base_commit=session.base_commit,
        status=session.status, metric=metric, direction=session.direction,
        proposer=session.proposer, created_at=session.created_at, last_activity=last_activity,
        elapsed_s=elapsed, active_s=active, live=live, process_gone=claims_live and not live,
        experiments_per_hour=per_hour, counts=counts,
        baseline=baseline, baseline_id=base_row.id if base_row else None,
        baseline_status=base_row.status if base_row else None,
        best=best, best_id=best_row.id if best_row else None,
        best_hypothesis=best_row.hypothesis if best_row else "",
        improvement=improvement,
        best_delta=(best - baseline if best is not None and baseline is not None
                    and finite(best) and finite(baseline) else None),
        improvement_pct=(100.0 * improvement / abs(baseline)
                         if improvement is not None and baseline else None),
        noise=floor.pooled_sigma, baseline_noise=floor.baseline_sigma,
        baseline_runs=floor.baseline_runs,
        cost_usd=spend.total_usd, model_usd=spend.model_usd, compute_usd=spend.compute_usd,
        compute_usd_per_hour=spend.usd_per_hour, spend=spend.describe(),
        headline_off=(session.config.get("decision") or {}).get("headline_pairs") == 0,
        max_usd=limits.get("max_usd"), max_hours=limits.get("max_hours"),
        max_experiments=limits.get("max_experiments"),
        verified=verified.describe(metric, deterministic=deterministic) if verified else None,
        verified_improvement=interval.estimate if interval else None,
        verified_low=interval.low if interval else None,
        verified_high=interval.high if interval else None,
        verified_pairs=interval.pairs if interval else 0,
    )
    conf = confidence(improvement, floor, metric, interval, compared=bool(kept),
                      deterministic=deterministic)
    return SessionView(summary, chart, conf, rows)


# --- serialising --------------------------------------------------------------------------------


USD_DIGITS = 6  # money in JSON: to the micro-dollar (sums of float prices end in …0000006)


def clean_json(value: Any) -> Any:
    """JSON has no NaN/Infinity: map non-finite floats to null, recursively; and round money
    (any `…_usd` key) to `USD_DIGITS`."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: round(v, USD_DIGITS) if isinstance(v, float) and math.isfinite(v)
                and isinstance(k, str) and k.endswith("_usd") else clean_json(v)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value


def view_to_json(view: SessionView) -> dict[str, Any]:
    data: dict[str, Any] = clean_json(asdict(view))
    return data
