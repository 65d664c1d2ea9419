"""Every untracked file of the worktree, git-ignored ones included, around one agent run.

The harness sees an agent's change through git, so it never sees a git-ignored file. An agent
could change a data file the evaluation reads (ignored, so never committed, never reverted), or
add `lib/.gitignore` with `*` so that a new file of its own stays invisible. Both would make the
run measure something other than the commit.

So before the run every untracked file is listed without applying any ignore rule (`git ls-files
--others`, no `--exclude-standard`: the agent cannot hide a file by editing the rules), with a
stamp that a content change cannot leave alone (size, mtime, inode and ctime, which no user
process can set), and the content of the small ones is kept so they can be put back. Every
`.gitignore` is kept too. After the run, a change to a file that git ignores (by the rules from
before the run), or to any `.gitignore`, is a violation.

A new nested git repository (a directory holding its own `.git`, which git lists as the
directory alone, `lib/sub/`) is a violation too: its files are invisible to the harness's git,
so they could be neither judged nor committed, and a later reset would leave it behind.

Two things are not violations: changes git shows (`git status` lists them, so the guardrails
judge them like any edit), and regenerable files (`__pycache__/`, `*.pyc`, tool caches, and the
agent CLI's own scratch files such as `.aider*`), which are deleted when the run created or
rewrote them, since a planted `.pyc` could change what an import runs. Nothing outside the worktree is ever touched; the session's own `.autoresearch`
directory is in the main checkout, not in the worktree.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from autoresearch.file_stamp import Stamp
from autoresearch.gitops.runner import git
from autoresearch.globs import matches

MAX_KEEP_BYTES = 1 << 20  # files up to this size are kept in memory, to put back if changed
MAX_KEEP_TOTAL = 64 << 20
CACHE_DIRS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"})


def is_cache(path: str) -> bool:
    pure = PurePosixPath(path)
    return pure.suffix in (".pyc", ".pyo") or not CACHE_DIRS.isdisjoint(pure.parts)


def _list(cwd: Path, *args: str) -> list[str]:
    return [p for p in git(cwd, "ls-files", "-z", *args).split("\0") if p]


@dataclass(frozen=True)
class Content:
    data: bytes
    link: bool = False  # data is a symlink's target


def _read(full: Path) -> Content | None:
    try:
        if full.is_symlink():
            return Content(os.fsencode(os.readlink(full)), link=True)
        return Content(full.read_bytes()) if full.is_file() else None
    except OSError:
        return None


@dataclass(frozen=True)
class Change:
    path: str
    kind: str  # "new", "modified" or "deleted"

    def __str__(self) -> str:
        return f"{self.path} ({self.kind})"


@dataclass
class Verdict:
    """What the run did to untracked files and `.gitignore`s."""

    hidden: list[Change] = field(default_factory=list)  # ignored files: never seen by git
    nested: list[Change] = field(default_factory=list)  # new git repositories inside the worktree
    gitignores: list[Change] = field(default_factory=list)
    caches: list[Change] = field(default_factory=list)  # regenerable: deleted, not refused

    @property
    def violations(self) -> list[Change]:
        return [*self.gitignores, *self.hidden]

    @property
    def nested_repos(self) -> list[str]:
        return [change.path.rstrip("/") for change in self.nested]


@dataclass(frozen=True)
class UntrackedSnapshot:
    stamps: dict[str, Stamp]
    ignored: frozenset[str]  # the untracked files git ignored before the run
    kept: dict[str, Content]  # content of the small ones
    gitignores: dict[str, Content]  # every .gitignore, tracked or not

    @classmethod
    def take(cls, cwd: Path) -> UntrackedSnapshot:
        stamps = _stamps(cwd)
        kept: dict[str, Content] = {}
        budget = MAX_KEEP_TOTAL
        for path, stamp in stamps.items():
            if stamp.size <= min(MAX_KEEP_BYTES, budget) and (data := _read(cwd / path)) is not None:
                kept[path] = data
                budget -= len(data.data)
        ignored = frozenset(_list(cwd, "--others", "--ignored", "--exclude-standard"))
        return cls(stamps=stamps, ignored=ignored, kept=kept, gitignores=_gitignores(cwd, stamps))

    def judge(self, cwd: Path, scratch: Sequence[str] = ()) -> Verdict:
        """Compare with now. Restores the `.gitignore`s first, so that what counts as ignored is
        decided by the rules from before the run, not by rules the run wrote. `scratch` globs
        name the agent CLI's own files, treated like caches."""
        verdict = Verdict()
        now = _stamps(cwd)
        for path in sorted(set(self.gitignores) | set(_gitignores(cwd, now))):
            before, after = self.gitignores.get(path), _read(cwd / path)
            if before != after:
                kind = "new" if before is None else "deleted" if after is None else "modified"
                verdict.gitignores.append(Change(path, kind))
        # Hidden means ignored by the rules before the run, or by the rules the run wrote.
        hidden_by_run = set(_list(cwd, "--others", "--ignored", "--exclude-standard"))
        self._restore_gitignores(cwd)
        ignored_now = set(_list(cwd, "--others", "--ignored", "--exclude-standard")) | hidden_by_run
        for change in self._changes(now):
            if change.path in self.gitignores or PurePosixPath(change.path).name == ".gitignore":
                continue
            if is_nested_repo(change.path) and change.kind == "new":
                verdict.nested.append(change)
            elif is_cache(change.path) or (scratch and matches(change.path, scratch)):
                verdict.caches.append(change)
            elif change.path in self.ignored or change.path in ignored_now:
                verdict.hidden.append(change)
        return verdict

    def _changes(self, now: dict[str, Stamp]) -> list[Change]:
        changes = [Change(p, "new") for p in sorted(set(now) - set(self.stamps))]
        changes += [Change(p, "modified") for p in sorted(set(now) & set(self.stamps))
                    if now[p] != self.stamps[p]]
        changes += [Change(p, "deleted") for p in sorted(set(self.stamps) - set(now))]
        return changes

    def _restore_gitignores(self, cwd: Path) -> None:
        for path, content in self.gitignores.items():
            if _read(cwd / path) != content:
                _write(cwd / path, content)
        for path in _gitignores(cwd):
            if path not in self.gitignores:
                (cwd / path).unlink(missing_ok=True)

    def drop_caches(self, cwd: Path, verdict: Verdict) -> None:
        """Delete the caches the run created or rewrote (they are regenerated on use)."""
        for change in verdict.caches:
            if change.kind != "deleted":
                (cwd / change.path).unlink(missing_ok=True)

    def restore(self, cwd: Path) -> list[str]:
        """Put every untracked file back as it was: new ones deleted, changed ones rewritten.
        Returns the files that could not be put back (too large to have been kept)."""
        self._restore_gitignores(cwd)
        now = _stamps(cwd)
        lost: list[str] = []
        for change in self._changes(now):
            full = cwd / change.path
            if change.kind == "new":
                _remove(full)
                _prune_empty(cwd, full.parent)
            elif is_cache(change.path):
                full.unlink(missing_ok=True)
            elif change.path in self.kept:
                _write(full, self.kept[change.path])
            else:
                lost.append(f"{change.path} ({change.kind}, {self.stamps[change.path].size} bytes)")
        return lost


