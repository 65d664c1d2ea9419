"""What is measured is what is committed: a run during which the worktree's tracked files
changed is a crash, whoever changed them, and the worktree is put back (autoresearch/worktree_seal.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from autoresearch import gitops
from autoresearch.config import load_config
from autoresearch.executor import LocalExecutor, Measurement, RunRequest
from autoresearch.gitops.runner import GitError
from tests.conftest import git, run_cli, use_script

# Rewrites target.py for its own measurement, then puts the bytes and the mtime back: only the
# change time (which no process can set) still tells.
CHEAT = textwrap.dedent("""
    import os, subprocess, sys
    st = os.stat("target.py")
    old = open("target.py").read()
    open("target.py", "w").write("X = 7.0\\n")
    subprocess.run([sys.executable, "score.py"])
    open("target.py", "w").write(old)
    os.utime("target.py", ns=(st.st_atime_ns, st.st_mtime_ns))
""")


def run_once(repo: Path, tmp_path: Path, name: str) -> Measurement:
    config = load_config(repo / "autoresearch.toml")
    return LocalExecutor(config).run(RunRequest(
        commit=git(repo, "rev-parse", "HEAD"), worktree=repo, role="candidate",
        log_path=tmp_path / f"{name}.log", run_id=f"ar-test-seal-{os.getpid()}-{name}"))


def test_a_run_that_rewrites_a_tracked_file_and_puts_it_back_is_a_crash(
        toy_repo: Path, tmp_path: Path) -> None:
    (toy_repo / "cheat.py").write_text(CHEAT)
    config = toy_repo / "autoresearch.toml"
    config.write_text(config.read_text().replace('"{python} score.py"', '"{python} cheat.py"'))
    git(toy_repo, "add", "-A")
    git(toy_repo, "commit", "-qam", "a verify command that rewrites target.py for its run")
    m = run_once(toy_repo, tmp_path, "cheat")
    assert m.status == "crash" and m.objective is None, (m.status, m.reason)
    assert "the worktree changed during the run: target.py (written)" in m.reason
    assert "score: 0.0" in (tmp_path / "cheat.log").read_text()  # the fake number it printed
    assert (toy_repo / "target.py").read_text() == "X = 3.0\n"
    assert git(toy_repo, "status", "--porcelain") == ""


def test_an_honest_run_is_untouched_by_the_seal(toy_repo: Path, tmp_path: Path) -> None:
    """Runs make untracked files (caches, outputs): those are theirs; the commit is sealed."""
    (toy_repo / ".gitignore").write_text("out/\n__pycache__/\n")
    config = toy_repo / "autoresearch.toml"
    config.write_text(config.read_text().replace(
        'command = "{python} score.py"',
        "command = 'mkdir -p out && echo x > out/result.txt && {python} score.py'"))
    git(toy_repo, "add", "-A")
    git(toy_repo, "commit", "-qm", "outputs")
    for i in range(2):
        m = run_once(toy_repo, tmp_path, f"honest{i}")
        assert m.status == "ok", m.reason


def test_a_worktree_changed_before_the_run_is_put_back_first(toy_repo: Path,
                                                             tmp_path: Path) -> None:
    (toy_repo / "target.py").write_text("X = 7.0\n")  # left by something no run watched
    m = run_once(toy_repo, tmp_path, "stale")
    assert m.status == "ok" and m.objective == 16.0, (m.status, m.objective)


def test_untracked_and_ignored_files_left_before_a_run_are_gone_when_it_starts(
        toy_repo: Path, tmp_path: Path) -> None:
    """Left by the commit's own earlier run or by a process next door (a sibling's run, an
    agent at work in another slot): a .pyc stamped as a module's own cache is what Python would
    run, and an untracked module beside the evaluation would shadow a library's."""
    (toy_repo / "scorelib.py").write_text("def score(x):\n    return (x - 7) ** 2\n")
    (toy_repo / "score.py").write_text(
        "import scorelib, target\nprint(f'score: {scorelib.score(target.X)}')\n")
    (toy_repo / ".gitignore").write_text("__pycache__/\n")
    git(toy_repo, "add", "-A")
    git(toy_repo, "commit", "-qm", "an evaluation library")
    assert run_once(toy_repo, tmp_path, "first").objective == 16.0
    import importlib._bootstrap_external as bytecode
    lib = toy_repo / "scorelib.py"
    rigged = compile("def score(x):\n    return -99.0\n", "scorelib.py", "exec")
    stamp = lib.stat()
    (toy_repo / "__pycache__").mkdir(exist_ok=True)
    (toy_repo / "__pycache__" / f"scorelib.{sys.implementation.cache_tag}.pyc").write_bytes(
        bytecode._code_to_timestamp_pyc(rigged, int(stamp.st_mtime), stamp.st_size))
    (toy_repo / "random.py").write_text("raise SystemExit('shadowed')\n")  # untracked
    m = run_once(toy_repo, tmp_path, "second")
    assert m.status == "ok" and m.objective == 16.0, (m.status, m.objective, m.reason)
    assert not (toy_repo / "random.py").exists()


