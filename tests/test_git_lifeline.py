"""Long git operations die with the orchestrator, and what a killed one left is removed.

`git bundle create` of a big repository (what a run on a Ray cluster ships) runs `git
pack-objects` for as long as the repository is big: a kill -9 of the orchestrator in the middle
left both running for half a minute, a bundle in the temp dir, and for good a ref
(`refs/autoresearch/bundle/...`) that kept the bundled commits from gc. Every git process carries
the orchestrator's owner mark and a long one first starts the watchdog (gitops/runner.py), as a
verify run does (lifeline.py); the next session removes the ref and the bundles
(`gitops.remove_stale_bundles`, on every open).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import psutil
import pytest

from autoresearch import gitops
from autoresearch.gitops.runner import run_git
from autoresearch.process_tree import OWNER_ENV, owned_prefix, owner_token
from autoresearch.proposers.agent.sessions import is_transient_harness_ref
from tests.conftest import CONFIG, SCORE_PY, cli_env, git, make_repo, run_cli, use_script
from tests.support.processes import alive

# An orchestrator in miniature: it makes its bundle directory as a Ray session does, and the
# bundle from a worker thread (the Ray executor's run threads make them).
BUNDLER = textwrap.dedent(
    """
    import sys, tempfile, threading
    from pathlib import Path
    from autoresearch import gitops
    from autoresearch.process_tree import owned_prefix
    repo = Path(sys.argv[1])
    home = Path(tempfile.mkdtemp(prefix=owned_prefix(gitops.BUNDLES_PREFIX)))
    head = gitops.rev_parse(repo, "HEAD")
    worker = threading.Thread(target=gitops.create_bundle, args=(repo, head, home / "c.bundle"))
    worker.start()
    worker.join()
    """
)


def big_repo(path: Path) -> Path:
    """A session-ready repository whose bundle takes git half a minute to make: many blobs of
    random bytes and a wide delta window (git tries each against the 250 before it)."""
    repo = make_repo(path, {"target.py": "X = 3.0\n", "score.py": SCORE_PY,
                            "autoresearch.toml": CONFIG})
    use_script(repo, [])
    data = repo / "data"
    data.mkdir()
    for i in range(1200):
        (data / f"blob{i}.bin").write_bytes(os.urandom(8192))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "data")
    git(repo, "config", "pack.window", "250")
    git(repo, "config", "pack.threads", "1")  # one core: the machine is shared
    return repo


def git_descendants(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return [p for p in psutil.Process(pid).children(recursive=True) if _is_git(p)]
    return []


def _is_git(proc: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        # A zombie (a git that just exited, not yet reaped) has an empty command line.
        command = proc.cmdline()
        return bool(command) and os.path.basename(command[0]) == "git"
    return False


def wait_for_pack_objects(bundler: subprocess.Popen[bytes], timeout: float = 60) -> list[
        psutil.Process]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = git_descendants(bundler.pid)
        if any("pack-objects" in p.cmdline() for p in found if _is_git(p)):
            return found
        assert bundler.poll() is None, "the bundler ended before git pack-objects started"
        time.sleep(0.05)
    raise AssertionError(f"no git pack-objects under the bundler within {timeout} s")


def bundle_refs(repo: Path) -> list[str]:
    return git(repo, "for-each-ref", "--format=%(refname)", gitops.BUNDLE_REFS).split()


@pytest.mark.slow
def test_a_kill_9_while_bundling_kills_git_and_the_next_session_removes_what_it_left(
        tmp_path: Path) -> None:
    repo = big_repo(tmp_path / "repo")
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = cli_env({"TMPDIR": str(temp)})
    bundler = subprocess.Popen([sys.executable, "-c", BUNDLER, str(repo)], env=env,
                               stdin=subprocess.DEVNULL)
    seen: list[psutil.Process] = []
    try:
        seen = wait_for_pack_objects(bundler)
        (ref,) = bundle_refs(repo)
        (home,) = temp.glob(f"{gitops.BUNDLES_PREFIX}*")
        os.kill(bundler.pid, signal.SIGKILL)
        bundler.wait(timeout=10)
        # The watchdog sends SIGTERM, then SIGKILL 2 s later: nothing is left after 6 s (git
        # alone would have gone on for half a minute).
        deadline = time.monotonic() + 6
        while [p for p in seen if alive(p.pid)] and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = [" ".join(p.cmdline()) for p in seen if alive(p.pid)]
        assert not survivors, f"git outlived its orchestrator's kill -9: {survivors}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            bundler.kill()
        for proc in seen:
            with contextlib.suppress(psutil.Error):
                proc.kill()
    assert bundle_refs(repo) == [ref]  # what the kill left: gitops' `finally` never ran
    # The next session (any session of the repository) removes both when it opens.
    result = run_cli(repo, "run", "--tag", "next", "-n", "1", env={"TMPDIR": str(temp)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert bundle_refs(repo) == []
    assert not home.exists()


def test_a_live_processs_bundle_ref_is_kept_and_one_that_names_no_live_process_goes(
        tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    head = git(repo, "rev-parse", "HEAD")
    mine = gitops.BUNDLE_REFS + gitops._bundle_ref()  # as create_bundle names its ref
    older = gitops.BUNDLE_REFS + uuid.uuid4().hex  # as releases before named theirs
    dead = subprocess.run([sys.executable, "-c", "from autoresearch import gitops; "
                           "print(gitops._bundle_ref())"], capture_output=True, text=True,
                          check=True, env=cli_env()).stdout.strip()
    for ref in (mine, older, gitops.BUNDLE_REFS + dead):
        git(repo, "update-ref", ref, head)
        # The agent's guard takes these for the harness's own, by their shape.
        assert is_transient_harness_ref(ref), ref
    removed = gitops.remove_stale_bundles(repo)
    assert sorted(removed) == sorted([older, gitops.BUNDLE_REFS + dead])
    assert bundle_refs(repo) == [mine]


def test_a_bundle_directory_is_removed_only_once_its_process_is_gone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # read TMPDIR again
    ours = tmp_path / f"{owned_prefix(gitops.BUNDLES_PREFIX)}abc"
    gone = tmp_path / f"{gitops.BUNDLES_PREFIX}999999999_1.000-abc"  # no such pid
    for directory in (ours, gone):
        directory.mkdir()
        (directory / "c.bundle").write_bytes(b"x")
    assert gitops.remove_stale_bundles(repo) == [str(gone)]
    assert ours.exists() and not gone.exists()


def test_every_git_process_carries_the_owner_mark_the_watchdog_kills_by(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    # What a git alias runs shows git's own environment (pack-objects inherits it the same way).
    shown = run_git(repo, "-c", "alias.showenv=!env", "showenv").stdout.decode()
    assert f"{OWNER_ENV}={owner_token()}" in shown.splitlines()
