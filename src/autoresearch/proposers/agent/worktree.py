"""The git bookkeeping around one agent run in the experiment's worktree.

Before the run we note HEAD and the untracked files already there (a verify run may have left
outputs); afterwards we can tell what the agent changed, remove files the agent created that are
only its own scratch state, or throw the whole change away. What the agent may not do besides
editing files (run git, touch ignored files) is checked by `guard`.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from autoresearch.gitops.runner import git
from autoresearch.globs import matches


def _untracked(cwd: Path) -> dict[str, float]:
    out = git(cwd, "ls-files", "--others", "--exclude-standard", "-z")
    stamps: dict[str, float] = {}
    for path in filter(None, out.split("\0")):
        try:
            stamps[path] = (cwd / path).stat().st_mtime_ns
        except OSError:
            continue
    return stamps


@dataclass(frozen=True)
class Snapshot:
    """The worktree just before the agent ran."""

    head: str
    untracked: dict[str, float]

    @classmethod
    def take(cls, cwd: Path) -> Snapshot:
        return cls(head=git(cwd, "rev-parse", "HEAD").strip(), untracked=_untracked(cwd))

    def new_untracked(self, cwd: Path) -> list[str]:
        """Untracked files the run created or rewrote."""
        now = _untracked(cwd)
        return sorted(p for p, stamp in now.items() if self.untracked.get(p) != stamp)

    def remove_scratch(self, cwd: Path, patterns: Iterable[str]) -> list[str]:
        """Delete new untracked files matching an agent's scratch patterns (e.g. `.aider*`)."""
        patterns = list(patterns)
        removed = []
        for path in self.new_untracked(cwd):
            if patterns and matches(path, patterns):
                (cwd / path).unlink(missing_ok=True)
                removed.append(path)
        return removed

    def restore(self, cwd: Path) -> None:
        """Throw the run's change away: back to HEAD as it was, the agent's new files deleted."""
        created = self.new_untracked(cwd)
        git(cwd, "reset", "--hard", "--quiet", self.head)
        for path in created:
            full = cwd / path
            # A link the run put where a tracked directory was (`lib -> elsewhere`) is a
            # directory again after the reset: the reset has put it back, nothing to remove.
            if path not in self.untracked and (full.is_symlink() or not full.is_dir()):
                full.unlink(missing_ok=True)


def changed_since(cwd: Path, base: str, snapshot: Snapshot) -> list[str]:
    """Paths that differ from commit `base`: tracked changes plus files the run created."""
    out = git(cwd, "diff", "--name-only", "-z", "--no-renames", base)
    tracked = set(filter(None, out.split("\0")))
    return sorted(tracked | set(snapshot.new_untracked(cwd)))


def _link_on_the_way(cwd: Path, path: str) -> str | None:
    """Why `path` cannot be read as the file it names, or None. A symbolic link (the path or a
    directory on the way) reads another file's content, maybe a protected one's (`ln -s
    ../secrets.txt lib/notes.py`); a hard link shares its content with another file. The
    propose path refuses both through the guardrails; a repair's files are read here."""
    current = cwd
    for part in Path(path).parts:
        current = current / part
        try:
            st = current.lstat()
        except OSError:
            return None  # deleted (or a file where a directory was): nothing is read
        if stat.S_ISLNK(st.st_mode):
            shown = current.relative_to(cwd).as_posix()
            return f"{shown} is a symbolic link (a repair may only write files)"
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
        return f"{path} is a hard link to another file (a repair may only write files)"
    return None


def read_change(cwd: Path, paths: Iterable[str]) -> dict[str, str | None]:
    """path -> current content (None when deleted); raises ValueError on a binary file, a
    symbolic link (on the path or any directory above it) or a hard link."""
    edits: dict[str, str | None] = {}
    for path in paths:
        full = cwd / path
        problem = _link_on_the_way(cwd, path)
        if problem is not None:
            raise ValueError(problem)
        if not full.is_file():
            edits[path] = None
            continue
        data = full.read_bytes()
        try:
            edits[path] = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{path} is binary") from None
    return edits
