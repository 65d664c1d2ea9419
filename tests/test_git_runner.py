"""The one git runner (gitops/runner.py): a git call killed by a stop signal sent to the whole
process group is made once more, so the session's own clean-up after that signal completes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from autoresearch.gitops.runner import run_git
from tests.conftest import make_repo


def test_a_git_call_killed_by_a_stop_sent_to_its_group_is_made_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `timeout 8h autoresearch run` (and systemd, `kill -TERM -PGID`) signals the whole group:
    # the git checkout of the session's clean-up died with it, and the stop ended in "git
    # checkout … failed (-15)", exit 1, instead of a clean stop.
    real = shutil.which("git")
    assert real is not None
    calls = tmp_path / "calls"
    wrapper = tmp_path / "bin" / "git"
    wrapper.parent.mkdir()
    wrapper.write_text(  # the first call dies of SIGTERM, as a group stop would kill it
        "#!/bin/sh\n"
        f'echo x >> "{calls}"\n'
        f'[ "$(wc -l < "{calls}")" -eq 1 ] && kill -TERM $$\n'
        f'exec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    monkeypatch.setenv("PATH", f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}")
    done = run_git(repo, "rev-parse", "HEAD")
    assert done.returncode == 0 and len(done.stdout.strip()) == 40
    assert calls.read_text().count("x") == 2
    # A git call that fails on its own is not made again.
    failed = run_git(repo, "rev-parse", "--verify", "no-such-ref")
    assert failed.returncode == 128 and calls.read_text().count("x") == 3
