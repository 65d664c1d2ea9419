"""The user's checkout and a session across resumes: a fixed evaluation after a failed baseline,
a changed evaluation, the session branch checked out or committed on, a bad tag, a closed
output pipe. Real git repositories and the real CLI."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from autoresearch.errors import ConfigError
from autoresearch.state import validate_tag
from tests.conftest import SCORE_PY, cli_env, git, run_cli, use_script
from tests.support.git_repo import commit_in_linked_worktree

STEPS = [{"hypothesis": f"try {x}", "edits": {"target.py": f"X = {x}\n"}}
         for x in (5.0, 6.0, 6.5, 6.8, 6.9, 6.95, 6.99)]


def sessions(repo: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        return conn.execute("SELECT tag, base_commit FROM sessions").fetchall()


def experiments(repo: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        return conn.execute("SELECT kind, status FROM experiments ORDER BY seq").fetchall()


@pytest.mark.parametrize("tag", ["foo.", "a..b", "x.lock", "-n", ".hidden", "", "a/b", "a b"])
def test_a_tag_git_cannot_name_is_refused_before_anything_is_recorded(toy_repo: Path,
                                                                       tag: str) -> None:
    use_script(toy_repo, STEPS)
    result = run_cli(toy_repo, "run", "--tag", tag, "--iterations", "1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "invalid session tag" in result.stderr and "where: --tag" in result.stderr
    assert not (toy_repo / ".autoresearch" / "ledger.db").exists() or not sessions(toy_repo)


def test_every_tag_the_check_accepts_names_a_git_branch(tmp_path: Path) -> None:
    candidates = ["mar5", "a.b", "a-b_c", "v1.2.3", "a.", "a..", "a.lock", "A", "9", "a-", "a_",
                  "x" * 64, "x.y.lock", "a.-b", "a._b", "dec06.", "r-.1"]
    for tag in candidates:
        try:
            validate_tag(tag)
        except ConfigError:
            continue
        ok = subprocess.run(["git", "check-ref-format", "--branch", f"autoresearch/{tag}"],
                            cwd=tmp_path, capture_output=True).returncode == 0
        assert ok, f"{tag!r} passes validate_tag but git refuses it"


def test_a_session_whose_baseline_failed_starts_again_from_the_fixed_head(toy_repo: Path) -> None:
    use_script(toy_repo, STEPS)
    (toy_repo / "score.py").write_text("print('hello')\n")
    git(toy_repo, "commit", "-qam", "an evaluation that prints no score")
    failed = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "3")
    assert failed.returncode == 5, failed.stdout + failed.stderr
    (old_base,) = [base for _, base in sessions(toy_repo)]

    (toy_repo / "score.py").write_text(SCORE_PY)
    git(toy_repo, "commit", "-qam", "the evaluation fixed")
    head = git(toy_repo, "rev-parse", "HEAD")
    check = run_cli(toy_repo, "check")
    assert "resume session t, whose baseline has not passed yet" in " ".join(check.stdout.split())

    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    said = " ".join(result.stdout.split())
    assert f"the baseline never passed at {old_base[:10]}; starting again" in said
    assert sessions(toy_repo) == [("t", head)]
    kinds = experiments(toy_repo)
    assert kinds[0] == ("baseline", "crash") and ("baseline", "keep") in kinds
    assert git(toy_repo, "rev-parse", "autoresearch/t") != old_base


def test_a_changed_evaluation_is_named_when_the_session_resumes(toy_repo: Path) -> None:
    use_script(toy_repo, STEPS)
    assert run_cli(toy_repo, "run", "--tag", "t", "--iterations", "2").returncode == 0
    (base,) = [b for _, b in sessions(toy_repo)]
    (toy_repo / "score.py").write_text(SCORE_PY.replace("(target.X - 7)", "(target.X - 8)"))
    git(toy_repo, "commit", "-qam", "a different evaluation")
    check = " ".join(run_cli(toy_repo, "check").stdout.split())
    assert "will resume session t (2 experiment(s) so far, the baseline included" in check
    assert "--tag NEW" in check
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    said = " ".join(result.stdout.split())
    assert f"your checkout's score.py differ(s) from the session's base {base[:10]}" in said
    assert sessions(toy_repo) == [("t", base)]  # the session goes on from its own base


@pytest.mark.parametrize(("old", "new", "named"), [
    ('direction = "minimize"', 'direction = "maximize"',
     "[metric] direction: 'minimize' → 'maximize'"),
    ("budget_seconds = 5", "budget_seconds = 7", "[verify] budget_seconds: 5.0 → 7.0"),
    ('command = "{python} score.py"', 'command = "{python} score.py --fast"',
     "[verify] command: '{python} score.py' → '{python} score.py --fast'"),
], ids=["direction", "budget", "command"])
def test_a_resume_refuses_a_config_that_changed_what_the_session_measures(
        toy_repo: Path, old: str, new: str, named: str) -> None:
    # The keeps so far were judged on one measurement; going on with another would compare its
    # runs with theirs (a flipped direction kept every worse value, "improving" on the baseline).
    use_script(toy_repo, STEPS)
    assert run_cli(toy_repo, "run", "--tag", "t", "--iterations", "3").returncode == 0
    before = experiments(toy_repo)
    branch = git(toy_repo, "rev-parse", "autoresearch/t")
    config = toy_repo / "autoresearch.toml"
    text = config.read_text()
    config.write_text(text.replace(old, new))
    git(toy_repo, "commit", "-qam", "what is measured changed")
    check = run_cli(toy_repo, "check")
    assert check.returncode == 1 and "`run` would refuse to resume it" in " ".join(
        check.stdout.split()), check.stdout
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "5")
    assert result.returncode == 3, result.stdout + result.stderr
    said = " ".join(result.stderr.split())
    assert "autoresearch.toml changed what session 't' measures since it last ran" in said, said
    assert named in said and "--tag NEW" in said, said
    assert experiments(toy_repo) == before  # nothing recorded, nothing moved
    assert git(toy_repo, "rev-parse", "autoresearch/t") == branch
    # Set back, the session goes on; a new tag measures with the new settings.
    config.write_text(text)
    git(toy_repo, "commit", "-qam", "set back")
    assert run_cli(toy_repo, "run", "--tag", "t", "--iterations", "4").returncode == 0
    config.write_text(text.replace(old, new))
    git(toy_repo, "commit", "-qam", "again")
    fresh = run_cli(toy_repo, "run", "--tag", "u", "--iterations", "2")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr


def test_other_changed_settings_take_effect_on_resume_and_are_named(toy_repo: Path) -> None:
    use_script(toy_repo, STEPS)
    assert run_cli(toy_repo, "run", "--tag", "t", "--iterations", "2").returncode == 0
    config = toy_repo / "autoresearch.toml"
    config.write_text(config.read_text().replace("repeats = 2", "repeats = 3").replace(
        "timeout_seconds = 8", "timeout_seconds = 9"))
    git(toy_repo, "commit", "-qam", "the verdict's settings")
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    said = " ".join(result.stdout.split())
    assert ("autoresearch.toml changed since this session last ran: [decision] repeats, "
            "[verify] timeout_seconds; in effect from now on") in said, said
    assert "differ(s) from the session's base" not in said  # not "its own copy": it is read anew
    again = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "4")
    assert "changed since this session last ran" not in again.stdout  # said once


def test_a_session_that_measured_nothing_takes_the_new_measurement(toy_repo: Path) -> None:
    # The baseline never passed (the metric's name was wrong): the fix is a config change.
    use_script(toy_repo, STEPS)
    config = toy_repo / "autoresearch.toml"
    right = config.read_text()
    config.write_text(right.replace('name = "score"', 'name = "scor"'))
    git(toy_repo, "commit", "-qam", "a misspelt metric")
    assert run_cli(toy_repo, "run", "--tag", "t", "--iterations", "3").returncode != 0
    config.write_text(right)
    git(toy_repo, "commit", "-qam", "the metric's name fixed")
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[metric] name: 'scor' → 'score'" in " ".join(result.stdout.split())
    with sqlite3.connect(toy_repo / ".autoresearch" / "ledger.db") as conn:
        assert conn.execute("SELECT metric FROM sessions").fetchall() == [("score",)]


def test_the_session_branch_checked_out_is_refused(toy_repo: Path) -> None:
    use_script(toy_repo, STEPS)
    assert run_cli(toy_repo, "run", "--tag", "t", "--iterations", "2").returncode == 0
    git(toy_repo, "checkout", "-q", "autoresearch/t")
    before = git(toy_repo, "rev-parse", "autoresearch/t")
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "4")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "your checkout is on the session branch autoresearch/t" in " ".join(
        result.stderr.split())
    assert "git switch -" in result.stderr
    assert git(toy_repo, "rev-parse", "autoresearch/t") == before
    assert git(toy_repo, "status", "--porcelain") == ""


def test_the_session_branch_checked_out_in_a_linked_worktree_is_refused(toy_repo: Path,
                                                                       tmp_path: Path) -> None:
    use_script(toy_repo, STEPS)
    assert run_cli(toy_repo, "run", "--tag", "t", "--iterations", "2").returncode == 0
    linked = tmp_path / "linked"
    mine = commit_in_linked_worktree(toy_repo, linked, "autoresearch/t")
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "4")
    said = " ".join(result.stderr.split())
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"the worktree {linked} is on the session branch autoresearch/t" in said
    assert f"where: {linked}" in said and f"git worktree remove {linked}" in said
    # Nothing moved under it: the branch, its files and the commit made there are as they were.
    assert git(toy_repo, "rev-parse", "autoresearch/t") == mine
    assert git(linked, "status", "--porcelain") == ""


def test_a_ledger_whose_commits_this_repository_lacks_is_refused(toy_repo: Path,
                                                                 tmp_path: Path) -> None:
    use_script(toy_repo, STEPS)
    assert run_cli(toy_repo, "run", "--tag", "t", "--iterations", "2").returncode == 0
    with sqlite3.connect(toy_repo / ".autoresearch" / "ledger.db") as conn:
        (base,) = conn.execute("SELECT base_commit FROM sessions").fetchone()
        (incumbent,) = conn.execute(
            "SELECT commit_sha FROM experiments WHERE seq = 2 AND status = 'keep'").fetchone()
    # Another repository with the same files (other commits) given this one's ledger.
    other = tmp_path / "other"
    shutil.copytree(toy_repo, other, ignore=shutil.ignore_patterns(".git", ".autoresearch"))
    git(other, "init", "-q", "-b", "main")
    git(other, "add", "-A")
    git(other, "commit", "-qm", "another history")
    (other / ".autoresearch").mkdir()
    shutil.copyfile(toy_repo / ".autoresearch" / "ledger.db", other / ".autoresearch" / "ledger.db")
    result = run_cli(other, "run", "--tag", "t", "--iterations", "3")
    said = " ".join(result.stderr.split())
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"session t's base commit {base} is not in this repository" in said
    assert f"where: {other}" in said and "--tag NEW" in said and "Traceback" not in said
    # Here: the kept commit deleted with its branch and its slot, and garbage-collected.
    git(toy_repo, "worktree", "remove", "--force", ".autoresearch/worktrees/t")
    git(toy_repo, "branch", "-D", "autoresearch/t")
    git(toy_repo, "reflog", "expire", "--expire=now", "--all")
    git(toy_repo, "gc", "-q", "--prune=now")
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "3")
    said = " ".join(result.stderr.split())
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"session t's incumbent commit {incumbent} is not in this repository" in said
    assert not git(toy_repo, "branch", "--list", "autoresearch/t")


def test_commits_made_on_the_session_branch_are_saved_before_it_is_reset(toy_repo: Path) -> None:
    use_script(toy_repo, STEPS)
    assert run_cli(toy_repo, "run", "--tag", "t", "--iterations", "2").returncode == 0
    incumbent = git(toy_repo, "rev-parse", "autoresearch/t")
    git(toy_repo, "checkout", "-q", "autoresearch/t")
    (toy_repo / "notes.txt").write_text("mine\n")
    git(toy_repo, "add", "notes.txt")
    git(toy_repo, "commit", "-qm", "a commit of mine on the session branch")
    mine = git(toy_repo, "rev-parse", "HEAD")
    git(toy_repo, "checkout", "-q", "-")
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    ref = f"refs/autoresearch/t/saved/{mine[:12]}"
    assert git(toy_repo, "rev-parse", ref) == mine
    assert f"saved as {ref}" in " ".join(result.stdout.split())
    assert git(toy_repo, "merge-base", "--is-ancestor", incumbent, "autoresearch/t") == ""


def test_a_closed_output_pipe_stops_the_session_cleanly(toy_repo: Path) -> None:
    slow = [{**s, "edits": {"target.py": s["edits"]["target.py"] + "SLEEP = 0.3\n"}}  # type: ignore[index]
            for s in STEPS]
    use_script(toy_repo, slow)
    proc = subprocess.Popen(
        [sys.executable, "-m", "autoresearch", "run", "--repo", str(toy_repo), "--tag", "t",
         "--iterations", "8"],
        cwd=toy_repo, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()  # `run | head -1`: one line read, then the pipe closed
    proc.stdout.close()
    try:
        code = proc.wait(timeout=120)
    finally:
        proc.kill()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert code == 130, err
    assert "SIGPIPE: the output was closed" in " ".join(err.split())
    assert "Traceback" not in err and "BrokenPipeError" not in err
    with sqlite3.connect(toy_repo / ".autoresearch" / "ledger.db") as conn:
        assert conn.execute("SELECT status FROM sessions").fetchall() == [("stopped",)]
        open_ = conn.execute("SELECT id FROM experiments WHERE status IN ('proposed', 'running')")
        assert open_.fetchall() == []
    resumed = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "8")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    counted = [s for _, s in experiments(toy_repo) if s != "interrupted"]
    assert len(counted) == 8


def test_a_limit_already_reached_says_how_to_go_on(toy_repo: Path) -> None:
    use_script(toy_repo, STEPS)
    assert run_cli(toy_repo, "run", "--tag", "t", "--iterations", "2").returncode == 0
    again = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "2")
    assert again.returncode == 0
    said = " ".join(again.stdout.split())
    assert "reached 2 experiments, before this run started" in said and "-n 4 runs 2 more" in said


def test_a_child_that_stops_reading_its_stdin_does_not_stop_the_session() -> None:
    # Only stdout's reader going away stops a session: the harness writes to other pipes (git's
    # stdin, an agent's prompt), and a reader that exits early there is that call's own error.
    from autoresearch.stop_signals import stop_signals_as_interrupt

    with stop_signals_as_interrupt():
        child = subprocess.Popen([sys.executable, "-c", "pass"], stdin=subprocess.PIPE)
        child.wait()
        assert child.stdin is not None
        with pytest.raises(BrokenPipeError):
            os.write(child.stdin.fileno(), b"x" * 65536)
        with contextlib.suppress(OSError):
            child.stdin.close()
        for _ in range(1000):  # time for a stray stop to be delivered, were one sent
            sum(range(100))
