"""Held-out metrics (`[metric] heldout`): printed by the evaluation, recorded, never shown to the
proposer. A change is not judged on them, but they check the judging: a change whose runs stop
printing one the incumbent always printed is a crash (dropping the line would pass the
comparison), and a keep that improved the objective while one got worse is warned of.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from autoresearch.config import Config
from autoresearch.metric_discovery import guess_direction

if TYPE_CHECKING:
    from autoresearch.executor import Measurement, RunRequest
    from autoresearch.history import History
    from autoresearch.session import Session
    from autoresearch.trial import Trial


def left_out(config: Config, history: History, trial: Trial, request: RunRequest,
             m: Measurement) -> list[str]:
    """The held-out metrics a proposed change's run left out while the incumbent's runs
    print them: the held-out check compares only what both printed, so dropping the line
    (training on the validation split, say) would pass it."""
    heldout = config.metric.heldout
    if not heldout or not m.ok or trial.kind == "baseline" or request.role != "candidate":
        return []
    # Only what the incumbent always printed is required (a test pass run when time allows
    # is not); a value that is no number (`test: nan`) counts as left out.
    return [name for name in heldout
            if history.printed_by_every_run(trial.parent, name)
            and not math.isfinite(m.metrics.get(name, math.nan))]


def heldout_sign(config: Config, name: str) -> float:
    """+1 when a larger held-out `name` is better, -1 when a smaller one is: as its name says
    (`test_acc` rises while `val_loss` falls), else as the objective goes (a held-out copy of
    it, `test_bpb` beside `val_bpb`)."""
    guessed = guess_direction(name)
    return config.metric.sign if guessed is None else (1.0 if guessed == "maximize" else -1.0)


def check_heldout(s: Session, trial: Trial, commit: str) -> None:
    """Warn when the objective improved but a held-out metric did not (overfitting val)."""
    now = s.history.mean_metrics(commit)
    before = s.history.mean_metrics(trial.parent)
    for name in s.config.metric.heldout:
        sign = heldout_sign(s.config, name)
        if name in now and name in before and sign * (now[name] - before[name]) < 0:
            msg = (f"{trial.id}: {s.config.metric.name} improved but held-out {name} got "
                   f"worse ({before[name]:.6g} → {now[name]:.6g})")
            s.event("heldout_divergence", msg, trial.id)
            s.display.message("warning: " + msg, "yellow")
