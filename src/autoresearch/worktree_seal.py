"""What is measured is what is committed: the worktree holds the commit before and after a run.

The protected fence (`guardrails.protected_fence`) watches the evaluation; this watches the rest
of the commit. A process that rewrites an in-scope file while the candidate is measured (a daemon
a coding agent left, a sibling slot's run writing next door, anything of the same user) would
otherwise have the harness record numbers of code nobody committed.

Before the run: HEAD must be the commit and `git status` must show no tracked file changed (if
either is not so, the worktree is put back first: nothing watched it since the last run). Then
every tracked file of the commit outside the protected ones is stamped (size, mtime, ctime,
inode, mode: `lstat`, ~1 µs a file). After the run: stamped again and HEAD read again. Any
difference means the worktree changed during the run, even if the content was put back (no
process can set a ctime back), and the caller records the run as a crash and restores the
worktree. Files written in the last moments before the stamp (within `_RACY_NS`, much longer
than the kernel's clock tick) could be written again within the same tick without a stamp
showing it, so those few (the ones the checkout just wrote) are also hashed before and after,
as git does for its "racily clean" entries.

Untracked files are not watched: runs make them (caches, outputs, checkpoints).
"""

from __future__ import annotations

import hashlib
import stat
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from autoresearch import gitops
from autoresearch.file_stamp import Stamp
from autoresearch.gitops.runner import GitError, run_git

__all__ = ["Seal", "sealed_worktree"]

_RACY_NS = 200_000_000  # 0.2 s; a clock tick is 1-10 ms
_GITLINK = "160000"


@dataclass
class Seal:
    """What a sealed run did to the worktree: one phrase per change (empty: nothing)."""

    changes: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)  # the tracked files the changes name

    @property
    def broken(self) -> bool:
        return bool(self.changes)

    def describe(self) -> str:
        return "the worktree changed during the run: " + ", ".join(self.changes)


@contextmanager
def sealed_worktree(worktree: Path, commit: str, skip: Collection[str] = ()) -> Iterator[Seal]:
    """Check that ``worktree`` holds ``commit`` around one run (``skip``: paths watched
    elsewhere, the protected files). The yielded `Seal` is filled when the block ends."""
    seal = Seal()
    if gitops.read_head(worktree) != commit or _tracked_changes(worktree):
        gitops.checkout(worktree, commit)
    files = [p for p in _tracked(worktree, commit) if p not in skip]
    now = time.time_ns()
    before = {p: Stamp.of(worktree / p, follow_links=False) for p in files}
    racy = {p: _digest(worktree / p) for p, s in before.items()
            if s is not None and max(s.mtime_ns, s.ctime_ns) >= now - _RACY_NS}
    try:
        yield seal
    finally:
        head = gitops.read_head(worktree)
        if head != commit:
            seal.changes.append(f"HEAD moved to {(head or 'nothing')[:12]}")
        for path in files:
            after = Stamp.of(worktree / path, follow_links=False)
            if after != before[path]:
                seal.changes.append(f"{path} ({_how(before[path], after)})")
                seal.paths.append(path)
            elif path in racy and _digest(worktree / path) != racy[path]:
                seal.changes.append(f"{path} (written)")
                seal.paths.append(path)


def _how(before: Stamp | None, after: Stamp | None) -> str:
    if after is None:
        return "deleted"
    if before is None:
        return "created"
    if before.ino != after.ino:
        return "replaced"
    if stat.S_IMODE(before.mode) != stat.S_IMODE(after.mode) and (
            (before.size, before.mtime_ns) == (after.size, after.mtime_ns)):
        return "mode changed"
    return "written"


def _digest(full: Path) -> str:
    try:
        with open(full, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return "<unreadable>"


def _tracked_changes(worktree: Path) -> bool:
    """Whether a tracked file differs from HEAD (or the index from HEAD). trustctime off as in
    `gitops.checkout`: the protected fence's chmods change ctimes and are not changes."""
    proc = run_git(worktree, "-c", "core.trustctime=false", "status", "--porcelain",
                          "-z", "--untracked-files=no", "--ignore-submodules=all")
    return proc.returncode != 0 or bool(proc.stdout)


def _tracked(worktree: Path, commit: str) -> tuple[str, ...]:
    return _tracked_in(str(worktree), commit)


@lru_cache(maxsize=64)
def _tracked_in(worktree: str, commit: str) -> tuple[str, ...]:
    """The files of ``commit`` (a commit's tree never changes: cached), submodules aside."""
    proc = run_git(Path(worktree), "ls-tree", "-r", "-z", "--full-tree", commit)
    if proc.returncode != 0:
        raise GitError(["ls-tree", commit], proc.returncode,
                              proc.stderr.decode("utf-8", "replace"), where=worktree)
    files = []
    for entry in proc.stdout.split(b"\0"):
        meta, tab, name = entry.partition(b"\t")
        if tab and not meta.startswith(_GITLINK.encode()):
            files.append(name.decode("utf-8", "surrogateescape"))
    return tuple(files)
