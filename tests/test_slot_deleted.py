"""A worktree slot deleted under a running session (by hand, a clean-up tool, `rm -rf` of what
looked like a cache): the session stops with the reason and resumes, it does not blame the
candidate whose run was going on there, refuse the sibling slot's run, or crash.

Real CLI, real git, real subprocesses: the evaluation of one candidate waits while the test
deletes the worktree it runs in.
"""

from __future__ import annotations

import shutil
import sqlite3
import textwrap
import threading
import time
from pathlib import Path

import pytest

from autoresearch.slots import Slots
from autoresearch.state import StatePaths
from tests.conftest import git, make_repo, run_cli, use_script

# x.py may ask for a pause (the run says where it is, then waits for the test's go) or a sleep.
SCORE = textwrap.dedent(
    """
    import os, pathlib, time
    import x
    flags = pathlib.Path(os.environ["SLOT_TEST_FLAGS"])
    if getattr(x, "PAUSE", False):
        (flags / "started").write_text(os.getcwd())
        deadline = time.time() + 30
        while not (flags / "go").exists() and time.time() < deadline:
            time.sleep(0.05)
    time.sleep(getattr(x, "SLEEP", 0))
    print(f"score: {(x.X - 7) ** 2}")
    """
)
CONFIG = textwrap.dedent(
    """
    scope = ["x.py"]
    protected = ["score.py"]
    [verify]
    command = "{python} score.py"
    budget_seconds = 40
    timeout_seconds = 60
    [metric]
    name = "score"
    direction = "minimize"
    [decision]
    repeats = 2
    deterministic = true
    """
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"x.py": "X = 3.0\n", "score.py": SCORE,
                                         "autoresearch.toml": CONFIG})


def delete_the_paused_run_worktree(flags: Path) -> threading.Thread:
    """Once a paused run has started, delete the worktree it runs in, then let it finish."""

    def act() -> None:
        started = flags / "started"
        deadline = time.time() + 120
        while not started.exists() and time.time() < deadline:
            time.sleep(0.05)
        if started.exists():
            time.sleep(0.2)  # the text is written
            shutil.rmtree(started.read_text())
        (flags / "go").write_text("")

    thread = threading.Thread(target=act, daemon=True)
    thread.start()
    return thread


def test_a_slot_deleted_during_a_run_stops_the_session_blaming_no_run_and_it_resumes(
        repo: Path, tmp_path: Path) -> None:
    flags = tmp_path / "flags"
    flags.mkdir()
    use_script(repo, [
        # Slot 1: still running when slot 2's run ends (its sibling must not be refused).
        {"hypothesis": "X to 5", "edits": {"x.py": "X = 5.0\nSLEEP = 4.0\n"}},
        # Slot 2: its worktree is deleted while it runs.
        {"hypothesis": "X to 6", "edits": {"x.py": "X = 6.0\nPAUSE = True\n"}},
        {"hypothesis": "X to 7", "edits": {"x.py": "X = 7.0\n"}},
        {"hypothesis": "X to 6.5", "edits": {"x.py": "X = 6.5\n"}},
    ])
    env = {"SLOT_TEST_FLAGS": str(flags)}
    deleter = delete_the_paused_run_worktree(flags)
    stopped = run_cli(repo, "run", "--tag", "t", "-n", "4", "-w", "2", env=env)
    deleter.join(timeout=5)
    out = stopped.stdout + stopped.stderr
    assert stopped.returncode == 3, out
    assert "was deleted while its candidate run went on" in out, out
    assert "slot 2" in out and "Run the same command to resume" in out, out
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        statuses = dict(conn.execute("SELECT hypothesis, status FROM experiments"))
        failed_runs = conn.execute("SELECT COUNT(*) FROM runs WHERE status IN "
                                   "('crash', 'timeout')").fetchone()[0]
    # Neither the candidate in the deleted slot nor its sibling is charged with anything.
    assert statuses["X to 6"] == "interrupted", statuses
    assert statuses.get("X to 5") in ("interrupted", "keep", "discard"), statuses
    assert failed_runs == 0
    assert "modified protected files" not in out and "git's own files" not in out, out

    # The same command goes on: the slot is made again.
    (flags / "started").unlink()
    resumed = run_cli(repo, "run", "--tag", "t", "-n", "6", "-w", "2", env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (repo / ".autoresearch" / "worktrees" / "t" / "slot-2" / "x.py").is_file()
    assert git(repo, "worktree", "list").count("slot-") == 2


def test_a_slot_deleted_between_runs_is_made_again_when_it_is_next_used(repo: Path) -> None:
    tip = git(repo, "rev-parse", "HEAD").strip()
    paths = StatePaths(repo, "t")
    slots = Slots(repo, paths, workers=2)
    slots.prepare(tip)
    second = slots.all[1]
    shutil.rmtree(second.worktree)
    slots.holding(second, tip)
    assert (second.worktree / "x.py").read_text() == "X = 3.0\n"
    assert git(second.worktree, "rev-parse", "HEAD").strip() == tip


def test_check_whose_verify_deletes_its_worktree_says_so_without_a_traceback(
        repo: Path) -> None:
    (repo / "x.py").write_text("X = 3.0  # knob: float(0, 10)\n")
    (repo / "autoresearch.toml").write_text(CONFIG.replace(
        'command = "{python} score.py"',
        "command = \"{python} -c 'import os, shutil; shutil.rmtree(os.getcwd()); "
        "print(1)'\""))
    git(repo, "commit", "-qam", "a verify that deletes where it runs")
    result = run_cli(repo, "check")
    out = result.stdout + result.stderr
    assert result.returncode == 3, out
    assert "the check's worktree" in out and "was deleted while its check run went on" in out
    assert "Traceback" not in out


def test_a_slot_directory_without_its_git_link_is_made_again(repo: Path) -> None:
    tip = git(repo, "rev-parse", "HEAD").strip()
    slots = Slots(repo, StatePaths(repo, "t"), workers=2)
    slots.prepare(tip)
    second = slots.all[1]
    (second.worktree / ".git").unlink()  # an rm -rf cut short, say
    slots.holding(second, tip)
    assert git(second.worktree, "rev-parse", "HEAD").strip() == tip
    assert (second.worktree / "x.py").read_text() == "X = 3.0\n"

