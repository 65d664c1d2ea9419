"""Every file that tells git how to behave, around one agent run or one verify run: noted
before, put back after.

An agent, and the verify command, run as the same user as the harness, so they can write any
of them:
- the worktree's `.git` link: pointed at a copy of the repository, the harness would commit
  into the copy and park or keep commits the real repository does not hold;
- the repository's own control files (`config`, `config.worktree`, `info/exclude`,
  `info/attributes`, `info/grafts`, `objects/info/alternates`, `shallow`, `hooks/`, and the
  worktree's `gitdir` and `commondir` links) and `refs/replace/`: attributes that pick a content
  filter, a graft or a replace ref that rewrites history, objects borrowed from another
  repository;
- the user's global and system configuration (`~/.gitconfig`, `$XDG_CONFIG_HOME/git/config`,
  its `attributes` and `ignore`, `/etc/gitconfig`, and every file they include): a
  `core.hooksPath` there would run the agent's code on every checkout, in every repository the
  user has, long after the session.

The harness's own git calls already ignore hooks, fsmonitor, global attributes and signing
(`gitops.runner.HARDENED`); this snapshot is what makes any other change visible and undone
(a verify run that changed one does not count: `control_files_fence`). Both steps use no git
at all: right after the run, the files are compared and put back before the
harness runs its first git command, so nothing the agent planted is ever read by it (with a
repointed `.git`, git would otherwise answer from the copy).

Parallel slots share these files, so one agent's change can be inside another's "before" (it
planted while the other started). The guards of one process therefore share what they put back
(`PUT_BACK`): a "before" that was a sibling's plant is read as the content it was put back to,
so it is never written again, and a file put back during a run counts as changed by that run
too (the harness cannot tell which of the agents at work changed it: both are refused).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.gitops.runner import git

# Inside each git dir (the common one and the worktree's own).
_CONTROL = ("config", "config.worktree", "info/exclude", "info/attributes", "info/grafts",
            "objects/info/alternates", "shallow", "commondir", "gitdir")


@dataclass(frozen=True)
class Content:
    """A path's state: the symlink it is (if any) and the bytes it reads as (None: no file)."""

    link: str | None
    data: bytes | None


ABSENT = Content(None, None)


class PutBack:
    """What this process's guards found changed and put back: (path, found, put back to)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[tuple[Path, Content, Content]] = []

    def mark(self) -> int:
        with self._lock:
            return len(self._events)

    def record(self, path: Path, found: Content, good: Content) -> None:
        with self._lock:
            self._events.append((path, found, good))

    def since(self, mark: int) -> set[Path]:
        with self._lock:
            return {path for path, _, _ in self._events[mark:]}

    def good_instead_of(self, path: Path, content: Content) -> Content:
        """`content`, unless a guard found it planted at `path`: then what it was put back to."""
        with self._lock:
            for p, found, good in reversed(self._events):
                if p == path and found == content:
                    return good
        return content


PUT_BACK = PutBack()


def read(path: Path) -> Content:
    link: str | None = None
    try:
        if path.is_symlink():
            link = os.readlink(path)
        data = path.read_bytes() if path.is_file() else None
    except OSError:
        data = None
    return Content(link, data)


def _user_files(config_origins: Iterable[Path]) -> list[Path]:
    """The user's and the machine's git configuration files, whether they exist or not."""
    home = Path(os.path.expanduser("~"))
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "git"
    files = [xdg / "config", xdg / "attributes", xdg / "ignore"]
    files.append(Path(os.environ.get("GIT_CONFIG_GLOBAL") or home / ".gitconfig"))
    if not os.environ.get("GIT_CONFIG_NOSYSTEM"):
        files.append(Path(os.environ.get("GIT_CONFIG_SYSTEM") or "/etc/gitconfig"))
    return [*files, *config_origins]


def _origins(cwd: Path) -> tuple[list[Path], list[Path]]:
    """Every config file git reads here (included ones too, even empty ones), and the excludes
    and attributes files the configuration names."""
    out = git(cwd, "config", "--list", "--show-origin", "-z", "--includes", check=False)
    origins: list[Path] = []
    named: list[Path] = []
    fields = out.split("\0")
    for origin, entry in zip(fields[::2], fields[1::2], strict=False):
        source = Path(os.path.expanduser(origin[len("file:"):])) if origin.startswith("file:") \
            else None
        if source is not None:
            origins.append(source)
        key, _, value = entry.partition("\n")
        key = key.lower()
        if not value:
            continue
        if key in ("core.excludesfile", "core.attributesfile"):
            named.append(Path(os.path.expanduser(value)))
        elif key.startswith("include") and key.endswith(".path") and source is not None:
            # Relative to the including file, as git reads it.
            named.append(source.parent / os.path.expanduser(value))
    return origins, named


# Directories whose every file tells git how to behave: hooks run code; a replace ref makes
# git read another object wherever one is named (the harness's own calls ignore them,
# GIT_NO_REPLACE_OBJECTS, but the user's git would not).
_CONTROL_DIRS = ("hooks", "refs/replace")


def _hooks(dirs: Iterable[Path]) -> list[Path]:
    """The files in the git dirs' hooks and replace refs directories."""
    found: list[Path] = []
    for d in dirs:
        for name in _CONTROL_DIRS:
            if (d / name).is_dir():
                found += sorted(p for p in (d / name).rglob("*") if not p.is_dir())
    return found