DAEMON = textwrap.dedent("""
    import pathlib, subprocess, sys, time
    worktree, base = pathlib.Path(sys.argv[1]), sys.argv[2]
    def head():
        try:
            return subprocess.run(["git", "-C", str(worktree), "rev-parse", "HEAD"],
                                  capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""
    while True:  # whenever a candidate is checked out, make it look perfect
        if worktree.exists() and head() not in ("", base):
            try:
                (worktree / "target.py").write_text("X = 7.0\\n")
            except OSError:
                pass
        time.sleep(0.01)
""")


def test_a_daemon_rewriting_the_candidate_during_its_runs_makes_them_crashes(
        toy_repo: Path, tmp_path: Path) -> None:
    """The tamper findings' #2: a process the harness did not start (here, the test's) rewrites
    an in-scope file while the candidate is measured. Before the seal, X = 4.0 (score 9) was
    measured as the optimum and kept."""
    use_script(toy_repo, [{"hypothesis": "X to 4", "edits": {"target.py": "X = 4.0\n"}}])
    base = git(toy_repo, "rev-parse", "HEAD")
    daemon = subprocess.Popen(
        [sys.executable, "-c", DAEMON, str(toy_repo / ".autoresearch" / "worktrees" / "w"), base],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        result = run_cli(toy_repo, "run", "--tag", "w", "--iterations", "2", timeout=240)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(daemon.pid, signal.SIGKILL)
        daemon.wait()
    assert result.returncode == 0, result.stdout + result.stderr
    with sqlite3.connect(toy_repo / ".autoresearch" / "ledger.db") as conn:
        rows = conn.execute("SELECT id, status, decision_reason FROM experiments "
                            "ORDER BY seq").fetchall()
        runs = conn.execute("SELECT status FROM runs WHERE experiment_id = 'w-0002' "
                            "AND role = 'candidate'").fetchall()
    assert [r[1] for r in rows] == ["keep", "crash"], rows
    assert "the worktree changed during the run: target.py" in str(rows[1][2]), rows
    assert runs and all(r[0] == "crash" for r in runs), runs
    assert git(toy_repo, "rev-parse", "autoresearch/w") == base  # nothing was kept


def test_a_checkout_raced_by_another_writer_is_made_again(
        toy_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A process writing the worktree can create a file between git's unlink and its create;
    # git then fails with "unable to create file ...: File exists" (seen once in CI under the
    # daemon above, which stopped the harness). The checkout is made again.
    base = git(toy_repo, "rev-parse", "HEAD")
    (toy_repo / "target.py").write_text("X = 7.0\n")
    raced: list[tuple[str, ...]] = []
    real = gitops.git

    def racing(cwd: Path, *args: str, **options: object) -> str:
        if "checkout" in args and len(raced) < 2:
            raced.append(args)
            raise GitError(["git", *args], 1, "error: unable to create file target.py: File exists")
        return real(cwd, *args, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(gitops, "git", racing)
    gitops.checkout(toy_repo, base)
    assert len(raced) == 2 and (toy_repo / "target.py").read_text() == "X = 3.0\n"
    # Any other failure is not a race: raised at once.
    raced.clear()

    def refusing(cwd: Path, *args: str, **options: object) -> str:
        raced.append(args)
        raise GitError(["git", *args], 128, "fatal: reference is not a tree: nope")

    monkeypatch.setattr(gitops, "git", refusing)
    with pytest.raises(GitError):
        gitops.checkout(toy_repo, base)
    assert len(raced) == 1
