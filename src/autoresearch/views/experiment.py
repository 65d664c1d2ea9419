"""One experiment as the views show it: the ledger row plus the values of its own runs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from autoresearch.ledger import ExperimentRow, RunRow


@dataclass(frozen=True)
class ExperimentView:
    id: str
    seq: int
    kind: str
    status: str
    objective: float | None
    incumbent_objective: float | None
    delta: float | None            # the metric's own change vs the incumbent (candidate − incumbent)
    improvement: float | None      # the same, signed so that positive is better
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

    @property
    def shown_status(self) -> str:
        """The status as every view names it: the baseline that passed is "baseline", not a keep."""
        return "baseline" if self.kind == "baseline" and self.status == "keep" else self.status


def sign_of(direction: str) -> float:
    """+1 when larger is better: improvement = sign × (candidate − incumbent)."""
    return 1.0 if direction == "maximize" else -1.0


def finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def run_values(runs: Sequence[RunRow], metric: str) -> list[float]:
    """The objective of every successful run (a crashed run's metric, if any, is not a value)."""
    values = [r.metrics.get(metric) for r in runs if r.status == "ok"]
    return [v for v in values if v is not None and math.isfinite(v)]


def experiment_view(exp: ExperimentRow, runs: Sequence[RunRow], metric: str,
                    direction: str) -> ExperimentView:
    # The baseline's runs are all repeats of the same code; whatever role the session gave
    # them, they are the spread (and the noise floor) of the baseline.
    own = list(runs) if exp.kind == "baseline" else [r for r in runs if r.role == "candidate"]
    delta = exp.delta if exp.delta is not None and math.isfinite(exp.delta) else None
    return ExperimentView(
        id=exp.id, seq=exp.seq, kind=exp.kind, status=exp.status,
        objective=exp.objective if finite(exp.objective) else None,
        incumbent_objective=exp.incumbent_objective if finite(exp.incumbent_objective) else None,
        delta=delta,
        improvement=None if delta is None else sign_of(direction) * delta,
        threshold=exp.threshold if finite(exp.threshold) else None,
        runs=len(own), run_values=run_values(own, metric),
        duration_s=exp.duration_s, cost_usd=exp.cost_usd, hypothesis=exp.hypothesis,
        decision_reason=exp.decision_reason, commit_sha=exp.commit_sha,
        parent_commit=exp.parent_commit, files=list(exp.files), lines_added=exp.lines_added,
        lines_removed=exp.lines_removed, started_at=exp.started_at, finished_at=exp.finished_at,
    )
