"""`.autoresearch/` on a read-only filesystem is refused as the environment (exit 3), as a
read-only ledger.db is, with the fix; `report` is told it may write elsewhere (--out). A real
read-only bind mount (root only), the real CLI."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli, use_script


@pytest.fixture
def read_only_state(toy_repo: Path) -> Iterator[Path]:
    """The toy repo after a short session, its .autoresearch/ then bind-mounted read-only."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    use_script(toy_repo, [{"hypothesis": "x", "edits": {"target.py": "X = 5.0\n"}}])
    assert run_cli(toy_repo, "run", "--tag", "t", "--iterations", "2").returncode == 0
    state = toy_repo / ".autoresearch"
    bound = subprocess.run(["mount", "--bind", str(state), str(state)], capture_output=True,
                           text=True, check=False)
    if bound.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {bound.stderr.strip()}")
    try:
        made = subprocess.run(["mount", "-o", "remount,bind,ro", str(state)],
                              capture_output=True, text=True, check=False)
        if made.returncode != 0:
            pytest.skip(f"cannot make a bind mount read-only here: {made.stderr.strip()}")
        yield toy_repo
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


def test_a_read_only_state_directory_is_refused_with_exit_3(read_only_state: Path) -> None:
    state = read_only_state / ".autoresearch"
    resumed = run_cli(read_only_state, "run", "--tag", "t", "--iterations", "3")
    said = " ".join(resumed.stderr.split())
    assert resumed.returncode == 3, resumed.stdout + resumed.stderr
    assert f"cannot use {state}" in said and "Read-only file system" in said
    assert "where:" in said and "mounted read-only" in said and "Traceback" not in said

    report = run_cli(read_only_state, "report")
    said = " ".join(report.stderr.split())
    assert report.returncode == 3, report.stdout + report.stderr
    assert f"cannot use {state / 'sessions' / 't' / 'report'}" in said
    assert "autoresearch report --out DIR" in said
