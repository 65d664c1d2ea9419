"""`finalize`'s branch names and commit messages, end to end through the CLI."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import git, run_cli, use_script
from tests.views.test_finalize_verify import two_file_repo


def test_a_change_proposed_without_a_hypothesis_is_named_for_its_files(tmp_path: Path) -> None:
    """A blank or whitespace hypothesis (kept, and discarded) neither crashes finalize nor names
    a branch "experiment": the branch and its commit say which files it changes."""
    repo = two_file_repo(tmp_path)
    use_script(repo, [{"hypothesis": "raise A to 1", "edits": {"a.py": "A = 1.0\n"}},
                      {"hypothesis": " \n ", "edits": {"b.py": "B = 0.5\n"}},
                      {"hypothesis": "", "edits": {"b.py": "B = -3.0\n"}}])
    session = run_cli(repo, "run", "--tag", "t", "-n", "4")
    assert session.returncode == 0, session.stdout + session.stderr
    proc = run_cli(repo, "finalize", "--tag", "t")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    branches = git(repo, "for-each-ref", "--format=%(refname:short)",
                   "refs/heads/autoresearch-final/").split()
    assert branches == ["autoresearch-final/t/01-raise-a-to-1",
                        "autoresearch-final/t/02-change-b-py"], branches
    message = git(repo, "log", "-1", "--format=%B", branches[1])
    assert message.startswith("change b.py\n\n") and "Experiment-Id: t-0003" in message, message


def test_a_knob_named_a_stays_in_the_branch_name_and_a_name_in_the_way_writes_no_branch(
        tmp_path: Path) -> None:
    """"raise A to 1" names the knob A: it is not dropped as the article "a". A new branch name
    git cannot have beside an existing branch (one under it, or it under one) is refused before
    any branch is written, naming that branch and --prefix; another prefix then works."""
    repo = two_file_repo(tmp_path)
    use_script(repo, [{"hypothesis": "raise A to 1", "edits": {"a.py": "A = 1.0\n"}},
                      {"hypothesis": "raise B to 0.5", "edits": {"b.py": "B = 0.5\n"}},
                      {"hypothesis": "raise A to 2", "edits": {"a.py": "A = 2.0\n"}}])
    session = run_cli(repo, "run", "--tag", "t", "-n", "4")
    assert session.returncode == 0, session.stdout + session.stderr
    git(repo, "branch", "x/02-raise-b-to-0-5/sub", "main")
    git(repo, "branch", "y", "main")
    before = git(repo, "for-each-ref")
    for prefix, other in (("x/", "x/02-raise-b-to-0-5/sub"), ("y/", "y")):
        proc = run_cli(repo, "finalize", "--tag", "t", "--prefix", prefix)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        said = " ".join(proc.stderr.split())
        assert f"beside the existing branch {other}" in said and "--prefix" in said, said
        assert "no branch was written" in said and "Traceback" not in said
        assert git(repo, "for-each-ref") == before
    proc = run_cli(repo, "finalize", "--tag", "t", "--prefix", "z/")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/z/").split() == [
        "z/01-raise-a-1+raise-a-2", "z/02-raise-b-to-0-5"]
