"""What `check` (and the start of `run`) says about a config that runs but cannot work as meant:
every problem it counts is a ✗ line naming its field, and its advice can be followed."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

from tests.conftest import CONFIG, SCORE_PY, git, make_repo, run_cli

TUNE = '\n[proposer]\nname = "tune"\n\n[knobs]\n"target.py:X" = "float(0, 10)"\n'


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def repo_with(tmp_path: Path, config: str, files: dict[str, str] | None = None) -> Path:
    return make_repo(tmp_path / "repo", {"target.py": "X = 3.0\n", "score.py": SCORE_PY,
                                         "autoresearch.toml": config, **(files or {})})


def crosses_match_the_count(result: subprocess.CompletedProcess[str]) -> int:
    """The number of ✗ lines, checked against the "N problem(s) found" summary."""
    crosses = result.stdout.count("✗")
    assert f"{crosses} problem(s) found" in result.stdout, result.stdout
    return crosses


def experiments(repo: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        return conn.execute("SELECT kind, status FROM experiments ORDER BY id").fetchall()


# --- finding 4: a guard on a metric the command never prints ---------------------------------


def test_a_guard_on_a_metric_never_printed_is_named_and_stops_run_after_the_baseline(
        tmp_path: Path) -> None:
    guard = '\n[[guards]]\nmetric = "memory"\nmax = 10\n'
    repo = repo_with(tmp_path, CONFIG + guard + TUNE)
    check = run_cli(repo, "check")
    assert check.returncode == 1, check.stdout + check.stderr
    out = flat(check.stdout)
    assert "✗ guards[0]: metric 'memory' is not in the output — print it, or fix the name" in out
    assert "where: autoresearch.toml → guards[0]" in out
    assert crosses_match_the_count(check) == 1

    # `run` stops after the baseline instead of discarding every improvement all night.
    run = run_cli(repo, "run", "--iterations", "6")
    assert run.returncode == 5, run.stdout + run.stderr
    said = flat(run.stdout + run.stderr)
    assert "guards[0]: metric 'memory' is not in the output of the unchanged code" in said
    assert "fix the guard's name in autoresearch.toml" in said
    assert experiments(repo) == [("baseline", "crash")]  # no candidate was run

    # Fixed, the same command resumes the session: the baseline passes and candidates run.
    config = (repo / "autoresearch.toml").read_text().replace('"memory"', '"mem_mb"')
    (repo / "autoresearch.toml").write_text(config.replace("max = 10", "max = 1000"))
    git(repo, "commit", "-qam", "guard the metric score.py prints")
    again = run_cli(repo, "run", "--iterations", "4")
    assert again.returncode == 0, again.stdout + again.stderr
    rows = experiments(repo)
    assert rows[:2] == [("baseline", "crash"), ("baseline", "keep")]
    assert any(status == "keep" for kind, status in rows if kind == "candidate"), rows


# --- finding 10: the count of problems matches the ✗ lines -----------------------------------


def test_a_nan_objective_is_one_problem(tmp_path: Path) -> None:
    # score.py prints only `score: nan` here: no mem_mb to record either, so no record list.
    config = CONFIG.replace('record = ["mem_mb"]\n', "") + TUNE
    repo = repo_with(tmp_path, config, {"target.py": "X = 3.0\nNAN = True\n"})
    check = run_cli(repo, "check")
    assert check.returncode == 1, check.stdout + check.stderr
    assert "score is nan" in check.stdout
    assert crosses_match_the_count(check) == 1


def test_check_in_a_repository_without_a_commit_counts_its_problems(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "autoresearch.toml").write_text(CONFIG + TUNE)
    (repo / "target.py").write_text("X = 3.0\n")
    check = run_cli(repo, "check")
    assert check.returncode == 1, check.stdout + check.stderr
    assert "the repository has no commit yet" in check.stdout
    assert crosses_match_the_count(check) >= 1


# --- finding 6: a protected glob that matches no file ----------------------------------------


def test_a_protected_glob_matching_no_file_is_a_warning_with_the_nearest_name(
        tmp_path: Path) -> None:
    config = CONFIG.replace('protected = ["score.py"]', 'protected = ["scor.py", "out/*.json"]')
    repo = repo_with(tmp_path, config + TUNE)
    check = run_cli(repo, "check")
    # A warning, not an error: a glob may name a file created later (out/*.json here).
    assert check.returncode == 0, check.stdout + check.stderr
    out = flat(check.stdout)
    assert ("! protected 'scor.py' matches no committed file, so it protects nothing yet "
            "(did you mean 'score.py'?) where: autoresearch.toml → protected[0]") in out
    assert "fix: write 'score.py' if that is the file to guard" in out
    assert "! protected 'out/*.json' matches no committed file" in out
    assert "where: autoresearch.toml → protected[1]" in out
    assert "ready:" in out
    run = run_cli(repo, "run", "--iterations", "2")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "protected 'scor.py' matches no committed file" in flat(run.stdout)
    # A glob that does match (a directory, a case-folded spelling) is not warned about.
    fine = CONFIG.replace('protected = ["score.py"]', 'protected = ["Score.py", "lib"]')
    (repo / "autoresearch.toml").write_text(fine + TUNE)
    (repo / "lib").mkdir()
    (repo / "lib" / "data.txt").write_text("d\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "protect a directory")
    again = run_cli(repo, "check")
    assert again.returncode == 0 and "matches no committed file" not in again.stdout
