"""The session in-process, through its seams: the executor makes every run (from a request, as
data), the ledger sees refs before verdicts, the display sees the new best, fingerprints are
compared.

Real git repositories and real verify subprocesses; only the seams are swapped, the way a remote
executor (a cluster) or an embedding program (display) would swap them.
"""

from __future__ import annotations

import io
import json
import textwrap
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from autoresearch import gitops, scheduler
from autoresearch.config import CONFIG_NAME, load_config
from autoresearch.display import Display
from autoresearch.executor import LocalExecutor, Measurement, RunRequest
from autoresearch.gitops.status import changed_paths
from autoresearch.session import Session, SessionStopped
from tests.conftest import git
from tests.support.scripted_proposer import ScriptedProposer


class RecordingExecutor:
    """The local executor, logging every request it is given."""

    def __init__(self, session_config: Any) -> None:
        self.inner = LocalExecutor(session_config)
        self.requests: list[RunRequest] = []
        self.closed = False

    def submit(self, request: RunRequest) -> Future[Measurement]:
        self.requests.append(request)
        done: Future[Measurement] = Future()
        done.set_result(self.measure(request))
        return done

    def measure(self, request: RunRequest) -> Measurement:
        return self.inner.run(request)

    def close(self) -> None:
        self.closed = True


def scripted(repo: Path, items: list[dict[str, Any]], extra: str = "") -> None:
    script = repo.parent / "script.json"
    script.write_text(json.dumps(items))
    config = (repo / CONFIG_NAME).read_text() + textwrap.dedent(f"""
        [proposer]
        name = "tests.support.scripted_proposer:ScriptedProposer"
        script = "{script}"
        """) + extra
    (repo / CONFIG_NAME).write_text(config)
    git(repo, "commit", "-qam", "scripted")


def open_session(repo: Path, **kw: Any) -> tuple[Session, io.StringIO]:
    out = io.StringIO()
    config = load_config(repo / CONFIG_NAME)
    display = Display(Console(file=out, width=200, highlight=False))
    session = Session(repo, config, "t", display, **kw)
    session.open()
    return session, out


def test_the_executor_makes_every_run_from_a_request(toy_repo: Path) -> None:
    scripted(toy_repo, [
        {"hypothesis": "better", "edits": {"target.py": "X = 6.0\n"}},
        {"hypothesis": "worse", "edits": {"target.py": "X = 1.0\n"}},
        {"hypothesis": "evaluation", "edits": {"score.py": "print('score: 0')\n"}},
        {"hypothesis": "crash", "edits": {"target.py": "X = 6.5\nCRASH = True\n"}},
    ], extra='\n[[guards]]\nname = "here"\ncommand = "pwd > ../guard-cwd.txt"\n')
    executor = RecordingExecutor(load_config(toy_repo / CONFIG_NAME))
    session, _ = open_session(toy_repo, executor=executor)
    try:
        scheduler.run(session, scheduler.Limits(iterations=5))
    finally:
        session.close()
    history = session.history.experiments
    assert [e.status for e in history] == ["keep", "keep", "discard", "rejected", "crash"]
    assert executor.closed and all(e.worker == "slot-1" for e in history)
    slot = session.slots.all[0].worktree
    # Every run the ledger holds was a request: its commit, role and seed travel as data.
    runs = sorted((r for rs in session.history.runs.values() for r in rs), key=lambda r: r.id)
    verify = [q for q in executor.requests if not q.is_guard]
    assert [(q.commit, q.role) for q in verify] == [(r.commit_sha, r.role) for r in runs]
    assert all(q.worktree == slot and q.seed is not None for q in verify)
    # Each run of the base commit (2 baseline repeats, 3 in the headline) has its own seed.
    base_runs = [q for q in verify if q.commit == session.row.base_commit]
    assert len(base_runs) == 5 and len({q.seed for q in base_runs}) == 5
    # The guard ran once, in the slot, on the kept candidate; the slot ended on the incumbent.
    incumbent = git(toy_repo, "rev-parse", "autoresearch/t")
    (guard,) = [q for q in executor.requests if q.is_guard]
    assert guard.worktree == slot and guard.commit == incumbent
    assert (slot.parent / "guard-cwd.txt").read_text().strip() == str(slot)
    assert gitops.read_head(slot) == incumbent
    assert changed_paths(slot) == []


