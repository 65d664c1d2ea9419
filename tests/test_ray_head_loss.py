"""A Ray cluster whose head goes away mid-session (ray_cluster.HeadWatch): the session ends as
README promises for a lost cluster (exit 3, its message, nothing recorded lost) well before Ray
itself aborts the driver, and the same command resumes on a head started again."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import make_repo, run_cli, use_script
from tests.support.processes import free_port
from tests.test_ray_executor import (
    LOOPBACK,
    SCORE,
    config,
    rows,
    running,
    start,
    start_head,
    stop_cluster,
)

pytestmark = pytest.mark.slow


def test_a_lost_head_stops_the_session_with_exit_3_and_the_same_command_resumes(
        tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    repo = make_repo(tmp_path / "repo", {"x.py": "X = 3.0\n", "y.py": "Y = 0.0\n",
                                         "score.py": SCORE, "autoresearch.toml": config(pids)})
    use_script(repo, [{"hypothesis": "slow", "edits": {"x.py": "X = 5.0\nSLEEP = 60\n"}}])
    temps = [Path(tempfile.mkdtemp(prefix="ar-ray-")) for _ in range(2)]
    port = free_port()
    head = start_head(port, temps[0])
    try:
        proc = start(repo, f"127.0.0.1:{port}", "-n", "3")
        running(pids, at_least=3)  # the baseline's two runs, then the slow candidate's
        stop_cluster(head)
        lost = time.monotonic()
        out, _ = proc.communicate(timeout=90)
        took = time.monotonic() - lost
        said = " ".join(out.split())
        assert proc.returncode == 3, out
        assert took < 30, f"{took:.0f} s to stop after the head was lost"  # Ray's own: 60 s
        assert "head at 127.0.0.1:" in said and "stopped answering" in said, said
        assert "run the same command to resume" in said, said
        assert not [e for e in rows(repo, "SELECT status FROM experiments")
                    if e[0] in ("proposed", "running")]
        # A head started again (at another address): the same command goes on, nothing lost
        # and nothing recorded twice.
        port = free_port()
        head = start_head(port, temps[1])
        (repo.parent / "script.json").write_text(json.dumps(
            [{"hypothesis": "X to 6", "edits": {"x.py": "X = 6.0\n"}}]))
        result = run_cli(repo, "run", "--tag", "t", "-n", "3", "--ray-address",
                         f"127.0.0.1:{port}", env=LOOPBACK)
        assert result.returncode == 0, result.stdout + result.stderr
        exps = rows(repo, "SELECT seq, status FROM experiments ORDER BY seq")
        assert [e[0] for e in exps] == list(range(1, len(exps) + 1)), exps
        assert exps[0] == (1, "keep") and exps[-1][1] == "keep", exps
        assert not [e for e in exps if e[1] in ("proposed", "running")], exps
        (dupes,) = rows(repo, "SELECT COUNT(*) - COUNT(DISTINCT log_path) FROM runs")[0]
        assert dupes == 0
    finally:
        stop_cluster(head)
        for temp in temps:
            shutil.rmtree(temp, ignore_errors=True)
