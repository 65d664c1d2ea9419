"""The session in-process, through its seams: the executor decides where candidates run, the
ledger sees refs before verdicts, the display sees the new best, fingerprints are compared.

Real git repositories and real verify subprocesses; only the seams are swapped, the way a worker
pool (executor) or an embedding program (display) would swap them.
"""

from __future__ import annotations

import io
import json
import textwrap
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from autoresearch import gitops, loop
from autoresearch.config import CONFIG_NAME, load_config
from autoresearch.display import Display
from autoresearch.executor import InlineExecutor, Measurement, Slot
from autoresearch.runner import RunOutcome
from autoresearch.session import Session, SessionStopped
from tests.conftest import git
from tests.support.scripted_proposer import ScriptedProposer


class RecordingExecutor:
    """An inline executor whose one slot lives elsewhere, and which logs every call."""

    def __init__(self, session_config: Any, worktree: Path) -> None:
        self.inner = InlineExecutor(session_config, worktree, name="w0")
        self.calls: list[tuple[str, str]] = []
        self.guard_dirs: list[Path] = []

    def prepare(self, root: Path, tip: str) -> None:
        self.calls.append(("prepare", tip))
        self.inner.prepare(root, tip)

    def lease(self) -> AbstractContextManager[Slot]:
        self.calls.append(("lease", ""))
        return self.inner.lease()

    def reset(self, slot: Slot, commit: str) -> None:
        self.calls.append(("reset", commit))
        self.inner.reset(slot, commit)

    def measure(self, commit: str, *, role: str, log_path: Path, run_id: str,
                slot: Slot | None = None) -> Measurement:
        self.calls.append(("measure", commit))
        assert slot is not None and slot.worktree == self.inner.worktree
        return self.inner.measure(commit, role=role, log_path=log_path, run_id=run_id, slot=slot)

    def run_guard(self, slot: Slot, command: str, *, log_path: Path, timeout_s: float,
                  run_id: str) -> RunOutcome:
        self.calls.append(("guard", command))
        self.guard_dirs.append(slot.worktree)
        return self.inner.run_guard(slot, command, log_path=log_path, timeout_s=timeout_s,
                                    run_id=run_id)

    def log_tail(self, path: Path, max_bytes: int = 8192) -> str:
        return self.inner.log_tail(path, max_bytes)

    def close(self) -> None:
        self.calls.append(("close", ""))


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


def test_the_executor_owns_every_worktree_a_candidate_touches(toy_repo: Path,
                                                              tmp_path: Path) -> None:
    scripted(toy_repo, [
        {"hypothesis": "better", "edits": {"target.py": "X = 6.0\n"}},
        {"hypothesis": "worse", "edits": {"target.py": "X = 1.0\n"}},
        {"hypothesis": "evaluation", "edits": {"score.py": "print('score: 0')\n"}},
        {"hypothesis": "crash", "edits": {"target.py": "X = 6.5\nCRASH = True\n"}},
    ], extra='\n[[guards]]\nname = "here"\ncommand = "pwd > ../guard-cwd.txt"\n')
    config = load_config(toy_repo / CONFIG_NAME)
    slot_dir = tmp_path / "pool" / "w0"
    executor = RecordingExecutor(config, slot_dir)
    session, _ = open_session(toy_repo, executor=executor)
    try:
        loop.run(session, loop.Limits(iterations=5))
    finally:
        session.close()
    assert [e.status for e in session.history] == ["keep", "keep", "discard", "rejected", "crash"]
    # Nothing ran in the inline executor's place: the session worktree was never created.
    assert not session.paths.worktree.exists()
    assert all(e.worker == "w0" for e in session.history)
    kinds = [k for k, _ in executor.calls]
    assert kinds[0] == "prepare" and kinds[-1] == "close"
    assert kinds.count("lease") == 1 + 5  # the open, then one per experiment
    assert kinds.count("measure") >= 2 + 3
    # Every non-keep went back to the incumbent through the executor (a reset each).
    incumbent = git(toy_repo, "rev-parse", "autoresearch/t")
    assert [c for k, c in executor.calls if k == "reset"][-3:] == [incumbent] * 3
    # The guard ran in the candidate's slot, and the slot ended on the incumbent, clean.
    assert executor.guard_dirs == [slot_dir]
    assert (tmp_path / "pool" / "guard-cwd.txt").read_text().strip() == str(slot_dir)
    assert gitops.read_head(slot_dir) == incumbent
    assert gitops.changed_paths(slot_dir) == []


