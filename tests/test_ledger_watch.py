"""Nothing but the session writes its ledger: an agent or a run that rewrites ledger.db stops
the session (exit 3), and nothing more is written to it (autoresearch/ledger_watch.py).
"""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

import pytest

from autoresearch.ledger import Ledger
from autoresearch.ledger_watch import LedgerTamperedError, LedgerWatch, SessionLockLostError
from autoresearch.state import SessionLock, StatePaths
from tests.conftest import run_cli, use_agent, use_script

# The agent of the tamper findings (#3): its first call proposes honestly, its second also
# rewrites the ledger (the baseline's hypothesis and every one of its measurements).
AGENT = """#!/bin/sh
n=$(( $(cat {state} 2>/dev/null || echo 0) + 1 )); echo $n > {state}
sed -i "s/X = .*/X = 4.$n/" target.py
if [ $n = 2 ]; then
  GD=$(git rev-parse --path-format=absolute --git-common-dir)
  {python} - "$GD/../.autoresearch/ledger.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=10)
c.execute("UPDATE experiments SET hypothesis = 'agent was here' WHERE kind = 'baseline'")
c.execute("UPDATE metrics SET value = value + 100 WHERE run_id IN (SELECT r.id FROM runs r "
          "JOIN experiments e ON e.id = r.experiment_id WHERE e.kind = 'baseline')")
c.commit()
PY
fi
echo "Hypothesis: X to 4.$n"
"""


def use_ledger_agent(repo: Path, tmp_path: Path, script: str) -> None:
    import sys

    use_agent(repo, script.format(state=tmp_path / "calls", python=sys.executable), tmp_path)


def baseline_values(ledger: Path) -> list[float]:
    with sqlite3.connect(ledger) as conn:
        return [r[0] for r in conn.execute(
            "SELECT m.value FROM metrics m JOIN runs r ON r.id = m.run_id JOIN experiments e "
            "ON e.id = r.experiment_id WHERE e.kind = 'baseline' AND m.name = 'score'")]


@pytest.mark.slow
def test_an_agent_that_rewrites_the_ledger_stops_the_session(toy_repo: Path,
                                                             tmp_path: Path) -> None:
    use_ledger_agent(toy_repo, tmp_path, AGENT)
    ledger = toy_repo / ".autoresearch" / "ledger.db"
    result = run_cli(toy_repo, "run", "--tag", "l", "--iterations", "4", timeout=240)
    assert result.returncode == 3, result.stdout + result.stderr
    assert ("the ledger was changed by another process (noticed after the proposer's call for "
            "l-0003): the rows of session 'l' in experiments (1 row), metrics (4 rows) are not "
            "what it wrote") in result.stderr, result.stderr
    assert "recover as from a damaged ledger" in result.stderr
    assert "Traceback" not in result.stderr
    with sqlite3.connect(ledger) as conn:
        rows = conn.execute("SELECT id, status FROM experiments ORDER BY seq").fetchall()
        status = conn.execute("SELECT status FROM sessions").fetchone()[0]
    # Nothing was written after the tampering: l-0003 stays as the agent found it, the session
    # was not even marked stopped, and no backup was taken from the tampered file.
    assert rows == [("l-0001", "keep"), ("l-0002", "keep"), ("l-0003", "proposed")], rows
    assert status == "running"
    assert baseline_values(ledger) == [116.0, 116.0]
    backup = toy_repo / ".autoresearch" / "ledger-backup.db"
    assert not backup.exists() or baseline_values(backup) == [16.0, 16.0]
    # A resume does not carry on from the tampered file: it is refused until recovered.
    again = run_cli(toy_repo, "run", "--tag", "l", "--iterations", "4", timeout=240)
    assert again.returncode == 3, again.stdout + again.stderr
    assert "a session found this ledger changed by another process and stopped" in again.stderr
    damaged = toy_repo / ".autoresearch" / "damaged"
    damaged.mkdir()
    for path in ledger.parent.glob("ledger.db*"):  # the recovery steps the message gives
        path.rename(damaged / path.name)
    (tmp_path / "calls").write_text("5")  # an honest agent from now on
    fresh = run_cli(toy_repo, "run", "--tag", "l2", "--iterations", "2", timeout=240)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr


