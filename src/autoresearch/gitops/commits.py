"""Making commits: a candidate's change committed on a slot's detached HEAD, or replayed onto a
newer incumbent, and described (files, lines added and removed) for the ledger."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from autoresearch.gitops import checkout
from autoresearch.gitops.line_replay import replay_lines, write_replayed
from autoresearch.gitops.runner import git, run_git

_IDENTITY = ("-c", "user.name=autoresearch", "-c", "user.email=autoresearch@localhost")


@lru_cache(maxsize=64)
def _has_identity(cwd: str) -> bool:
    return bool(git(Path(cwd), "config", "user.email", check=False))


def identity_args(cwd: Path) -> tuple[str, ...]:
    # Commits need an author; a fresh CI machine has none configured, so lend one.
    return () if _has_identity(str(cwd)) else _IDENTITY


@dataclass(frozen=True)
class Committed:
    sha: str
    tree: str
    files: list[str]
    lines_added: int
    lines_removed: int


def _described(worktree: Path) -> Committed:
    out = git(worktree, "log", "-1", "--numstat", "--format=%H %T").splitlines()
    sha, tree = out[0].split()
    added = removed = 0
    files: list[str] = []
    for line in out[1:]:
        if not line.strip():
            continue
        a, r, name = line.split("\t", 2)
        files.append(name)
        # Binary files report "-": count them as one changed line so they aren't "free".
        added += int(a) if a.isdigit() else 1
        removed += int(r) if r.isdigit() else 1
    return Committed(sha=sha, tree=tree, files=files, lines_added=added, lines_removed=removed)


def commit_change(worktree: Path, message: str, paths: list[str] | None = None) -> Committed:
    """Stage a change (the given paths, or everything), commit it on the detached HEAD, and
    describe it. Three git calls: this runs once per experiment, so it is kept lean."""
    if paths is None:
        git(worktree, "add", "-A")
    else:
        git(worktree, "add", "-A", "--", *paths)
    # The message on stdin, not argv: a hypothesis is untrusted text of any length, and one
    # argument over 128 KiB (MAX_ARG_STRLEN) fails exec with "Argument list too long".
    git(worktree, *identity_args(worktree), "commit", "--quiet", "--no-verify", "--allow-empty",
        "-F", "-", input_text=message)
    return _described(worktree)


def cherry_pick(worktree: Path, commit: str, onto: str) -> Committed | None:
    """Replay `commit`'s change on top of `onto` in the worktree (same message, new parent).

    Returns the new commit, or None when the change conflicts with `onto` (the worktree is then
    left exactly at `onto`, clean).
    """
    checkout(worktree, onto)
    # A change already contained in `onto` is kept as an empty commit so the caller can tell
    # "redundant" from "conflicting" (hooks are off, as for every git call: HARDENED).
    picked = run_git(worktree, *identity_args(worktree), "cherry-pick",
                     "--keep-redundant-commits", commit)
    if picked.returncode == 0:
        return _described(worktree)
    git(worktree, "cherry-pick", "--abort", check=False)
    checkout(worktree, onto)
    # Changes next to the keep's are no conflict of substance: each line is made again exactly
    # where the keep's own change moved it (line_replay.py).
    replayed = replay_lines(worktree, commit, onto)
    if replayed is not None:
        write_replayed(worktree, replayed)
        return commit_like(worktree, commit)
    checkout(worktree, onto)
    return None


def commit_like(worktree: Path, original: str) -> Committed:
    """Commit what the worktree holds staged with `original`'s message and author: a change
    made again on a newer incumbent is the same experiment's."""
    git(worktree, *identity_args(worktree), "commit", "--quiet", "--no-verify", "--allow-empty",
        "-C", original)
    return _described(worktree)
