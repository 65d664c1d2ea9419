"""The git bookkeeping around one agent run in the experiment's worktree.

Before the run we note HEAD and the untracked files already there (a verify run may have left
outputs); afterwards we can tell what the agent changed, remove files the agent created that are
only its own scratch state, or throw the whole change away. What the agent may not do besides
editing files (run git, touch ignored files) is checked by `guard`.
"""

from __future__ import annotations

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
            if path not in self.untracked:
                (cwd / path).unlink(missing_ok=True)


def changed_since(cwd: Path, base: str, snapshot: Snapshot) -> list[str]:
    """Paths that differ from commit `base`: tracked changes plus files the run created."""
    out = git(cwd, "diff", "--name-only", "-z", "--no-renames", base)
    tracked = set(filter(None, out.split("\0")))
    return sorted(tracked | set(snapshot.new_untracked(cwd)))


def read_change(cwd: Path, paths: Iterable[str]) -> dict[str, str | None]:
    """path -> current content (None when deleted); raises ValueError on a binary file."""
    edits: dict[str, str | None] = {}
    for path in paths:
        full = cwd / path
        if not full.is_file():
            edits[path] = None
            continue
        data = full.read_bytes()
        try:
            edits[path] = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{path} is binary") from None
    return edits