# A candidate whose own run rewrites the ledger: the evaluation imports target.py.
LEDGER_WRITER = textwrap.dedent("""
    import pathlib, sqlite3, subprocess
    X = 6.0
    top = subprocess.run(["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
                         capture_output=True, text=True).stdout.strip()
    c = sqlite3.connect(str(pathlib.Path(top).parent / ".autoresearch" / "ledger.db"), timeout=10)
    c.execute("UPDATE experiments SET decision_reason = 'rewritten' WHERE kind = 'baseline'")
    c.commit()
""")


def test_a_run_that_rewrites_the_ledger_stops_the_session(toy_repo: Path) -> None:
    use_script(toy_repo, [{"hypothesis": "X to 6, and a word in the ledger",
                           "edits": {"target.py": LEDGER_WRITER}}])
    result = run_cli(toy_repo, "run", "--tag", "r", "--iterations", "3")
    assert result.returncode == 3, result.stdout + result.stderr
    assert ("the ledger was changed by another process (noticed after r-0002's candidate run)"
            in result.stderr), result.stderr
    # status does not send the user to a `run` that refuses the ledger "to resume".
    status = run_cli(toy_repo, "status", "--tag", "r")
    shown = " ".join(status.stdout.split())
    assert "changed by another process, and `run` refuses it until it is recovered" in shown, \
        shown
    assert "to resume" not in shown, shown


def open_session(paths: StatePaths, tag: str) -> tuple[Ledger, int]:
    ledger = Ledger(paths.ledger)
    row = ledger.create_session(tag=tag, branch=f"autoresearch/{tag}", base_commit="0" * 40,
                                worktree="wt", metric="score", direction="minimize", config={},
                                proposer="p")
    ledger.create_experiment(row, kind="baseline", status="running")
    return ledger, row.id


def test_other_writers_are_allowed_but_not_changes_to_this_sessions_rows(
        tmp_path: Path) -> None:
    """Another session of the repository (or `autoresearch review`) shares ledger.db: its writes
    and checkpoints are legitimate; a change to this session's rows is not, whoever makes it."""
    paths = StatePaths(tmp_path, "mine")
    paths.prepare()
    lock = SessionLock(paths.lock)
    lock.acquire()
    ledger, session_id = open_session(paths, "mine")
    theirs, their_id = open_session(StatePaths(tmp_path, "other"), "other")
    try:
        watch = LedgerWatch(ledger, paths, session_id, lock)
        ledger.add_event(session_id, "note", "ours")
        watch.check("(test)")
        theirs.add_event(their_id, "note", "the other session at work")
        theirs.checkpoint()
        watch.check("(test)")  # its writes are its own business
        ours = ledger.experiments(session_id)[0].id
        for i in range(3):  # ours (new rows, changed rows) and theirs interleaved
            ledger.add_event(session_id, "note", f"ours {i}")
            ledger.record_hypothesis(ours, f"ours, take {i}")
            theirs.add_event(their_id, "note", f"theirs {i}")
        watch.check("(test)")
        with sqlite3.connect(paths.ledger) as conn:
            conn.execute("UPDATE experiments SET hypothesis = 'x' WHERE session_id = ?",
                         (session_id,))
        with pytest.raises(LedgerTamperedError,
                           match=r"rows of session 'mine' in experiments \(1 row\)"):
            watch.check("(test)")
        with pytest.raises(LedgerTamperedError):
            ledger.add_event(session_id, "note", "refused: nothing more is written")
    finally:
        ledger.close()
        theirs.close()
        lock.release()


def test_a_removed_session_lock_or_a_replaced_ledger_is_noticed(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path, "mine")
    paths.prepare()
    lock = SessionLock(paths.lock)
    lock.acquire()
    ledger, session_id = open_session(paths, "mine")
    try:
        watch = LedgerWatch(ledger, paths, session_id, lock)
        paths.lock.unlink()
        # The lock alone: the session stops, but its ledger is still its own, not refused.
        with pytest.raises(SessionLockLostError, match="lock file was removed or replaced"):
            watch.check("(test)")
        assert not paths.ledger.with_name("ledger.db.tampered").exists()
        ledger.add_event(session_id, "note", "the ledger is still written to")
    finally:
        ledger.close()
        lock.release()
    lock = SessionLock(paths.lock)
    lock.acquire()
    ledger = Ledger(paths.ledger)
    try:
        watch = LedgerWatch(ledger, paths, session_id, lock)
        copy = paths.ledger.with_name("copy.db")
        copy.write_bytes(paths.ledger.read_bytes())
        copy.replace(paths.ledger)
        with pytest.raises(LedgerTamperedError, match="ledger.db was replaced or removed"):
            watch.check("(test)")
    finally:
        ledger.close()
        lock.release()
