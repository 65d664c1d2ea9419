"""Bad input gets a clear error (what, where, how to fix) and a non-zero exit; init and check."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.conftest import CONFIG, SCORE_PY, git, make_repo, run_cli


def broken(tmp_path: Path, config: str) -> Path:
    return make_repo(tmp_path / "repo", {"target.py": "X = 3.0\n", "score.py": SCORE_PY,
                                         "autoresearch.toml": config})


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (CONFIG.replace('direction = "minimize"', 'direction = "down"'), "metric.direction"),
        (CONFIG + "\n[decison]\nrepeats = 3\n", "decison"),
        (CONFIG.replace("budget_seconds = 5", "budget_seconds = -1"), "verify.budget_seconds"),
        (CONFIG.replace("scope = [\"target.py\"]", "scope = []"), "scope"),
        (CONFIG + '\n[[guards]]\nmetric = "mem_mb"\n', "has no bound"),
        (CONFIG + '\n[knobs]\n"target.py:X" = "log(0, 1)"\n', "knob"),
        (CONFIG.replace('name = "score"', 'name = "score"\nformat = "regex"'), "pattern"),
        (CONFIG.replace("[verify]", "[verify\n"), "not valid TOML"),
    ],
)
def test_invalid_config_is_refused_with_where_and_fix(tmp_path: Path, config: str,
                                                      expected: str) -> None:
    repo = broken(tmp_path, config)
    result = run_cli(repo, "run", "--iterations", "1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr
    assert "where:" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (repo / ".autoresearch" / "ledger.db").exists()


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    repo = broken(tmp_path, CONFIG.replace("[verify]", "[verify\n"))
    result = run_cli(repo, "check")
    assert result.returncode == 2
    assert "line" in result.stderr


def test_protected_file_inside_scope_is_refused(tmp_path: Path) -> None:
    repo = broken(tmp_path, CONFIG.replace('scope = ["target.py"]', 'scope = ["*.py"]'))
    result = run_cli(repo, "run", "--iterations", "1")
    assert result.returncode == 3
    assert "protected files are inside the scope: score.py" in result.stderr


def test_preconditions(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "autoresearch.toml").write_text(CONFIG)
    result = run_cli(plain, "run")
    assert result.returncode == 3 and "not inside a git repository" in result.stderr

    repo = broken(tmp_path, CONFIG)
    (repo / "target.py").write_text("X = 4.0\n")
    result = run_cli(repo, "run")
    assert result.returncode == 3 and "uncommitted changes" in result.stderr
    assert "git stash" in result.stderr
    git(repo, "checkout", "-q", "target.py")

    git(repo, "checkout", "-q", "--detach")
    result = run_cli(repo, "run")
    assert result.returncode == 3 and "detached" in result.stderr
    git(repo, "checkout", "-q", "main")

    (repo / "autoresearch.toml").write_text(CONFIG.replace('["target.py"]', '["nothing/*.py"]'))
    git(repo, "commit", "-qam", "bad scope")
    result = run_cli(repo, "run")
    assert result.returncode == 3 and "matches no committed file" in result.stderr


def test_missing_config_points_to_init(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    result = run_cli(repo, "run")
    assert result.returncode == 2
    assert "autoresearch init" in result.stderr


def test_init_without_a_tty_uses_flags_and_check_dry_runs(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"target.py": "X = 3.0\n", "score.py": SCORE_PY})
    result = run_cli(repo, "init", "--metric", "score", "--command", "{python} score.py",
                     "--scope", "target.py", "--protected", "score.py", "--budget", "5",
                     "--commit")
    assert result.returncode == 0, result.stderr
    config = (repo / "autoresearch.toml").read_text()
    assert 'name = "score"' in config and 'scope = ["target.py"]' in config
    assert "Improve `score`" in (repo / "program.md").read_text()
    assert git(repo, "status", "--porcelain") == ""
    again = run_cli(repo, "init")
    assert again.returncode == 2 and "--force" in again.stderr

    check = run_cli(repo, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "score" in check.stdout and "16" in check.stdout
    assert "ready" in check.stdout


def test_check_reports_a_missing_metric(tmp_path: Path) -> None:
    repo = broken(tmp_path, CONFIG.replace('name = "score"', 'name = "loss"'))
    result = run_cli(repo, "check")
    assert result.returncode == 1
    assert "no loss in the output" in result.stdout
    assert "loss: " in result.stdout  # shows the expected format


def test_status_and_results_without_a_session(tmp_path: Path) -> None:
    repo = broken(tmp_path, CONFIG)
    result = run_cli(repo, "status")
    assert result.returncode == 1
    assert "autoresearch run" in result.stderr


def test_status_after_a_session(toy_repo: Path) -> None:
    config = (toy_repo / "autoresearch.toml").read_text() + textwrap.dedent(
        """
        [proposer]
        name = "tune"
        [knobs]
        "target.py:X" = "float(0, 10)"
        """
    )
    (toy_repo / "autoresearch.toml").write_text(config)
    git(toy_repo, "commit", "-qam", "tune")
    result = run_cli(toy_repo, "run", "--iterations", "4", "--tag", "s1")
    assert result.returncode == 0, result.stdout + result.stderr
    status = run_cli(toy_repo, "status")
    assert status.returncode == 0
    assert "s1" in status.stdout and "baseline" in status.stdout
    assert "experiments" in status.stdout


def test_until_stops_before_an_experiment_that_would_overrun(toy_repo: Path) -> None:
    from tests.conftest import use_script

    use_script(toy_repo, [{"hypothesis": f"x{i}", "edits": {"target.py": f"X = {i}\nSLEEP = 1\n"}}
                          for i in range(20)])
    result = run_cli(toy_repo, "run", "--tag", "t", "--until", "4s")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "time limit" in result.stdout
    bad = run_cli(toy_repo, "run", "--tag", "t", "--until", "soon")
    assert bad.returncode == 1 and "8h, 90m" in bad.stderr
