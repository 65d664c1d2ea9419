"""What a resumed session must still agree with beyond the config: the interpreter its verify
command runs, and the threads each run gets; and what `check` says of the session `run` would
resume (its count of experiments, a proposer that cannot work on the session's incumbent)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

from autoresearch.fingerprint import comparable_key
from tests.conftest import CONFIG, SCORE_PY, edit_config, git, make_repo, run_cli

TUNE = '\n[proposer]\nname = "tune"\n\n[knobs]\n"target.py:X" = "float(0, 10)"\n'


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def toy(where: Path, config: str) -> Path:
    return make_repo(where, {"target.py": "X = 3.0\n", "score.py": SCORE_PY,
                             "autoresearch.toml": config})


def experiments(repo: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        return conn.execute("SELECT kind, status FROM experiments ORDER BY id").fetchall()


def run_count(repo: Path) -> int:
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        return int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])


def test_a_resume_with_another_python3_first_on_path_is_refused(tmp_path: Path) -> None:
    """`python3 score.py` runs whichever python3 PATH finds: the session's runs and the
    resumed ones must be the same interpreter, not only autoresearch's own."""
    repo = toy(tmp_path / "repo", CONFIG.replace("{python} score.py", "python3 score.py") + TUNE)
    first = run_cli(repo, "run", "--tag", "t", "--iterations", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    python3 = shutil.which("python3")
    assert python3 is not None
    # Another file named python3, first on PATH: it runs the same interpreter (so the version
    # alone would not tell), but it is not the program the session's runs ran.
    other = tmp_path / "other-bin"
    other.mkdir()
    (other / "python3").write_text(f'#!/bin/sh\nexec {os.path.realpath(python3)} "$@"\n')
    (other / "python3").chmod(0o755)
    moved = run_cli(repo, "run", "--tag", "t", "--iterations", "4",
                    env={"PATH": f"{other}{os.pathsep}{os.environ['PATH']}"})
    assert moved.returncode == 3, moved.stdout + moved.stderr
    said = flat(moved.stderr)
    assert "not be comparable" in said and "evaluation.program" in said
    assert f"-> {other / 'python3'}" in said and "the same PATH" in said
    assert len(experiments(repo)) == 2  # nothing ran with the other python3
    same = run_cli(repo, "run", "--tag", "t", "--iterations", "3")  # the session's own PATH
    assert same.returncode == 0, same.stdout + same.stderr
    assert len(experiments(repo)) == 3


def test_a_resume_whose_runs_would_get_another_thread_count_is_refused_before_any_run(
        tmp_path: Path) -> None:
    repo = toy(tmp_path / "repo", CONFIG + TUNE + "\n[run]\nthreads = 1\n")
    assert run_cli(repo, "run", "--tag", "t", "--iterations", "2").returncode == 0
    runs_before = run_count(repo)
    edit_config(repo, "threads = 1", "threads = 2")
    git(repo, "commit", "-qam", "two threads")
    moved = run_cli(repo, "run", "--tag", "t", "--iterations", "4")
    assert moved.returncode == 3, moved.stdout + moved.stderr
    said = flat(moved.stdout + moved.stderr)
    assert "each run would now get 2 thread(s) where the runs of session 't' got 1" in said
    assert "[run] threads" in said and "--tag NEW" in said
    # Nothing ran with 2 threads: no run was spent finding it out.
    assert experiments(repo)[2:] == []
    assert run_count(repo) == runs_before

    # "auto" is pinned when the session starts: an OMP_NUM_THREADS in the shell at resume is
    # not what the runs get, so it changes nothing.
    auto = toy(tmp_path / "auto", CONFIG + TUNE)
    assert run_cli(auto, "run", "--tag", "a", "--iterations", "2").returncode == 0
    resumed = run_cli(auto, "run", "--tag", "a", "--iterations", "3",
                      env={"OMP_NUM_THREADS": "7"})
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert len(experiments(auto)) == 3


def test_check_asks_the_proposer_on_the_incumbent_run_resumes_from(tmp_path: Path) -> None:
    """A scope moved on main to a file only HEAD has: `run` resumes from the session's
    incumbent, where tune finds no knob, and refuses; `check` says so, and why."""
    config = CONFIG + '\n[proposer]\nname = "tune"\n'
    repo = make_repo(tmp_path / "repo", {"target.py": "X = 3.0  # knob: float(0, 10)\n",
                                         "score.py": SCORE_PY, "autoresearch.toml": config})
    assert run_cli(repo, "run", "--tag", "t", "--iterations", "2").returncode == 0
    (repo / "other.py").write_text("Y = 3.0  # knob: float(0, 10)\n")
    edit_config(repo, 'scope = ["target.py"]', 'scope = ["other.py"]')
    git(repo, "add", "other.py")
    git(repo, "commit", "-qam", "the scope moves to a new file")
    run = run_cli(repo, "run", "--tag", "t", "--iterations", "3")
    assert run.returncode != 0 and "found no knobs" in flat(run.stderr)
    check = run_cli(repo, "check")
    said = flat(check.stdout)
    assert check.returncode != 0 and "ready:" not in said, said
    assert "proposer tune cannot work on session t's incumbent" in said
    assert "other.py is in your HEAD but not in session t's incumbent" in said
    assert "`autoresearch run --tag NEW` starts a new session from HEAD that has it" in said
    assert not [w for w in git(repo, "worktree", "list").splitlines() if "incumbent" in w]


def test_check_counts_the_experiments_of_the_session_as_run_does(tmp_path: Path) -> None:
    repo = toy(tmp_path / "repo", CONFIG + TUNE)
    ran = run_cli(repo, "run", "--tag", "t", "--iterations", "3")
    assert ran.returncode == 0 and "3 experiments" in flat(ran.stdout)
    check = flat(run_cli(repo, "check").stdout)
    assert "will resume session t (3 experiment(s) so far, the baseline included;" in check
    resumed = flat(run_cli(repo, "run", "--tag", "t", "--iterations", "4").stdout)
    assert "resuming after 3 experiments" in resumed


def test_a_session_recorded_before_the_interpreter_was_fingerprinted_still_resumes(
        tmp_path: Path) -> None:
    repo = toy(tmp_path / "repo", CONFIG + TUNE)
    assert run_cli(repo, "run", "--tag", "t", "--iterations", "2").returncode == 0
    with sqlite3.connect(repo / ".autoresearch/ledger.db") as conn:
        (key,) = conn.execute("SELECT fingerprint_key FROM sessions").fetchone()
        (recorded,) = conn.execute("SELECT json FROM fingerprints WHERE key = ?", (key,)).fetchone()
        old = json.loads(recorded)
        del old["evaluation"]
        conn.execute("INSERT INTO fingerprints (key, json) VALUES (?, ?)",
                     (comparable_key(old), json.dumps(old)))
        conn.execute("UPDATE sessions SET fingerprint_key = ?", (comparable_key(old),))
    resumed = run_cli(repo, "run", "--tag", "t", "--iterations", "3")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