def _stamps(cwd: Path) -> dict[str, Stamp]:
    """Every untracked file, ignored or not (no ignore rule applied), with its stamp."""
    out: dict[str, Stamp] = {}
    for path in _list(cwd, "--others"):
        stamp = Stamp.of(cwd / path, follow_links=False)
        if stamp is not None:
            out[path] = stamp
    return out


def _gitignores(cwd: Path, untracked: Iterable[str] | None = None) -> dict[str, Content]:
    """Every `.gitignore` in the worktree, tracked or untracked, -> its content."""
    others = _list(cwd, "--others") if untracked is None else untracked
    paths = [p for p in [*_list(cwd), *others] if PurePosixPath(p).name == ".gitignore"]
    out: dict[str, Content] = {}
    for path in dict.fromkeys(paths):
        data = _read(cwd / path)
        if data is not None:
            out[path] = data
    return out


def is_nested_repo(path: str) -> bool:
    """git lists a repository inside the worktree as its directory, with a trailing slash."""
    return path.endswith("/")


def _remove(full: Path) -> None:
    """Remove a new file, or a new nested repository with everything in it (never following a
    symlink out of the worktree)."""
    if full.is_dir() and not full.is_symlink():
        shutil.rmtree(full)
    else:
        full.unlink(missing_ok=True)


def _write(full: Path, content: Content) -> None:
    full.unlink(missing_ok=True)
    full.parent.mkdir(parents=True, exist_ok=True)
    if content.link:
        full.symlink_to(os.fsdecode(content.data))
    else:
        full.write_bytes(content.data)


def _prune_empty(cwd: Path, directory: Path) -> None:
    """Remove directories a deleted new file leaves empty, up to the worktree."""
    root = cwd.resolve()
    while directory.resolve() != root and directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
        directory = directory.parent
