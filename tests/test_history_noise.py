"""The session's noise evidence, kept between steps (history.py), is what reading the ledger
afresh gives after every change: a new run, a new commit, an experiment that failed."""

from __future__ import annotations

import time
from pathlib import Path

from autoresearch.config import load_config
from autoresearch.history import History
from autoresearch.ledger import Ledger, SessionRow

TOML = ('scope = ["*.py"]\n[verify]\ncommand = "python train.py"\nbudget_seconds = 5\n'
        '[metric]\nname = "score"\ndirection = "minimize"\n')


def _run(ledger: Ledger, exp_id: str, sha: str, idx: int, value: float,
         role: str = "candidate") -> int:
    return ledger.add_run(exp_id, role=role, idx=idx, commit_sha=sha, status="ok", exit_code=0,
                          duration_s=1.0, log_path=None, fingerprint=None, fingerprint_key=None,
                          started_at=time.time(), metrics={"score": value})


def _fresh(tmp: Path, ledger: Ledger, session: SessionRow) -> History:
    history = History(load_config(tmp / "autoresearch.toml"), ledger, session)
    history.load()
    return history


def _evidence(history: History) -> tuple[object, list[list[float]], list[float]]:
    return (history.noise(), [[o.value for o in g] for g in history.noise_groups()],
            history.objective_runs("b" * 40))


def test_noise_evidence_follows_every_change_as_a_fresh_read_would(tmp_path: Path) -> None:
    (tmp_path / "autoresearch.toml").write_text(TOML)
    ledger = Ledger(tmp_path / ".autoresearch" / "ledger.db")
    session = ledger.create_session(tag="t", branch="autoresearch/t", base_commit="a" * 40,
                                    worktree=str(tmp_path), metric="score",
                                    direction="minimize", config={}, proposer="llm")
    base = ledger.create_experiment(session, kind="baseline", status="running")
    for i, v in enumerate([1.0, 1.2, 0.9]):
        _run(ledger, base.id, "a" * 40, i, v)
    ledger.finish_experiment(base.id, status="keep", reason="baseline", objective=1.03)
    cand = ledger.create_experiment(session, status="running")
    for i, v in enumerate([0.7, 0.75]):
        _run(ledger, cand.id, "b" * 40, i, v)

    live = _fresh(tmp_path, ledger, session)
    first = _evidence(live)
    assert first == _evidence(_fresh(tmp_path, ledger, session))
    assert len(first[1]) == 2 and first[2] == [0.7, 0.75]

    # A third run of the candidate's commit, as the loop adds it: the evidence moves with it.
    run = ledger.run(_run(ledger, cand.id, "b" * 40, 2, 0.95))
    assert run is not None
    live.add_run(run)
    second = _evidence(live)
    assert second != first and second == _evidence(_fresh(tmp_path, ledger, session))

    # A control run of the incumbent during the candidate's judgement counts too.
    control = ledger.run(_run(ledger, cand.id, "a" * 40, 3, 1.4, role="incumbent"))
    assert control is not None
    live.add_run(control)
    third = _evidence(live)
    assert third != second and third == _evidence(_fresh(tmp_path, ledger, session))

    # The candidate fails: its own runs stop counting (the incumbent's control run still counts).
    ledger.finish_experiment(cand.id, status="crash", reason="the run failed")
    live.refresh(cand.id)
    failed = _evidence(live)
    assert failed[2] == [] and len(failed[1]) == 1
    assert failed == _evidence(_fresh(tmp_path, ledger, session))

    # What a caller does with the groups it was given does not change the history's own.
    live.noise_groups()[0].clear()
    live.observations("a" * 40).clear()
    assert _evidence(live) == failed
    ledger.close()