@dataclass(frozen=True)
class Watched:
    """Which files tell git how to behave for one worktree (git runs to find them: callers that
    fence many runs find them once, then read them with `GitFiles.of`)."""

    worktree: Path
    dirs: tuple[Path, ...]  # the git dirs (common and the worktree's)
    paths: tuple[Path, ...]

    @classmethod
    def find(cls, worktree: Path) -> Watched:
        out = git(worktree, "rev-parse", "--path-format=absolute", "--git-dir",
                  "--git-common-dir")
        dirs = tuple(dict.fromkeys(Path(line) for line in out.splitlines() if line.strip()))
        origins, named = _origins(worktree)
        paths = [worktree / ".git", *(d / name for d in dirs for name in _CONTROL),
                 *_hooks(dirs), *_user_files(origins), *named]
        absolute = (p if p.is_absolute() else worktree / p for p in paths)
        return cls(worktree, dirs, tuple(dict.fromkeys(absolute)))


@dataclass(frozen=True)
class GitFiles:
    """The content of every watched file at one moment (absolute path -> content)."""

    worktree: Path
    dirs: tuple[Path, ...]  # the git dirs (common and the worktree's)
    files: Mapping[Path, Content]
    mark: int = 0  # where PUT_BACK stood at `take`

    @classmethod
    def take(cls, worktree: Path) -> GitFiles:
        return cls.of(Watched.find(worktree))

    @classmethod
    def of(cls, watched: Watched) -> GitFiles:
        """The content of the watched files now (pure file reads)."""
        return cls(watched.worktree, watched.dirs, {p: read(p) for p in watched.paths},
                   PUT_BACK.mark())

    def _before(self, path: Path) -> Content:
        return PUT_BACK.good_instead_of(path, self.files.get(path, ABSENT))

    def _now(self) -> dict[Path, Content]:
        now = {p: read(p) for p in self.files}
        for hook in _hooks(self.dirs):  # a hook the run added
            now.setdefault(hook, read(hook))
        return now

    def changed(self) -> list[Path]:
        """The watched files whose content (or symlink) is not what it was, and those a sibling
        slot's guard put back meanwhile (pure file reads)."""
        differ = {p for p, content in self._now().items() if content != self._before(p)}
        return sorted(differ | PUT_BACK.since(self.mark))

    def restore(self, outside: Path | None = None) -> list[Path]:
        """Put every changed file back as it was (a file the run added is removed); returns
        them. Pure file writes: no git runs before git's files are its own again. `outside`: a
        directory whose files are left as they are (a worktree that is gone)."""
        changed = self.changed()
        if outside is not None:
            changed = [p for p in changed if not p.is_relative_to(outside)]
        for path in changed:
            found, good = read(path), self._before(path)
            if found != good:
                _put_back(path, good)
                PUT_BACK.record(path, found, good)
        return changed


@dataclass
class ControlFence:
    """What a fenced run did to git's files: one phrase per file, each already put back."""

    changes: list[str] = field(default_factory=list)
    worktree_lost: bool = False  # the worktree's directory was gone when the run ended


@contextmanager
def control_files_fence(watched: Watched) -> Iterator[ControlFence]:
    """Watch git's files around one verify run; whatever ended it, put back what changed
    before the caller runs git again, and name it. Pure file reads and writes: no git here."""
    fence = ControlFence()
    files = GitFiles.of(watched)
    try:
        yield fence
    finally:
        if watched.worktree.is_dir():
            fence.changes[:] = describe(files.restore(), watched.worktree)
        else:
            # The worktree itself was deleted (by another program, or by the run): its link is
            # not put back (that would make a directory holding a `.git` file alone, and count
            # as a change in every sibling slot's run); the caller stops the session.
            fence.worktree_lost = True
            fence.changes[:] = describe(files.restore(outside=watched.worktree),
                                        watched.worktree)


def _put_back(path: Path, before: Content) -> None:
    now = read(path)
    if before.link is not None and now.link == before.link:
        # The user's own symlink (dotfiles): the file it points at is what changed.
        if before.data is not None:
            path.write_bytes(before.data)
        return
    _remove(path)
    if before.link is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(before.link)
        if before.data is not None and read(path).data != before.data:
            path.write_bytes(before.data)
    elif before.data is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(before.data)


def _remove(path: Path) -> None:
    """Remove what stands at `path` now (never following a symlink)."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path)


def describe(paths: Iterable[Path], worktree: Path) -> list[str]:
    """One phrase per changed file, naming the worktree's link plainly."""
    phrases = []
    for path in paths:
        if path == worktree / ".git":
            phrases.append(f"the worktree's link to its repository ({path}) was changed")
        else:
            phrases.append(f"git's file {path} was changed")
    return phrases