def test_the_discard_ref_exists_before_the_ledger_records_the_verdict(toy_repo: Path) -> None:
    scripted(toy_repo, [{"hypothesis": "worse", "edits": {"target.py": "X = 1.0\n"}},
                        {"hypothesis": "crash", "edits": {"target.py": "X = 5\nCRASH = True\n"}}])
    session, _ = open_session(toy_repo)
    seen: dict[str, bool] = {}
    record = session.ledger.update_experiment

    def spy(exp_id: str, **fields: Any) -> None:
        if fields.get("status") in ("discard", "crash"):
            seen[exp_id] = gitops.ref_exists(toy_repo, session.paths.discarded_ref(exp_id))
        record(exp_id, **fields)

    session.ledger.update_experiment = spy  # type: ignore[method-assign]
    try:
        loop.run(session, loop.Limits(iterations=3))
    finally:
        session.close()
    assert [e.status for e in session.history] == ["keep", "discard", "crash"]
    assert seen == {"t-0002": True, "t-0003": True}


def test_the_summary_line_shows_the_best_including_the_keep_it_follows(toy_repo: Path) -> None:
    worse = [{"hypothesis": f"worse {i}", "edits": {"target.py": f"X = {-i}.0\n"}}
             for i in range(8)]
    scripted(toy_repo, [*worse, {"hypothesis": "the optimum", "edits": {"target.py": "X = 7.0\n"}}])
    session, out = open_session(toy_repo)
    try:
        loop.run(session, loop.Limits(iterations=10))
    finally:
        session.close()
    assert [e.status for e in session.history][-1] == "keep"
    text = " ".join(out.getvalue().split())
    summaries = [part for part in text.split("— ")[1:] if "10 experiments" in part]
    assert len(summaries) == 1, out.getvalue()
    # The views' vocabulary and sign: improvement positive = better, the metric's Δ beside it.
    assert "10 experiments (the baseline + 9 candidates): 1 kept, 8 discarded" in summaries[0]
    assert "best score = 0: +16 (+100%) better than the baseline (Δ score -16)" in summaries[0]


class MovedMachine(RecordingExecutor):
    """Measurements from the third on come from a machine with more CPUs."""

    def measure(self, commit: str, *, role: str, log_path: Path, run_id: str,
                slot: Slot | None = None) -> Measurement:
        m = super().measure(commit, role=role, log_path=log_path, run_id=run_id, slot=slot)
        if sum(1 for k, _ in self.calls if k == "measure") < 3:
            return m
        fingerprint = {**m.fingerprint, "cpu_count": 64}
        return replace(m, fingerprint=fingerprint, fingerprint_key="elsewhere")


def test_a_fingerprint_change_mid_session_names_what_differs(toy_repo: Path,
                                                             tmp_path: Path) -> None:
    scripted(toy_repo, [{"hypothesis": "better", "edits": {"target.py": "X = 6.0\n"}}])
    config = load_config(toy_repo / CONFIG_NAME)
    session, _ = open_session(toy_repo, executor=MovedMachine(config, tmp_path / "w0"))
    try:
        with pytest.raises(SessionStopped) as stopped:
            loop.run(session, loop.Limits(iterations=3))
    finally:
        session.close()
    assert stopped.value.exit_code == 3
    cpus = session.ledger.fingerprint(session.row.fingerprint_key or "")
    assert cpus is not None
    assert f"cpu_count: {cpus['cpu_count']} -> 64" in stopped.value.reason
    # The experiment is closed (not left running) and the foreign run is recorded.
    exp = session.history[-1]
    assert exp.status == "interrupted" and "fingerprint changed" in exp.decision_reason
    assert [r.fingerprint_key for r in session.runs[exp.id]] == ["elsewhere"]


def test_given_proposer_and_default_executor_are_the_inline_session_worktree(
        toy_repo: Path) -> None:
    scripted(toy_repo, [{"hypothesis": "better", "edits": {"target.py": "X = 6.0\n"}}])
    config = load_config(toy_repo / CONFIG_NAME)
    proposer = ScriptedProposer(config, config.proposer.options)
    session, _ = open_session(toy_repo, proposer=proposer)
    try:
        loop.run(session, loop.Limits(iterations=2))
    finally:
        session.close()
    assert [e.worker for e in session.history] == ["inline", "inline"]
    assert gitops.read_head(session.paths.worktree) == git(toy_repo, "rev-parse", "autoresearch/t")
