"""How long a run may take before it is killed: its budget, plus what it needs around it.

A verify command works for `budget_seconds`, and around that it starts up (imports, loading data,
a first-run cache build) and evaluates. That overhead differs by orders of magnitude between
workloads, and grows several times on a busy machine, while the budget does not (a training loop
on its own clock stops at the budget however slow each step is). A timeout that does not cover
it kills honest runs: a laptop's baseline, killed after its 20 s of training because the final
evaluation ran on two cores shared with other work.

So, unless `[verify] timeout_seconds` is set (an explicit value always wins):

- the first run of the unchanged code (check's dry run, the baseline's first run) gets
  `LOAD_FACTOR × (2 × budget + 60 s)`: what it needs is not known yet (a first-run data build, a
  compile warm-up, a busy machine), and only a first run that hangs pays for the generosity. No
  candidate ever runs before the baseline is measured;
- every successful run of the session's unchanged code (the baseline's runs, and the base
  commit's later re-runs) measures the overhead: its wall time minus the budget. From then on
  the timeout is `max(2 × budget + 60, budget + LOAD_FACTOR × overhead + MARGIN_S)` in whole
  seconds, with the largest overhead seen: room for the same run on a machine several times
  busier. It never shrinks below `2 × budget + 60`, and only the unchanged code raises it, so a
  slow candidate cannot raise the limit it is judged by.

The session records an event whenever the timeout is sized, and `check` prints what its dry run
measured and what the timeout would be.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autoresearch.config import VerifyConfig
    from autoresearch.ledger import RunRow

__all__ = ["LOAD_FACTOR", "MARGIN_S", "default_timeout", "describe", "first_run_timeout",
           "needed_timeout", "observe", "sized_timeout"]

# The same run may be this many times slower (other processes on the same cores).
LOAD_FACTOR = 4.0
MARGIN_S = 30.0


def default_timeout(budget_s: float) -> float:
    """The least a measured run gets: twice the budget plus a minute."""
    return 2 * budget_s + 60


def first_run_timeout(budget_s: float) -> float:
    """Before the unchanged code has been measured once: generous, since its needs are unknown."""
    return LOAD_FACTOR * default_timeout(budget_s)


def needed_timeout(budget_s: float, overhead_s: float) -> float:
    """What a run that took `overhead_s` beyond its budget needs on a machine several times
    busier than the one it was measured on."""
    return float(math.ceil(budget_s + LOAD_FACTOR * max(0.0, overhead_s) + MARGIN_S))


def sized_timeout(budget_s: float, overhead_s: float | None) -> float:
    """The timeout for a run of `budget_s` whose startup + evaluation took `overhead_s`."""
    if overhead_s is None:
        return first_run_timeout(budget_s)
    return max(default_timeout(budget_s), needed_timeout(budget_s, overhead_s))


def describe(verify: VerifyConfig, overhead_s: float | None) -> str:
    """One sentence on where the timeout comes from (for check and the session's events)."""
    budget = verify.budget_seconds
    if verify.timeout_seconds is not None:
        return f"timeout {verify.timeout_seconds:g} s, set by [verify] timeout_seconds"
    default = default_timeout(budget)
    if overhead_s is None:
        return (f"timeout {first_run_timeout(budget):g} s ({LOAD_FACTOR:g} × (2 × budget + 60)) "
                "until a run of the unchanged code is measured")
    if overhead_s <= 0:
        return (f"timeout {default:g} s (2 × budget + 60): the run ended within its {budget:g} s "
                "budget")
    sized = sized_timeout(budget, overhead_s)
    formula = (f"the default 2 × budget + 60, which covers budget + {LOAD_FACTOR:g} × "
               f"{overhead_s:.1f} + {MARGIN_S:g}" if sized == default else
               f"budget + {LOAD_FACTOR:g} × {overhead_s:.1f} + {MARGIN_S:g}")
    return (f"timeout {sized:g} s: the unchanged code needed {overhead_s:.1f} s beyond its "
            f"{budget:g} s budget (startup and evaluation), so {formula}; set [verify] "
            "timeout_seconds to choose it yourself")


def observe(verify: VerifyConfig, base_commit: str, run: RunRow) -> str | None:
    """Size the timeout from a run of the unchanged code (see the module docstring).

    Called for every run the session records, and for every run replayed on resume. Returns
    what to record as an event (the first measurement, and whenever the timeout changes), or
    None.
    """
    if (verify.timeout_seconds is not None or run.status != "ok" or run.duration_s is None
            or run.commit_sha != base_commit):
        return None
    first, before = verify.measured_overhead_s is None, verify.timeout
    verify.note_overhead(run.duration_s - verify.budget_seconds)
    if first or verify.timeout != before:
        return describe(verify, verify.measured_overhead_s)
    return None
