"""A session of thousands of experiments written straight through the Ledger API, in seconds.

The rows are what a long real session leaves (a hypothesis, a rationale, a long decision reason,
runs with metrics for the measured ones), with fake commits: the dashboard's drawer then says the
commit is gone instead of showing a diff. Two old experiments are easy to find among the rest:
experiment 3 is the session's only `rejected` one and experiment 4 has the best objective.
"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

from autoresearch.ledger import ExperimentRow, Ledger, SessionRow
from tests.views.ledger_factory import init_repo

STATUSES = ["discard"] * 14 + ["keep", "crash", "timeout"]
REJECTED_SEQ = 3   # the only rejected experiment
BEST_SEQ = 4       # the lowest (best) objective of the session
BEST_VALUE = 0.5


def long_reason(seq: int, chars: int) -> str:
    """A decision reason of about `chars` characters that names its experiment at both ends."""
    head = f"experiment {seq}: improvement 0.0012 ≤ threshold 0.02 = max(min_effect 0.01, t·SE "
    tail = f" — end of the reason of experiment {seq}."
    filler = "the noise floor of 12 baseline runs and 9 control runs (σ=0.0091, dof 19); "
    body = (filler * (chars // len(filler) + 1))[:max(0, chars - len(head) - len(tail))]
    return head + body + tail


def add_large_experiment(ledger: Ledger, session: SessionRow, rng: random.Random,
                         value: float, reason_chars: int = 700,
                         status: str | None = None) -> tuple[ExperimentRow, float]:
    """One more finished experiment; returns it and the incumbent's value after it."""
    seq = ledger.next_seq(session.id)
    if status is None:
        status = ("rejected" if seq == REJECTED_SEQ else "keep" if seq == BEST_SEQ
                  else rng.choice(STATUSES))
    exp = ledger.create_experiment(
        session, hypothesis=f"idea {seq}: try a warmup of {rng.randint(1, 900)} steps with a "
        f"cosine schedule and weight decay {rng.random():.4f}",
        rationale="Because the loss curve flattens early. " * 12,
        proposer="llm", parent_commit="0" * 40, status="running")
    objective = None
    if status != "rejected":
        sha = f"{exp.seq:040x}"
        ledger.record_commit(exp.id, commit_sha=sha, tree_sha=sha, files=["train.py"],
                             lines_added=2, lines_removed=1)
        if status in ("keep", "discard"):
            center = BEST_VALUE if seq == BEST_SEQ else value + rng.gauss(0.004, 0.01)
            runs = [center + rng.gauss(0, 0.002) for _ in range(2)]
            for i, v in enumerate(runs):
                ledger.add_run(exp.id, role="candidate", idx=i, commit_sha=sha, status="ok",
                               exit_code=0, duration_s=0.2, log_path=None, fingerprint=None,
                               fingerprint_key=None, started_at=time.time(),
                               metrics={"val_bpb": v})
            objective = statistics.fmean(runs)
        ledger.record_judgement(exp.id, incumbent_objective=value, threshold=0.02,
                                delta=None if objective is None else objective - value)
    reason = long_reason(seq, reason_chars) if status != "rejected" else \
        "guardrail: autoresearch.toml is protected"
    ledger.finish_experiment(exp.id, status=status, objective=objective, reason=reason,
                             finished_at=time.time())
    ledger.add_event(session.id, "experiment_finished", f"{exp.id} {status}",
                     experiment_id=exp.id)
    row = ledger.experiment(exp.id)
    assert row is not None
    if status == "keep" and objective is not None and seq != BEST_SEQ:
        value = min(value, objective)
    return row, value


def build_large_session(repo: Path, n: int, *, tag: str = "big", reason_chars: int = 700,
                        seed: int = 0) -> tuple[Ledger, SessionRow, random.Random, float]:
    """A running session of a baseline and `n - 1` candidates; the ledger stays open for more."""
    init_repo(repo)
    ledger = Ledger(repo / ".autoresearch" / "ledger.db")
    session = ledger.create_session(tag=tag, branch=f"autoresearch/{tag}", base_commit="0" * 40,
                                    worktree=str(repo), metric="val_bpb", direction="minimize",
                                    config={}, proposer="llm")
    ledger.set_session_status(session.id, "running")
    rng = random.Random(seed)
    value = 1.45
    base = ledger.create_experiment(session, kind="baseline", status="running",
                                    hypothesis="baseline", parent_commit="0" * 40)
    for i in range(3):
        ledger.add_run(base.id, role="baseline", idx=i, commit_sha="0" * 40, status="ok",
                       exit_code=0, duration_s=0.2, log_path=None, fingerprint=None,
                       fingerprint_key=None, started_at=time.time(),
                       metrics={"val_bpb": value + 0.003 * (i - 1)})
    ledger.finish_experiment(base.id, status="keep", objective=value,
                             reason="baseline: the code as it was", finished_at=time.time())
    ledger.set_session_noise(session.id, 0.003)
    for _ in range(n - 1):
        _, value = add_large_experiment(ledger, session, rng, value, reason_chars)
    return ledger, session, rng, value