def test_the_discard_ref_exists_before_the_ledger_records_the_verdict(toy_repo: Path) -> None:
    scripted(toy_repo, [{"hypothesis": "worse", "edits": {"target.py": "X = 1.0\n"}},
                        {"hypothesis": "crash", "edits": {"target.py": "X = 5\nCRASH = True\n"}}])
    session, _ = open_session(toy_repo)
    seen: dict[str, bool] = {}
    record = session.ledger.finish_experiment

    def spy(exp_id: str, **fields: Any) -> None:
        if fields.get("status") in ("discard", "crash"):
            seen[exp_id] = gitops.ref_exists(toy_repo, session.paths.discarded_ref(exp_id))
        record(exp_id, **fields)

    session.ledger.finish_experiment = spy  # type: ignore[method-assign]
    try:
        scheduler.run(session, scheduler.Limits(iterations=3))
    finally:
        session.close()
    assert [e.status for e in session.history.experiments] == ["keep", "discard", "crash"]
    assert seen == {"t-0002": True, "t-0003": True}


def test_the_summary_line_shows_the_best_including_the_keep_it_follows(toy_repo: Path) -> None:
    worse = [{"hypothesis": f"worse {i}", "edits": {"target.py": f"X = {-i}.0\n"}}
             for i in range(8)]
    scripted(toy_repo, [*worse, {"hypothesis": "the optimum", "edits": {"target.py": "X = 7.0\n"}}])
    session, out = open_session(toy_repo)
    try:
        scheduler.run(session, scheduler.Limits(iterations=10))
    finally:
        session.close()
    assert [e.status for e in session.history.experiments][-1] == "keep"
    text = " ".join(out.getvalue().split())
    summaries = [part for part in text.split("— ")[1:] if "10 experiments" in part]
    assert len(summaries) == 1, out.getvalue()
    # The views' vocabulary and sign: improvement positive = better, the metric's Δ beside it.
    assert "10 experiments (the baseline + 9 candidates): 1 kept, 8 discarded" in summaries[0]
    # The minutes are this run's, the counts the session's (a resume's line mixed them).
    assert " min in this run; the session: 10 experiments" in summaries[0]
    assert "best score = 0: +16 (+100%) better than the baseline (Δ score -16)" in summaries[0]


class MovedMachine(RecordingExecutor):
    """Measurements from the third on come from a machine with more CPUs."""

    def measure(self, request: RunRequest) -> Measurement:
        m = super().measure(request)
        if len(self.requests) < 3:
            return m
        fingerprint = {**m.fingerprint, "cpu_count": 64}
        return replace(m, fingerprint=fingerprint, fingerprint_key="elsewhere")


def test_a_fingerprint_change_mid_session_names_what_differs(toy_repo: Path,
                                                             tmp_path: Path) -> None:
    scripted(toy_repo, [{"hypothesis": "better", "edits": {"target.py": "X = 6.0\n"}}])
    config = load_config(toy_repo / CONFIG_NAME)
    session, _ = open_session(toy_repo, executor=MovedMachine(config))
    try:
        with pytest.raises(SessionStopped) as stopped:
            scheduler.run(session, scheduler.Limits(iterations=3))
    finally:
        session.close()
    assert stopped.value.exit_code == 3
    cpus = session.ledger.fingerprint(session.row.fingerprint_key or "")
    assert cpus is not None
    assert f"cpu_count: {cpus['cpu_count']} -> 64" in stopped.value.reason
    # The experiment is closed (not left running) and the foreign run is recorded.
    exp = session.history.experiments[-1]
    assert exp.status == "interrupted" and "fingerprint changed" in exp.decision_reason
    assert [r.fingerprint_key for r in session.history.runs[exp.id]] == ["elsewhere"]


