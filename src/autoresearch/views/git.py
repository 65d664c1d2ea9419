"""The few git calls the views need, through the `git` binary (no library, no shell).

Commit ids reach these functions from the ledger and from HTTP paths; they are checked against a
strict pattern first so that nothing user-controlled can ever be read by git as an option.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from autoresearch.errors import AutoresearchError

_SHA = re.compile(r"^[0-9a-f]{7,64}$")


class GitError(AutoresearchError):
    """A git command failed."""


def is_sha(value: str | None) -> bool:
    return bool(value) and _SHA.match(value or "") is not None


def git(
    repo: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
    check: bool = True,
) -> str:
    """Run git in `repo` and return stdout; raise GitError with git's own message on failure."""
    full_env = dict(os.environ)
    # A pager or a colour escape would end up in the output we parse or show.
    full_env.update({"GIT_PAGER": "cat", "PAGER": "cat", "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"})
    if env:
        full_env.update(env)
    proc = subprocess.run(
        ["git", "-C", str(repo), *args],
        input=input_text,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=full_env,
        check=False,
    )
    if check and proc.returncode != 0:
        raise GitError(
            f"git {' '.join(args[:3])} failed: {proc.stderr.strip() or proc.stdout.strip()}",
            where=str(repo),
        )
    return proc.stdout


def common_root(path: Path) -> Path:
    """The main working tree of the repository containing `path` (also from inside a worktree).

    Session worktrees live under `.autoresearch/worktrees/`, but the ledger is in the main
    repository, so `--show-toplevel` alone would point at the wrong place.
    """
    try:
        common = git(path, "rev-parse", "--path-format=absolute", "--git-common-dir").strip()
    except (GitError, OSError):
        return path.resolve()
    common_path = Path(common)
    return common_path.parent if common_path.name == ".git" else path.resolve()


def commit_exists(repo: Path, sha: str) -> bool:
    if not is_sha(sha):
        return False
    out = git(repo, "cat-file", "-t", sha, check=False).strip()
    return out == "commit"


def show_commit(repo: Path, sha: str, *, max_chars: int = 400_000) -> str:
    """The commit's message, stat and patch, cut (with a note) when it is very large."""
    if not is_sha(sha):
        raise GitError(f"not a commit id: {sha!r}")
    text = git(repo, "show", "--no-color", "--no-ext-diff", "--stat", "--patch",
               "--format=commit %H%nAuthor: %an <%ae>%nDate:   %ad%n%n%w(0,4,4)%B", sha)
    if len(text) > max_chars:
        text = text[:max_chars] + f"\n… diff cut at {max_chars} characters (git show {sha})\n"
    return text


def changed_files(repo: Path, sha: str) -> list[str]:
    """Paths a commit changes relative to its first parent; renames count as delete + add."""
    out = git(repo, "diff-tree", "--no-commit-id", "--name-only", "--no-renames", "-r", "-z",
              "--root", sha)
    return [p for p in out.split("\0") if p]


def diff_names(repo: Path, a: str, b: str) -> list[str]:
    out = git(repo, "diff", "--name-only", "--no-renames", "-z", a, b, "--")
    return [p for p in out.split("\0") if p]


def rev_list(repo: Path, spec: Sequence[str]) -> list[str]:
    return git(repo, "rev-list", *spec).split()


def tree_of(repo: Path, rev: str) -> str:
    return git(repo, "rev-parse", "--verify", f"{rev}^{{tree}}").strip()


def patch_of(repo: Path, sha: str, *, max_chars: int = 200_000) -> str:
    """The change a commit makes (stat + patch, no message), cut when it is very large."""
    if not is_sha(sha):
        raise GitError(f"not a commit id: {sha!r}")
    text = git(repo, "show", "--no-color", "--no-ext-diff", "--format=", "--stat", "--patch", sha)
    text = text.lstrip("\n")
    if len(text) > max_chars:
        text = text[:max_chars] + f"\n… diff cut at {max_chars} characters (git show {sha})\n"
    return text


def is_ancestor(repo: Path, ancestor: str, descendant: str) -> bool:
    proc = subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", ancestor,
                           descendant], capture_output=True, check=False)
    return proc.returncode == 0
