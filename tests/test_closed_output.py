"""A session started with its output closed by the shell (`autoresearch run >&- 2>night.log`):
Python leaves sys.stdout None; the first print was a traceback (exit 1), and the next file opened
would take descriptor 1 and receive the prints."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.conftest import cli_env, use_script


def test_a_run_started_with_stdout_closed_runs_and_records_everything(toy_repo: Path) -> None:
    use_script(toy_repo, [{"hypothesis": "closer", "edits": {"target.py": "X = 6.0\n"}}])
    log = toy_repo.parent / "night.log"
    done = subprocess.run(
        ["bash", "-c", 'exec "$@" >&- 2>"$LOG"', "bash", sys.executable, "-m", "autoresearch",
         "run", "--tag", "t", "--iterations", "2", "--repo", str(toy_repo)],
        cwd=toy_repo, env=cli_env({"LOG": str(log)}), timeout=300, stdin=subprocess.DEVNULL)
    said = log.read_text()
    assert done.returncode == 0, said
    assert "Traceback" not in said, said
    with sqlite3.connect(toy_repo / ".autoresearch" / "ledger.db") as conn:
        statuses = [r[0] for r in conn.execute("SELECT status FROM experiments ORDER BY seq")]
    assert statuses == ["keep", "keep"]
