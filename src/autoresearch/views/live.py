"""A session's read model kept up to date for a live page: each update reads and sends only what
changed.

The ledger stamps every experiment with a version that triggers bump on any write to it or a new
run of it (schema migration 2). `LiveView.refresh` reads the experiments whose version is above
the highest it has seen, with their runs, and recomposes the view in memory (views.summary
.compose_view); `delta_json` then sends a client only the experiments and chart points newer than
the version the client last saw, plus the small parts that describe the whole (summary,
confidence, the chart's running best and range). At 10,000 experiments a page update is a few KB
instead of megabytes (figures in docs/benchmarks.md, `python bench/dashboard_payload.py`).

Each experiment is sent as a table row (`list_row`): what the table, its filters and sorting, and
the chart's tooltip use. The long texts (the decision reason, the rationale) and the rest of the
record (run values, commit, files) stay out of it: the page's drawer fetches the experiment whole
from /api/experiment/{id} when it opens. A 2,000-experiment session's first answer is then a
few hundred KB instead of about 2 MB.
"""

from __future__ import annotations

import math
from dataclasses import asdict, fields
from typing import Any

from autoresearch.ledger import ExperimentRow, Ledger, RunRow, SessionRow
from autoresearch.views.experiment import ExperimentView, experiment_view
from autoresearch.views.summary import SessionView, clean_json, compose_view

# The table shows a hypothesis's first line; a longer one is cut here (the drawer has it whole).
# The LLM proposer keeps 200 characters of a hypothesis, so its hypotheses are never cut.
LIST_HYPOTHESIS_CHARS = 200
# The fields of an ExperimentView a table row carries (`hypothesis` as said above).
LIST_FIELDS = ("id", "seq", "kind", "status", "objective", "delta", "improvement", "runs",
               "duration_s", "cost_usd", "hypothesis", "review")


def list_hypothesis(text: str) -> str:
    """The first line of a hypothesis, at most LIST_HYPOTHESIS_CHARS characters (then "…")."""
    line = text.split("\n", 1)[0]
    if len(line) <= LIST_HYPOTHESIS_CHARS:
        return line
    return line[:LIST_HYPOTHESIS_CHARS - 1].rstrip() + "…"


def list_row(e: ExperimentView) -> dict[str, Any]:
    """One experiment as the page's table holds it: bounded, whatever the ledger holds."""
    row: dict[str, Any] = {name: getattr(e, name) for name in LIST_FIELDS}
    row["hypothesis"] = list_hypothesis(e.hypothesis)
    row["review"] = None if e.review is None else asdict(e.review)
    return row


class LiveView:
    """One session's experiments and runs, refreshed from the ledger by version."""

    def __init__(self, session_id: int) -> None:
        self.session_id = session_id
        self._reset()

    def _reset(self) -> None:
        self.version = 0
        self._touched: dict[str, int] = {}
        self._runs: dict[str, list[RunRow]] = {}
        self._rows: dict[str, ExperimentView] = {}

    def refresh(self, ledger: Ledger, session: SessionRow) -> SessionView:
        if ledger.schema_version < 2:
            # A ledger from before the version stamps, opened read-only (it is migrated by the
            # next `autoresearch run`): everything is read, and sent, as new every time.
            version = self.version + 1
            self._reset()
            self._apply(ledger, session, [(version, e) for e in ledger.experiments(session.id)])
            return self._compose(ledger, session)
        changed = ledger.changed_experiments(session.id, self.version)
        if changed:
            self._apply(ledger, session, changed)
        if len(self._rows) != ledger.experiment_count(session.id):
            # An experiment was removed (one that never got a proposal): start over.
            self._reset()
            self._apply(ledger, session, ledger.changed_experiments(session.id, 0))
        return self._compose(ledger, session)

    def _compose(self, ledger: Ledger, session: SessionRow) -> SessionView:
        rows = sorted(self._rows.values(), key=lambda r: r.seq)
        runs = [r for exp_runs in self._runs.values() for r in exp_runs]
        return compose_view(ledger, session, rows, runs)

    def _apply(self, ledger: Ledger, session: SessionRow,
               changed: list[tuple[int, ExperimentRow]]) -> None:
        runs_by_exp: dict[str, list[RunRow]] = {}
        ids = [e.id for _, e in changed]
        for run in ledger.experiment_runs(ids):
            runs_by_exp.setdefault(run.experiment_id, []).append(run)
        # A review recorded against an experiment bumps its version too (migration 4).
        reviews = ledger.review_marks(session.id, ids)
        for version, exp in changed:
            self._touched[exp.id] = version
            self._runs[exp.id] = runs_by_exp.get(exp.id, [])
            self._rows[exp.id] = experiment_view(exp, self._runs[exp.id], session.metric,
                                                 session.direction, reviews.get(exp.id))
            self.version = max(self.version, version)

    def newer_than(self, version: int) -> set[str]:
        """The experiments written to after `version`."""
        return {exp_id for exp_id, v in self._touched.items() if v > version}


def _same_range(view: SessionView, client_range: tuple[float, float] | None) -> bool:
    ours = (view.chart.y_min, view.chart.y_max)
    if client_range is None:
        return ours == (None, None)
    return all(a is not None and math.isclose(a, b, rel_tol=0, abs_tol=1e-12)
               for a, b in zip(ours, client_range, strict=True))


def delta_json(view: SessionView, live: LiveView, since: int,
               client_range: tuple[float, float] | None) -> dict[str, Any]:
    """The page's update: everything when `since` is 0, else what is newer than `since`.

    `full` tells the page to replace what it holds; `count` is how many experiments the session
    has (a page that holds another number asks again with since=0). Chart points depend on the
    visible range (far outliers are drawn at its edge): when the range moved since the client's
    last update, every point is sent.
    """
    full = since <= 0
    fresh = None if full else live.newer_than(since)
    # Only what is sent is converted: asdict over 10,000 points would cost more than the rest.
    chart: dict[str, Any] = {f.name: getattr(view.chart, f.name) for f in fields(view.chart)
                             if f.name != "points"}
    every_point = fresh is None or not _same_range(view, client_range)
    chart["points"] = [asdict(p) for p in view.chart.points
                       if every_point or (fresh is not None and p.exp_id in fresh)]
    if fresh is not None:
        chart["points_full"] = every_point
        chart["changed"] = sorted(fresh)
    experiments = [e for e in view.experiments if fresh is None or e.id in fresh]
    data: dict[str, Any] = clean_json({
        "stamp": live.version,
        "full": full,
        "count": len(view.experiments),
        "summary": asdict(view.summary),
        "confidence": asdict(view.confidence),
        "chart": chart,
        "experiments": [list_row(e) for e in experiments],
    })
    return data