def test_given_proposer_and_default_executor_use_the_session_worktree(
        toy_repo: Path) -> None:
    scripted(toy_repo, [{"hypothesis": "better", "edits": {"target.py": "X = 6.0\n"}}])
    config = load_config(toy_repo / CONFIG_NAME)
    proposer = ScriptedProposer(config, config.proposer.options)
    session, _ = open_session(toy_repo, proposer=proposer)
    try:
        scheduler.run(session, scheduler.Limits(iterations=2))
    finally:
        session.close()
    assert [e.worker for e in session.history.experiments] == ["slot-1", "slot-1"]
    assert gitops.read_head(session.paths.worktree) == git(toy_repo, "rev-parse", "autoresearch/t")


class ControlEveryOther:
    """The shipped rule, but asking for a control run of the incumbent every 2 candidate runs
    (the cadence a policy sets); it records the evidence it was given."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seen: list[Any] = []

    def step(self, evidence: Any) -> Any:
        self.seen.append(evidence)
        return self.inner.step(evidence)

    def control_due(self, runs_since_control: int) -> bool:
        return runs_since_control >= 2


def test_the_incumbent_is_re_measured_as_a_control_arm_when_the_policy_says(
        toy_repo: Path) -> None:
    scripted(toy_repo, [{"hypothesis": f"worse {i}", "edits": {"target.py": f"X = {i}.0\n"}}
                        for i in range(-1, 3)])
    session, _ = open_session(toy_repo)
    policy = ControlEveryOther(session.policy)
    session.policy = policy
    try:
        scheduler.run(session, scheduler.Limits(iterations=5))
    finally:
        session.close()
    base = session.row.base_commit
    runs = [r for rs in session.history.runs.values() for r in rs]
    runs.sort(key=lambda r: r.id)
    roles = [r.role for r in runs if r.experiment_id != "t-0001"]
    # After the baseline's 2 runs, 4 candidates: the 3rd comes after 2 candidate runs without
    # a run of the incumbent, so a control run of it goes first, in the same slot.
    assert roles == ["candidate", "candidate", "control", "candidate", "candidate"], roles
    controls = [r for r in runs if r.role == "control"]
    assert {r.commit_sha for r in controls} == {base}
    # The policy saw the control runs as the incumbent's evidence, with their start times.
    last = policy.seen[-1]
    assert len(last.incumbent) == 2 + 1
    assert [o.at for o in last.incumbent] == sorted(o.at for o in last.incumbent)
    assert last.incumbent[-1].at == max(r.started_at for r in controls)


def test_a_remote_backend_is_a_new_executor_the_candidate_travels_as_a_bundle(
        toy_repo: Path, tmp_path: Path) -> None:
    from tests.support.bundle_executor import BundleExecutor

    scripted(toy_repo, [{"hypothesis": "better", "edits": {"target.py": "X = 6.0\n"}},
                        {"hypothesis": "worse", "edits": {"target.py": "X = 1.0\n"}},
                        {"hypothesis": "crash", "edits": {"target.py": "X = 5\nCRASH = True\n"}}])
    config = load_config(toy_repo / CONFIG_NAME)
    remote = tmp_path / "elsewhere"
    session, _ = open_session(toy_repo, executor=BundleExecutor(config, toy_repo, remote))
    try:
        scheduler.run(session, scheduler.Limits(iterations=4))
    finally:
        session.close()
    assert [e.status for e in session.history.experiments] == ["keep", "keep", "discard", "crash"]
    # Every measured commit was shipped and checked out in the other clone; the logs came back.
    measured = {r.commit_sha for rs in session.history.runs.values() for r in rs}
    executor = session.executor
    assert isinstance(executor, BundleExecutor) and measured <= set(executor.shipped)
    assert gitops.read_head(remote / "clone") in measured
    for rs in session.history.runs.values():
        assert all(Path(r.log_path or "").is_file() for r in rs)
    # Nothing was left behind in the session's repository by the shipping.
    assert git(toy_repo, "for-each-ref", "refs/autoresearch/bundle") == ""
