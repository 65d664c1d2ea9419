"""A session whose would-be keeps the real review gate judged, for the views' review tests.

The ledger is synthetic (tests/views/ledger_factory.py) but the reviews are not: each would-be
keep's real commit is reviewed against its parent by `review_candidate` (the offline reviewers:
ruff, bandit, mypy, history, as real subprocesses) and recorded with `record_gate`, before the
verdict is written, where the loop's gate sits. A planted shell injection is blocked (red, bandit
B602); a change that writes to a fixed path under /tmp is kept with a yellow finding; a clean
change is kept with no finding; the rest are not would-be keeps and are not reviewed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from autoresearch.config import ReviewConfig
from autoresearch.ledger import ExperimentRow
from autoresearch.review.gate import record_gate, review_candidate
from tests.views.ledger_factory import FILES, BuiltSession, Planned, build_session

INJECTION = FILES["train.py"] + (
    "\n\ndef log_step(msg):\n    import subprocess\n"
    "    subprocess.run(f\"logger {msg}\", shell=True)\n")
TMP_WRITE = FILES["data.py"] + (
    "\n\ndef save_history(text):\n    with open('/tmp/history.txt', 'a') as fh:\n"
    "        fh.write(text)\n")

BLOCKED = "log each step with the system logger"
KEPT_YELLOW = "save the loss history for later"
KEPT_CLEAN = "raise the learning rate to 0.02"
NOT_REVIEWED = "wider hidden layer (128 units)"

PLAN = [
    # Better than the baseline by far: a keep, until the review gate blocks it.
    Planned(BLOCKED, "discard", [9.50, 9.52, 9.49], {"train.py": INJECTION}, 0.01),
    Planned(KEPT_CLEAN, "keep", [9.61, 9.58, 9.63],
            {"train.py": FILES["train.py"].replace("LR = 0.01", "LR = 0.02")}, 0.012),
    Planned(NOT_REVIEWED, "discard", [9.70, 9.64],
            {"model.py": FILES["model.py"].replace("HIDDEN = 64", "HIDDEN = 128")}, 0.01),
    Planned("switch the model to bfloat16", "crash", [],
            {"model.py": FILES["model.py"].replace("'float32'", "'bfloat16'")}, 0.011),
    Planned(KEPT_YELLOW, "keep", [9.31, 9.28, 9.35], {"data.py": TMP_WRITE}, 0.009),
]
WOULD_BE_KEEPS = (BLOCKED, KEPT_CLEAN, KEPT_YELLOW)


@dataclass
class Reviewed:
    built: BuiltSession
    ids: dict[str, str]  # hypothesis -> experiment id

    @property
    def repo(self) -> Path:
        return self.built.repo

    @property
    def tag(self) -> str:
        return self.built.tag


def gate(built: BuiltSession, exp: ExperimentRow, sha: str) -> str | None:
    """The review gate with `gate = "red"`, as the loop applies it to a would-be keep."""
    if exp.hypothesis not in WOULD_BE_KEEPS:
        return None
    assert exp.parent_commit is not None
    result = review_candidate(built.repo, exp.parent_commit, sha, ReviewConfig(gate="red"),
                              env={})
    # The plan says which ones the gate must block: the reviewers must agree with it.
    assert result.blocked == (exp.hypothesis == BLOCKED), result.reason
    record_gate(built.ledger, result, session_id=exp.session_id, experiment_id=exp.id)
    return result.reason if result.blocked else None


def build_reviewed_session(repo: Path, tag: str = "rv") -> Reviewed:
    built = build_session(repo, tag=tag, plan=PLAN, before_verdict=gate)
    return Reviewed(built, {e.hypothesis: e.id for e in built.experiments})
