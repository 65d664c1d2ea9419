"""`finalize`'s branch names and commit messages, end to end through the CLI."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.conftest import git, run_cli, use_script
from tests.views.conftest import autoresearch
from tests.views.ledger_factory import Planned, add_experiment, build_session
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


def test_a_branch_is_named_for_the_values_it_sets_not_those_it_replaced(tmp_path: Path) -> None:
    # tune's titles say "NAME old → new": "DEPTH 3 → 4" named its branch "…-depth-3", which
    # reads as the value the change had removed.
    repo = two_file_repo(tmp_path)
    use_script(repo, [
        {"hypothesis": "tune: A 0.0 → 1.0", "edits": {"a.py": "A = 1.0\n"}},
        {"hypothesis": "tune: B 0.0 -> 0.5, A 1.0 → 1.0", "edits": {"b.py": "B = 0.5\n"}}])
    session = run_cli(repo, "run", "--tag", "t", "-n", "3")
    assert session.returncode == 0, session.stdout + session.stderr
    proc = run_cli(repo, "finalize", "--tag", "t")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert git(repo, "for-each-ref", "--format=%(refname:short)",
               "refs/heads/autoresearch-final/").split() == [
        "autoresearch-final/t/01-a-1.0", "autoresearch-final/t/02-b-0.5"]


def _said(proc: subprocess.CompletedProcess[str]) -> str:
    return " ".join((proc.stdout + proc.stderr).split())


def test_only_branches_an_earlier_finalize_of_the_session_wrote_are_offered_for_deletion(
        tmp_path: Path) -> None:
    """A branch under the prefix is named as an earlier finalize's, with `git branch -D`, only
    when finalize wrote it for this session: a colleague's branch, one of finalize's shape with
    a commit of its own, another session's finalize branch (its commits replay commits that are
    not this session's), a copy of finalize's branch with a review fix on it and one under a
    name of the user's are never named; a stale branch that is checked out is named without the
    command (git would refuse it)."""
    built = build_session(tmp_path / "repo")
    repo = built.repo
    git(repo, "branch", "review/my-colleagues-pr", "main")
    git(repo, "switch", "-q", "-c", "review/04-colleagues-fix", "main")
    (repo / "data.py").write_text("SHUFFLE = False\nBATCH = 16\n")
    git(repo, "commit", "-qam", "smaller batch")
    colleague = git(repo, "rev-parse", "HEAD")
    git(repo, "switch", "-q", "-c", "review/05-other-session", "main")
    (repo / "model.py").write_text("HIDDEN = 256\n")
    git(repo, "commit", "-qam", f"wider model\n\nAutoresearch-Source: {colleague}")
    git(repo, "switch", "-q", "main")
    others = ["review/04-colleagues-fix", "review/05-other-session", "review/my-colleagues-pr"]

    first = autoresearch(repo, "finalize", "--prefix", "review/")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "earlier finalize" not in _said(first) and "git branch -D" not in _said(first)
    old = "review/01-raise-learning-rate+cosine-learning-rate"
    # A reviewer's fix on a copy of finalize's branch: the copy is theirs now.
    git(repo, "switch", "-q", "-c", "review/01-reviewed-learning-rate", old)
    (repo / "NOTES.md").write_text("reviewed\n")
    git(repo, "add", "NOTES.md")
    git(repo, "commit", "-qm", "my review notes")
    git(repo, "switch", "-q", "main")
    # The same branch under a name of the user's (to open a pull request from): theirs too.
    git(repo, "branch", "review/pr-learning-rate", old)
    others += ["review/01-reviewed-learning-rate", "review/pr-learning-rate"]
    tips = {b: git(repo, "rev-parse", b) for b in others}

    # The session keeps one more change of train.py: its group's branch gets another name.
    git(repo, "worktree", "add", "-q", str(built.worktree), built.session.branch)
    train = (built.worktree / "train.py").read_text()
    add_experiment(built, Planned("warm up the learning rate", "keep", [8.70, 8.72, 8.71],
                                  {"train.py": train + "WARMUP = 100\n"}))
    second = autoresearch(repo, "finalize", "--prefix", "review/")
    assert second.returncode == 0, second.stdout + second.stderr
    said = _said(second)
    assert "1 branch(es) under review/ are from an earlier finalize of session demo" in said, said
    command = re.search(r"git branch -D ((?:\S+/\S+ ?)+)", said)  # the words with a '/' after it
    assert command and command.group(1).split() == [old], said
    assert not any(b in said for b in others), said
    git(repo, "branch", "-D", *command.group(1).split())  # as printed
    assert {b: git(repo, "rev-parse", b) for b in others} == tips

    # A stale branch checked out (here, in the repository itself) is named, but not for -D.
    git(repo, "worktree", "add", "-q", str(built.worktree), built.session.branch)
    readme = (built.worktree / "README.md").read_text()
    add_experiment(built, Planned("document the warmup", "keep", [8.69, 8.70, 8.71],
                                  {"README.md": readme + "Warmup: 100 steps.\n"}))
    git(repo, "switch", "-q", "review/03-document-the-defaults")
    third = autoresearch(repo, "finalize", "--prefix", "review/")
    assert third.returncode == 0, third.stdout + third.stderr
    said = _said(third)
    assert "git branch -D" not in said, said
    assert ("are from an earlier finalize of session demo and no longer match it, but are "
            "checked out: review/03-document-the-defaults (in ") in said, said
    assert not any(b in said for b in others), said
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "review/03-document-the-defaults"
