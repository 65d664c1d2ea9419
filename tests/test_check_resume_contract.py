"""`check` says what `run` would refuse when it resumes the latest session (resume_contract):
runs that would get another thread count than the session's runs got, and `[verify] inputs`
whose content differs from when the session started. It asks the functions `run` refuses with,
reads the session's pinned thread count without pinning anything, and says ready (exit 0) with
the session's own settings."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import textwrap
from pathlib import Path

from tests.conftest import CONFIG, SCORE_PY, edit_config, run_cli
from tests.support.git_repo import git, make_repo

TUNE = '\n[proposer]\nname = "tune"\n\n[knobs]\n"target.py:X" = "float(0, 10)"\n'


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def toy(where: Path, config: str, files: dict[str, str] | None = None) -> Path:
    return make_repo(where, {"target.py": "X = 3.0\n", "score.py": SCORE_PY,
                             "autoresearch.toml": config, **(files or {})})


def run_count(repo: Path) -> int:
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        return int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])


def refused(check: subprocess.CompletedProcess[str], *said: str) -> str:
    """Assert `check` found the problem(s) `run` refuses with, as ✗ lines, and did not say ready;
    returns its flattened output."""
    out = flat(check.stdout)
    assert check.returncode == 1, check.stdout + check.stderr
    assert "ready:" not in out, out
    for text in said:
        assert text in out, out
    crosses = check.stdout.count("✗")
    assert f"{crosses} problem(s) found" in check.stdout, check.stdout
    return out


def ready(check: subprocess.CompletedProcess[str], tag: str) -> None:
    out = flat(check.stdout)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"ready: `autoresearch run` will resume session {tag}" in out, out
    assert "✗" not in out, out


def test_check_refuses_a_resume_whose_runs_would_get_another_thread_count(
        tmp_path: Path) -> None:
    """A session of 1 worker whose runs got 1 thread; `[run] threads = 2` then: `run -w 2`
    refuses to resume (exit 3), and `check -w 2` says so before the night, not ready."""
    repo = toy(tmp_path / "repo", CONFIG + TUNE + "\n[run]\nthreads = 1\n")
    first = run_cli(repo, "run", "--tag", "t", "--iterations", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    pin = repo / ".autoresearch" / "sessions" / "t" / "threads.json"
    assert not pin.exists()  # a number is each run's: nothing is pinned
    edit_config(repo, "threads = 1", "threads = 2")
    git(repo, "commit", "-qam", "two threads")

    expected = "each run would now get 2 thread(s) where the runs of session 't' got 1"
    for workers in (["--workers", "2"], []):
        out = refused(run_cli(repo, "check", *workers),
                      f"✗ `autoresearch run` would refuse to resume session t: {expected}")
        assert "where: [run] threads in autoresearch.toml, --workers" in out
        assert "fix: set them back so that each run gets 1, or start a new session " \
               "(autoresearch run --tag NEW)" in out
        assert "each run gets 2 threads ([run] threads)" in out  # what the resume would get
    runs = run_count(repo)
    run = run_cli(repo, "run", "--iterations", "4", "--workers", "2")
    assert run.returncode == 3, run.stdout + run.stderr
    assert expected in flat(run.stdout + run.stderr)
    assert run_count(repo) == runs
    assert not pin.exists()  # check pinned nothing either

    # The session's own setting: ready, with one worker or two (a number is each run's count).
    edit_config(repo, "threads = 2", "threads = 1")
    git(repo, "commit", "-qam", "one thread again")
    ready(run_cli(repo, "check"), "t")
    ready(run_cli(repo, "check", "--workers", "2"), "t")


def test_check_reads_the_pinned_auto_threads_the_resume_gets(tmp_path: Path) -> None:
    """"auto" is pinned when the session starts (2 threads here, whatever this machine's load):
    the 2 workers of `run -w 2` would share them, 1 thread each, which `run` refuses; `check -w
    2` reads the pin (and leaves it alone) and says the same, `check` alone says ready."""
    repo = toy(tmp_path / "repo", CONFIG + TUNE)
    pin = repo / ".autoresearch" / "sessions" / "a" / "threads.json"
    pin.parent.mkdir(parents=True)
    (repo / ".autoresearch" / ".gitignore").write_text("*\n")
    pinned = json.dumps({"threads": 2, "why": "auto: all 2 cores, idle", "per_run": False})
    pin.write_text(pinned + "\n")
    first = run_cli(repo, "run", "--tag", "a", "--iterations", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    assert pin.read_text() == pinned + "\n"

    expected = "each run would now get 1 thread(s) where the runs of session 'a' got 2"
    out = refused(run_cli(repo, "check", "--workers", "2"),
                  f"✗ `autoresearch run` would refuse to resume session a: {expected}")
    assert "each run gets 2 threads (auto: all 2 cores, idle; measured when the session " \
           "started)" in out
    assert "slot-1 1 thread; slot-2 1 thread" in out
    assert "--workers" in out and "--tag NEW" in out
    run = run_cli(repo, "run", "--iterations", "4", "--workers", "2")
    assert run.returncode == 3, run.stdout + run.stderr
    assert expected in flat(run.stdout + run.stderr)

    ready(run_cli(repo, "check"), "a")
    assert pin.read_text() == pinned + "\n"
    # A pin gone: check measures the figure as `run` would, and pins nothing (run's to do).
    pin.unlink()
    run_cli(repo, "check")
    assert not pin.exists()


# The evaluation reads its optimum from a file outside the repository.
OUTSIDE_SCORE = textwrap.dedent("""
    import sys, target
    best = float(open(sys.argv[1]).read())
    print(f"score: {(target.X - best) ** 2}")
""")


def test_check_refuses_a_resume_on_changed_evaluation_inputs(tmp_path: Path) -> None:
    outside = tmp_path / "outside" / "best.txt"
    outside.parent.mkdir()
    outside.write_text("7.0\n")
    config = CONFIG.replace('command = "{python} score.py"',
                            f'command = "{{python}} score.py {outside}"\n'
                            f'inputs = ["{outside.parent}"]')
    config = config.replace('record = ["mem_mb"]\n', "")
    repo = toy(tmp_path / "repo", config + TUNE, {"score.py": OUTSIDE_SCORE})
    first = run_cli(repo, "run", "--tag", "r", "--iterations", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    ready(run_cli(repo, "check"), "r")

    outside.write_text("7.5\n")  # while no session runs: the hash recorded at its start differs
    expected = f"the evaluation inputs differ from when the session started: {outside}"
    out = refused(run_cli(repo, "check"),
                  f"✗ `autoresearch run` would refuse to resume session r: {expected}")
    assert "where: [verify] inputs" in out
    assert "fix: restore them as they were" in out and "another --tag" in out
    assert "held fixed for the session" not in out
    run = run_cli(repo, "run", "--iterations", "3")
    assert run.returncode == 3, run.stdout + run.stderr
    assert expected in flat(run.stderr)

    outside.write_text("7.0\n")
    ready(run_cli(repo, "check"), "r")
