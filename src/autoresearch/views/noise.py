"""The two noise floors of a session, told apart.

- The **baseline's own σ**: the standard deviation of the objective over the baseline's repeated
  runs (3 by default: 2 degrees of freedom).
- The **pooled σ**: what the decision rule uses, pooled over every group of repeated runs of one
  commit (the baseline's repeats, then every confirmation re-run). The engine records it on the
  session and overwrites it after each confirmation, so it is generally *not* the baseline's σ.

The confidence figure divides by the better measured of the two: the pooled σ once other commits'
repeats give it more degrees of freedom than the baseline's own (a σ from 3 runs is often off by
a factor of 2 or more, and the figure with it: a tester saw the same true gain read 1σ and 16σ),
the baseline's own before that; the pooled one too when the baseline ran once. It says which.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from autoresearch.decision import pooled_noise
from autoresearch.ledger import RunRow
from autoresearch.policy import counts_as_measurement

NoiseSource = Literal["baseline", "pooled", "none"]


@dataclass(frozen=True)
class NoiseFloor:
    baseline_sigma: float | None   # stdev of the baseline's successful runs (needs ≥ 2)
    baseline_runs: int             # how many successful baseline runs there are
    pooled_sigma: float | None     # the decision rule's σ (recorded on the session)
    pooled_dof: int                # its degrees of freedom
    pooled_groups: int             # how many commits contributed repeated runs to it

    @property
    def baseline_dof(self) -> int:
        return self.baseline_runs - 1 if self.baseline_sigma is not None else 0

    @property
    def source(self) -> NoiseSource:
        """Which σ the confidence figure divides by: the one with more degrees of freedom, but
        the baseline's when its repeats were identical (σ = 0: a pooled σ of 5e-16 is float
        error, and a ratio over it read 3e15σ)."""
        if (self.pooled_sigma is not None and self.pooled_dof > self.baseline_dof
                and self.baseline_sigma != 0.0):
            return "pooled"
        if self.baseline_sigma is not None:
            return "baseline"
        return "pooled" if self.pooled_sigma is not None else "none"

    @property
    def sigma(self) -> float | None:
        return self.baseline_sigma if self.source == "baseline" else self.pooled_sigma


def baseline_runs_said(runs: int) -> str:
    """How many measurements the baseline gave, in words: a baseline that crashed gave none,
    which is not "ran once"."""
    if runs == 0:
        return "the baseline produced no measurement"
    return "the baseline ran once" if runs == 1 else f"the baseline ran {runs} times"


def _ok_values(runs: Iterable[RunRow], metric: str,
               statuses: Mapping[str, str]) -> list[tuple[RunRow, float]]:
    """The ok runs that count as measurements (policy.counts_as_measurement), with values."""
    out = []
    for r in runs:
        value = r.metrics.get(metric)
        if (r.status == "ok" and value is not None and math.isfinite(value)
                and counts_as_measurement(r.role, statuses.get(r.experiment_id, ""))):
            out.append((r, value))
    return out


def noise_floor(runs: Sequence[RunRow], metric: str, baseline_id: str | None,
                recorded: float | None, statuses: Mapping[str, str]) -> NoiseFloor:
    """Both floors from a session's runs; `recorded` is the σ the engine stored on the session,
    `statuses` each experiment's status (a failed attempt's runs do not count).

    The pooled σ is recomputed the way the engine does (successful runs grouped by commit) for
    its degrees of freedom; the recorded value wins when there is one, since it is the number
    the decisions were actually made with.
    """
    ok = _ok_values(runs, metric, statuses)
    base = [v for r, v in ok if r.experiment_id == baseline_id]
    groups: dict[str, list[float]] = {}
    for r, v in ok:
        groups.setdefault(r.commit_sha, []).append(v)
    pooled = pooled_noise(groups.values())
    repeated = sum(1 for g in groups.values() if len(g) >= 2)
    stored = recorded if recorded is not None and math.isfinite(recorded) else None
    return NoiseFloor(
        baseline_sigma=statistics.stdev(base) if len(base) >= 2 else None,
        baseline_runs=len(base),
        pooled_sigma=stored if stored is not None else pooled.sigma,
        pooled_dof=pooled.dof,
        pooled_groups=repeated,
    )
