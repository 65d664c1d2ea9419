"""What `finalize` refuses, and what it then says: a branch it would move under someone's work,
a session branch that was deleted or reset although the ledger has kept experiments, and a
--prefix that makes no branch name of finalize's own."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.views.conftest import autoresearch, copy_repo
from tests.views.ledger_factory import build_session, git


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_force_never_moves_a_branch_checked_out_in_a_worktree(tmp_path: Path) -> None:
    built = build_session(tmp_path / "repo")
    repo = built.repo
    assert autoresearch(repo, "finalize").returncode == 0
    branch = git(repo, "for-each-ref", "--format=%(refname:short)",
                 "refs/heads/autoresearch-final/").splitlines()[0]
    # The user reviews that branch in a worktree of their own and commits a fix on it.
    review = tmp_path / "review"
    git(repo, "worktree", "add", "-q", str(review), branch)
    (review / "NOTES.md").write_text("reviewed\n")
    git(review, "add", "NOTES.md")
    git(review, "commit", "-qm", "my review notes")
    mine = git(review, "rev-parse", "HEAD")

    # Without --force: the clash names the commit finalize did not make.
    proc = autoresearch(repo, "finalize")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    err = _flat(proc.stderr)
    assert f"{branch} has 1 commit(s) finalize did not make" in err, err
    assert f"{mine[:7]}" in err and "my review notes" in err
    assert "git log " in err

    # With --force: refused, naming the worktree; the branch and the user's commit stay.
    proc = autoresearch(repo, "finalize", "--force")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    err = _flat(proc.stderr)
    assert "checked out in a worktree" in err and f"{branch} (in {review})" in err, err
    assert "Traceback" not in proc.stderr
    assert git(repo, "rev-parse", branch) == mine
    assert git(review, "status", "--porcelain") == ""

    # Doing what it says lets --force go ahead; the commit is still in the worktree's HEAD.
    command = re.search(r"`(git -C [^`]+ switch --detach)`", err)
    assert command, err
    git(repo, *shlex.split(command.group(1))[1:])
    proc = autoresearch(repo, "finalize", "--force")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert git(repo, "rev-parse", branch) != mine and git(review, "rev-parse", "HEAD") == mine


def test_a_deleted_or_reset_session_branch_with_keeps_gets_the_restore_command(
        real_repo: Path, tmp_path: Path) -> None:
    repo = copy_repo(real_repo, tmp_path / "copy")
    tip = git(repo, "rev-parse", "autoresearch/t")
    for damage in (["branch", "-D", "autoresearch/t"],
                   ["branch", "-f", "autoresearch/t", git(repo, "rev-parse", "main")]):
        git(repo, *damage)
        proc = autoresearch(repo, "finalize")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        err = _flat(proc.stderr)
        assert "nothing to finalize" not in err and "Traceback" not in err
        assert re.search(r"the ledger records \d+ kept experiment\(s\)", err), err
        command = re.search(r"`(git branch (?:-f )?autoresearch/t [0-9a-f]+)`", err)
        assert command, err
        git(repo, *shlex.split(command.group(1))[1:])  # the fix, as printed
        assert git(repo, "rev-parse", "autoresearch/t") == tip
        assert autoresearch(repo, "finalize").returncode == 0


@pytest.mark.parametrize(("prefix", "why"), [
    ("", "--prefix '' is empty: finalize's branches would be mixed with every other branch"),
    ("refs/heads/", "a branch named refs/heads/01-… (the ref refs/heads/refs/heads/01-…) would "
                    "be ambiguous with the ref refs/heads/01-…"),
    ("tags/{tag}/", "--prefix 'tags/{tag}/' (for this session: 'tags/demo/') starts with tags/"),
    ("HEAD", "makes names such as HEAD01-…, which read as git's own HEAD"),
    ("ORIG_HEAD/", "makes names such as ORIG_HEAD/01-…, which read as git's own HEAD"),
], ids=["empty", "refs", "tags", "HEAD", "ORIG_HEAD"])
def test_a_prefix_that_makes_no_branch_of_finalizes_own_is_a_bad_option(
        tmp_path: Path, prefix: str, why: str) -> None:
    """An empty prefix (every branch of the repository would be under it), one in git's own ref
    namespaces or one that reads as HEAD is refused as a bad option (exit 2), saying why, where
    and what to give instead, before any branch is written; the default and the fix work."""
    repo = build_session(tmp_path / "repo").repo
    git(repo, "branch", "review/my-colleagues-pr", "main")
    before = git(repo, "for-each-ref")
    proc = autoresearch(repo, "finalize", "--prefix", prefix)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = _flat(proc.stderr)
    assert why in err and "where: --prefix" in err, err
    assert "fix: give a prefix of its own that ends with '/', e.g. --prefix review/" in err, err
    assert "Traceback" not in err and "git branch -D" not in proc.stdout + err
    assert git(repo, "for-each-ref") == before
    for fixed in (["--prefix", "review/"], []):
        proc = autoresearch(repo, "finalize", *fixed)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "earlier finalize" not in _flat(proc.stdout), proc.stdout
    assert git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/").split() == [
        "autoresearch-final/demo/01-raise-learning-rate+cosine-learning-rate",
        "autoresearch-final/demo/02-shuffle-data-every+dropout-0-1-larger",
        "autoresearch-final/demo/03-document-the-defaults", "autoresearch/demo", "main",
        "review/01-raise-learning-rate+cosine-learning-rate",
        "review/02-shuffle-data-every+dropout-0-1-larger", "review/03-document-the-defaults",
        "review/my-colleagues-pr"]
