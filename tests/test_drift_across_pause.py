"""The drift model's clock is the session's time at work: a pause between two of its processes
(a stop at night, a resume in the morning) is not time over which a trend is extrapolated.

Before, a trend fitted on a few minutes of runs was carried over the hours of the pause: after a
4-hour pause every candidate read "improvement 104 ± 610" where σ was 0.05, and nothing could
be kept or told apart. Real CLI, real runs; the pause is made by moving the first process's
records 4 hours back.
"""

from __future__ import annotations

import re
import sqlite3
import textwrap
from pathlib import Path

from autoresearch.work_clock import PAUSE_S, WorkClock
from tests.conftest import make_repo, run_cli

TRAIN = textwrap.dedent(
    """
    import os, random
    X = 3.0  # knob: float(0, 10)
    random.seed(int(os.environ.get("AUTORESEARCH_SEED", "0")))
    print("loss:", (X - 5) ** 2 + random.gauss(0, 0.05))
    """
)
CONFIG = textwrap.dedent(
    """
    scope = ["train.py"]
    [verify]
    command = "{python} train.py"
    budget_seconds = 5
    [metric]
    name = "loss"
    direction = "minimize"
    [proposer]
    name = "tune"
    seed = 1
    """
)


def test_a_pause_between_processes_does_not_blind_the_verdict(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"train.py": TRAIN, "autoresearch.toml": CONFIG})
    first = run_cli(repo, "run", "--tag", "d", "-n", "6")
    assert first.returncode == 0, first.stdout + first.stderr
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        for table in ("runs", "experiments"):
            for column in ("started_at", "finished_at"):
                conn.execute(f"UPDATE {table} SET {column} = {column} - 14400 "
                             f"WHERE {column} IS NOT NULL")
    resumed = run_cli(repo, "run", "--tag", "d", "-n", "10")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        reasons = [r for (r,) in conn.execute(
            "SELECT decision_reason FROM experiments WHERE seq > 6 AND kind = 'candidate'")]
    spreads = [float(m.group(1)) for r in reasons
               if (m := re.search(r"± ([0-9.e+-]+)", r or ""))]
    sigma = [float(m.group(1)) for r in reasons if (m := re.search(r"σ=([0-9.e+-]+)", r or ""))]
    assert spreads and sigma, reasons
    # One candidate run against the incumbent's: about σ·√(1 + 1/n), not hundreds of σ.
    assert max(spreads) < 3 * max(sigma), reasons


def test_the_clock_takes_out_pauses_of_a_minute_or_more() -> None:
    long, short = 3 * 3600.0, PAUSE_S / 2
    spans: list[tuple[float, float | None]] = [
        (0.0, 10.0), (5.0, 12.0),          # overlapping work
        (12.0 + short, 60.0),              # after a short gap: kept
        (60.0 + long, 70.0 + long),        # after a 3-hour pause
        (71.0 + long, None),               # an open span (ends where it started)
    ]
    now = 71.0 + 2 * long                  # this process starts after another pause
    clock = WorkClock(spans, now)
    assert clock(8.0) == 8.0
    assert clock(50.0) == 50.0
    assert clock(65.0 + long) == 65.0
    assert clock(now + 7.0) == 78.0
    # Nothing recorded yet: the clock is the wall clock.
    assert WorkClock((), 100.0)(123.0) == 123.0
