"""What `finalize` refuses, and what it then says: a branch it would move under someone's work,
and a session branch that was deleted or reset although the ledger has kept experiments."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

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
