"""Stopping and resuming: Ctrl-C, SIGKILL of the orchestrator, stale locks, leftovers."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import cli_env, git, run_cli, use_script

SLOW = [{"hypothesis": f"try {x}", "edits": {"target.py": f"X = {x}\nSLEEP = 1.5\n"}}
        for x in (5.0, 6.0, 6.5, 6.8, 6.9, 6.95)]


def start(repo: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "autoresearch", "run", "--repo", str(repo), *args],
        cwd=repo, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        stdin=subprocess.DEVNULL,
    )


def query(repo: Path, sql: str) -> list[tuple[object, ...]]:
    db = repo / ".autoresearch" / "ledger.db"
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=10) as conn:
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.OperationalError:
            return []


def wait_for_running(repo: Path, seq: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        rows = query(repo, f"SELECT status FROM experiments WHERE seq = {seq}")
        if rows and rows[0][0] == "running":
            time.sleep(0.5)  # well inside the 1.5 s run
            return
        time.sleep(0.05)
    raise AssertionError(f"experiment {seq} never ran")


def assert_consistent(repo: Path, total: int) -> None:
    rows = query(repo, "SELECT seq, status, commit_sha FROM experiments ORDER BY seq")
    seqs = [r[0] for r in rows]
    assert seqs == list(range(1, len(rows) + 1))
    assert sum(1 for r in rows if r[1] != "interrupted") == total
    assert not [r for r in rows if r[1] in ("proposed", "running")]
    kept = query(repo, "SELECT commit_sha FROM experiments WHERE status = 'keep' "
                 "ORDER BY finished_at DESC, seq DESC LIMIT 1")
    assert git(repo, "rev-parse", "autoresearch/t") == kept[0][0]
    assert not (repo / ".autoresearch/sessions/t/lock").exists()


@pytest.mark.slow
def test_resume_after_sigkill_of_the_orchestrator(toy_repo: Path) -> None:
    use_script(toy_repo, SLOW)
    proc = start(toy_repo, "--tag", "t", "--iterations", "5")
    wait_for_running(toy_repo, 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert query(toy_repo, "SELECT status FROM experiments WHERE seq = 3")[0][0] == "running"
    # status sees that the lock's holder is dead instead of claiming the session runs.
    status = run_cli(toy_repo, "status", "--tag", "t")
    assert status.returncode == 0, status.stderr
    shown = " ".join(status.stdout.split())
    assert f"stopped (process {proc.pid} died; run `autoresearch run` to resume)" in shown
    assert "running (pid" not in shown and "now t-0003" not in shown
    assert "t-0003 was running when the process died" in shown
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "5")
    assert result.returncode == 0, result.stdout + result.stderr
    statuses = [r[0] for r in query(toy_repo, "SELECT status FROM experiments ORDER BY seq")]
    assert statuses[2] == "interrupted"
    assert_consistent(toy_repo, 5)
    events = [r[0] for r in query(toy_repo, "SELECT message FROM events WHERE kind='recovery'")]
    assert any("stale lock" in e for e in events)
    # The interrupted commit stays inspectable; the proposal was re-run, not lost.
    assert git(toy_repo, "for-each-ref", "refs/autoresearch/t/discarded/t-0003")
    hyps = [r[0] for r in query(toy_repo, "SELECT hypothesis FROM experiments ORDER BY seq")]
    assert hyps[2] == hyps[3] == "try 6.0"


@pytest.mark.slow
def test_ctrl_c_records_interrupted_and_resume_completes_n(toy_repo: Path) -> None:
    use_script(toy_repo, SLOW)
    proc = start(toy_repo, "--tag", "t", "--iterations", "4")
    wait_for_running(toy_repo, 2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, out
    assert "interrupted" in out
    assert query(toy_repo, "SELECT status FROM experiments WHERE seq = 2")[0][0] == "interrupted"
    assert git(toy_repo, "status", "--porcelain", "--untracked-files=no") == ""
    # The run Ctrl-C cut short is recorded too, with its log and how long it ran.
    runs = query(toy_repo, "SELECT status, log_path, duration_s FROM runs "
                 "WHERE experiment_id = 't-0002'")
    assert [r[0] for r in runs] == ["interrupted"], runs
    assert Path(str(runs[0][1])).exists() and 0.3 < float(str(runs[0][2])) < 10
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "4")
    assert result.returncode == 0, result.stdout + result.stderr
    assert_consistent(toy_repo, 4)


def test_a_live_session_cannot_be_started_twice(toy_repo: Path) -> None:
    use_script(toy_repo, SLOW)
    # Room for the whole script: on a busy machine the second command can take seconds to
    # start, and the first must still be running when it does (SIGTERM ends it below).
    proc = start(toy_repo, "--tag", "t", "--iterations", str(len(SLOW) + 1))
    try:
        wait_for_running(toy_repo, 1 + 1)
        result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", str(len(SLOW) + 1))
        assert result.returncode == 4, result.stdout + result.stderr
        assert "already running" in result.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    # The experiment SIGTERM cut short is recorded as such; none is left open.
    statuses = [r[0] for r in query(toy_repo, "SELECT status FROM experiments ORDER BY seq")]
    assert statuses[-1] == "interrupted" and "running" not in statuses, statuses


def test_resume_refuses_another_machine(toy_repo: Path) -> None:
    use_script(toy_repo, SLOW[:1])
    assert run_cli(toy_repo, "run", "--tag", "t", "--iterations", "1").returncode == 0
    with sqlite3.connect(toy_repo / ".autoresearch/ledger.db") as conn:
        (key,) = conn.execute("SELECT fingerprint_key FROM sessions").fetchone()
        conn.execute("UPDATE fingerprints SET key = 'other', json = "
                     "json_set(json, '$.cpu_count', 64) WHERE key = ?", (key,))
        conn.execute("UPDATE sessions SET fingerprint_key = 'other'")
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "3")
    assert result.returncode == 3
    assert "not be comparable" in result.stderr and "cpu_count" in result.stderr
    assert os.path.exists(toy_repo / ".autoresearch/ledger.db")


def test_resume_recreates_missing_refs_of_parked_commits(toy_repo: Path) -> None:
    # kill -9 could once fall between recording a discard and creating its ref: the ledger
    # knew a parked commit git had no ref for. Recovery now re-creates any such ref.
    use_script(toy_repo, [
        {"hypothesis": "worse", "edits": {"target.py": "X = 1.0\n"}},
        {"hypothesis": "crash", "edits": {"target.py": "X = 6.0\nCRASH = True\n"},
         "repairs": [{"edits": {"target.py": "X = 6.0\n"}}]},
        {"hypothesis": "better", "edits": {"target.py": "X = 6.5\n"}},
    ])
    assert run_cli(toy_repo, "run", "--tag", "t", "--iterations", "3").returncode == 0
    discarded = "refs/autoresearch/t/discarded/t-0002"
    attempt = "refs/autoresearch/t/discarded/t-0003-a1"
    shas = {ref: git(toy_repo, "rev-parse", ref) for ref in (discarded, attempt)}
    for ref in shas:
        git(toy_repo, "update-ref", "-d", ref)
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "4")
    assert result.returncode == 0, result.stdout + result.stderr
    assert {ref: git(toy_repo, "rev-parse", ref) for ref in shas} == shas
    events = [r[0] for r in query(toy_repo, "SELECT message FROM events WHERE kind='recovery'")]
    assert any("re-created the refs of 2 parked commit(s): t-0002, t-0003-a1" in e
               for e in events), events
