"""The change under review, from one of three inputs, and how to read its files.

    range    `--base/--head` (default: the current branch against its merge base with the
             default branch): the diff `git diff base...head` shows
    session  `--session TAG`: the kept commits of a research session, i.e. the session branch
             `autoresearch/<tag>` against the session's base commit (before finalize)
    diff     `--diff FILE`: a unified diff; the head side is the working tree when the patch is
             applied there, else the working tree with the patch applied in memory

Whatever the input, a file of more than MAX_DIFF_LINES changed lines is named in the review's
notes as not reviewed, and its diff is never held in memory (a range: from git's counts; a diff
file: read as a stream, diff_reader).

Every input ends as a `Change`: the diff, its files, the commits in it, and a `Source` that reads
any file at the base or the head.
"""

from __future__ import annotations

import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

from unidiff.patch import PatchedFile

from autoresearch.errors import AutoresearchError, PreconditionError
from autoresearch.review.canonical import NotInRepository, repo_relative
from autoresearch.review.diff import ChangedFile, DiffMismatch, Status, parse_diff, rebuild
from autoresearch.review.diff_reader import ReadDiff, read_diff
from autoresearch.review.gitio import (
    is_repo,
    merge_base,
    read_files,
    resolve_rev,
    run_git,
    run_git_bytes,
)
from autoresearch.review.model import Subject

# Beyond this a file is reviewed from its diff only (a generated or vendored blob, not code).
MAX_FILE_BYTES = 1_000_000
# Beyond this many changed lines a file's diff is not read at all (a data dump, a generated or
# vendored file): parsed, a 50 MB text file's diff alone took 2 GB of memory.
MAX_DIFF_LINES = 20_000


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str


class Source(ABC):
    """Reads files of the change's base and head."""

    def __init__(self, root: Path, base_rev: str | None) -> None:
        self.root = root
        self.base_rev = base_rev  # a commit to read history and blame from (None: no history)
        self._head: dict[str, str | None] = {}
        self._base: dict[str, str | None] = {}

    def head_text(self, path: str) -> str | None:
        if path not in self._head:
            self._head.update(self._read_head([path]))
        return self._head[path]

    def base_text(self, path: str) -> str | None:
        if path not in self._base:
            self._base.update(self._read_base([path]))
        return self._base[path]

    def prefetch(self, head: Iterable[str] = (), base: Iterable[str] = ()) -> None:
        """Read many files in one go (one git call instead of one per file)."""
        want_head = [p for p in head if p not in self._head]
        want_base = [p for p in base if p not in self._base]
        if want_head:
            self._head.update(self._read_head(want_head))
        if want_base:
            self._base.update(self._read_base(want_base))

    def _read_base(self, paths: Sequence[str]) -> dict[str, str | None]:
        if self.base_rev is None:
            return dict.fromkeys(paths)
        return read_files(self.root, self.base_rev, paths)

    @abstractmethod
    def _read_head(self, paths: Sequence[str]) -> dict[str, str | None]: ...

    @abstractmethod
    def head_paths(self) -> list[str]:
        """Every file of the head revision (to give type checkers the whole project)."""


class CommitSource(Source):
    """Both sides are commits."""

    def __init__(self, root: Path, base: str, head: str) -> None:
        super().__init__(root, base)
        self.head_rev = head

    def _read_head(self, paths: Sequence[str]) -> dict[str, str | None]:
        return read_files(self.root, self.head_rev, paths)

    def head_paths(self) -> list[str]:
        out = run_git(self.root, "ls-tree", "-r", "--name-only", "-z", self.head_rev)
        return [p for p in out.split("\0") if p]


class TextSource(Source):
    """A diff's head side known in memory (`--diff`), other files from the working tree."""

    def __init__(self, root: Path, base_rev: str | None, head: dict[str, str | None],
                 base: dict[str, str | None]) -> None:
        super().__init__(root, base_rev)
        self._head.update(head)
        self._base.update(base)

    def _read_head(self, paths: Sequence[str]) -> dict[str, str | None]:
        return {p: _read_file(self.root, p) for p in paths}

    def _read_base(self, paths: Sequence[str]) -> dict[str, str | None]:
        return {p: _read_file(self.root, p) for p in paths}

    def head_paths(self) -> list[str]:
        if is_repo(self.root):
            listed = run_git(self.root, "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard")
            paths = [p for p in listed.split("\0") if p]
        else:
            paths = [str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file()]
        return sorted(set(paths) | {p for p, text in self._head.items() if text is not None})


def _read_file(root: Path, rel: str) -> str | None:
    """A working-tree file as git would see it, never anything outside `root`: a symlink is its
    target's name (what git stores), and a path through a linked directory that leads out of
    the repository is not read (a diff is input; what is read may reach a model)."""
    path = root / rel
    try:
        if path.is_symlink():
            return os.readlink(path)
        if not path.resolve().is_relative_to(root.resolve()):
            return None
        if not path.is_file() or path.stat().st_size > MAX_FILE_BYTES:
            return None
        return path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return None


@dataclass
class Change:
    root: Path
    subject: Subject
    diff_text: str
    files: list[ChangedFile]
    source: Source
    commits: list[Commit]
    notes: list[str] = field(default_factory=list)  # what the review leaves out, and why

    @property
    def reviewable(self) -> list[ChangedFile]:
        """Files with text lines added (deleted and binary files have nothing to comment on; a
        symbolic link's one line is the name of its target, which no reviewer should read as
        code: ruff would report `target.py` as an undefined name)."""
        return [f for f in self.files
                if not f.binary and not f.symlink and f.status != "deleted" and f.added]

    @property
    def lines_added(self) -> int:
        return sum(f.lines_added for f in self.files)

    @property
    def lines_removed(self) -> int:
        return sum(f.lines_removed for f in self.files)

    def file(self, path: str) -> ChangedFile | None:
        for f in self.files:
            if f.path == path:
                return f
        return None


def _symlink_notes(files: Iterable[ChangedFile]) -> list[str]:
    """The symbolic links the change adds or retargets: named, since no reviewer reads them."""
    return [f"{f.path}: a symbolic link (to {_link_target(f)}), not reviewed as code"
            for f in files if f.symlink and f.status != "deleted"]


def _link_target(changed: ChangedFile) -> str:
    """A link's target as its diff shows it (the one added line), or "its target" if none is."""
    for line in changed.patch.splitlines():
        if line.startswith("+") and not line.startswith("+++"):
            return repr(line[1:][:200])
    return "its target"


# --- the three inputs ----------------------------------------------------------------------


def default_branch(root: Path) -> str | None:
    """The repository's default branch: origin's HEAD, else main/master, else init.defaultBranch."""
    remote = run_git(root, "symbolic-ref", "--quiet", "refs/remotes/origin/HEAD", check=False)
    if remote.strip():
        return remote.strip().removeprefix("refs/remotes/")
    configured = run_git(root, "config", "init.defaultBranch", check=False).strip()
    for name in dict.fromkeys(["main", "master", *([configured] if configured else [])]):
        if run_git(root, "rev-parse", "--verify", "--quiet", f"refs/heads/{name}",
                   check=False).strip():
            return name
    return None


def _commits(root: Path, base: str, head: str) -> list[Commit]:
    out = run_git(root, "log", "--no-merges", "--format=%H%x1f%s", f"{base}..{head}")
    return [Commit(*line.split("\x1f", 1)) for line in out.splitlines() if "\x1f" in line]


def _git_diff(root: Path, base: str, head: str, exclude: Iterable[str] = ()) -> str:
    pathspecs = [f":(exclude,literal){p}" for p in exclude]
    raw = run_git_bytes(root, "-c", "core.quotePath=false", "diff", "--no-color", "--no-ext-diff",
                        "--find-renames", "--end-of-options", base, head,
                        *(["--", ".", *pathspecs] if pathspecs else []))
    return raw.decode("utf-8", errors="replace")


_STATUS: dict[str, Status] = {"A": "added", "D": "deleted", "M": "modified", "R": "renamed",
                              "T": "modified", "C": "added"}


def _oversized(root: Path, base: str, head: str) -> list[tuple[ChangedFile, int]]:
    """The files whose diff is too large to read (MAX_DIFF_LINES), from git's counts alone."""
    fields = run_git(root, "-c", "core.quotePath=false", "diff", "--numstat", "--find-renames",
                     "-z", "--end-of-options", base, head).split("\0")
    big: dict[str, int] = {}
    i = 0
    while i < len(fields) - 1:
        added, removed, path = (fields[i].split("\t", 2) + ["", ""])[:3]
        if not path:  # a rename: "added\tremoved\t", then the old and the new path
            path, i = fields[i + 2], i + 3
        else:
            i += 1
        if added.isdigit() and removed.isdigit() and int(added) + int(removed) > MAX_DIFF_LINES:
            big[path] = int(added) + int(removed)
    if not big:
        return []
    status = run_git(root, "-c", "core.quotePath=false", "diff", "--name-status",
                     "--find-renames", "-z", "--end-of-options", base, head, "--",
                     *[f":(literal){p}" for p in big]).split("\0")
    out: list[tuple[ChangedFile, int]] = []
    i = 0
    while i < len(status) - 1:
        code = status[i][:1]
        if code in ("R", "C"):
            old, new, i = status[i + 1], status[i + 2], i + 3
        else:
            old = new = status[i + 1]
            i += 2
        kind = _STATUS.get(code, "modified")
        out.append((ChangedFile(path=new, old_path=None if kind == "added" else old,
                                status=kind, binary=False, hunks=()), big.get(new, 0)))
    return out


def _too_large(changed: ChangedFile, lines: int) -> str:
    return (f"{changed.path}: not reviewed ({lines:,} changed lines, over the "
            f"{MAX_DIFF_LINES:,}-line limit of one file)")


def _range_change(root: Path, base: str, head: str, subject: Subject) -> Change:
    oversized = _oversized(root, base, head)
    diff_text = _git_diff(root, base, head, exclude=[f.path for f, _ in oversized])
    files, _ = parse_diff(diff_text, where=subject.label)
    notes = [*_symlink_notes(files), *(_too_large(f, lines) for f, lines in oversized)]
    return Change(root=root, subject=subject, diff_text=diff_text,
                  files=files + [f for f, _ in oversized],
                  source=CommitSource(root, base, head), commits=_commits(root, base, head),
                  notes=notes)


def from_range(root: Path, base: str | None, head: str | None) -> Change:
    """`--base/--head`: what `head` adds over its merge base with `base` (a pull request's diff)."""
    head_name = head or "HEAD"
    if head is None and not run_git(root, "rev-parse", "--verify", "--quiet", "HEAD",
                                    check=False).strip():
        raise PreconditionError(
            "this repository has no commit yet: there is no branch to review", where=str(root),
            fix="commit the change on a branch first, or review the working tree as a diff: "
            "git add -N . && git diff > change.diff && autoresearch review --diff change.diff")
    head_sha = resolve_rev(root, head_name, "--head")
    if base is None:
        branch = default_branch(root)
        if branch is None:
            raise PreconditionError(
                "cannot tell this repository's default branch (no origin/HEAD, main or master)",
                where=str(root), fix="name the base: autoresearch review --base <branch>")
        base_name, where = branch, f"the default branch {branch}"
    else:
        base_name, where = base, "--base"
    base_sha = resolve_rev(root, base_name, where if base is None else "--base")
    fork = merge_base(root, base_sha, head_sha)
    if fork is None:
        raise PreconditionError(
            f"{base_name} and {head_name} share no history", where="--base/--head",
            fix="review two revisions of one history (in a shallow clone: git fetch --unshallow)")
    current = run_git(root, "symbolic-ref", "--quiet", "--short", "HEAD", check=False).strip()
    head_label = head or current or head_sha[:12]
    subject = Subject(
        kind="range", label=f"{head_label} against {base_name} (merge base {fork[:12]})",
        key=f"range:{head_label}", base=fork, head=head_sha)
    return _range_change(root, fork, head_sha, subject)


def from_commits(root: Path, parent: str, candidate: str, key: str, label: str) -> Change:
    """One candidate commit against its parent (the in-loop gate)."""
    parent_sha = resolve_rev(root, parent, "parent commit")
    head_sha = resolve_rev(root, candidate, "candidate commit")
    subject = Subject(kind="commit", label=label, key=key, base=parent_sha, head=head_sha)
    return _range_change(root, parent_sha, head_sha, subject)


def from_session(root: Path, tag: str) -> Change:
    """`--session TAG`: the session branch against the session's base commit."""
    from autoresearch.config import STATE_DIR
    from autoresearch.ledger import Ledger

    ledger_path = root / STATE_DIR / "ledger.db"
    if not ledger_path.exists():
        raise PreconditionError("no research session has run in this repository",
                                where=str(ledger_path),
                                fix="review a branch instead: autoresearch review --base main")
    ledger = Ledger(ledger_path, readonly=True)
    try:
        session = ledger.session(tag)
        known = [s.tag for s in ledger.sessions()]
    finally:
        ledger.close()
    if session is None:
        raise PreconditionError(
            f"no session {tag!r} in the ledger", where=str(ledger_path),
            fix=f"use one of: {', '.join(known)}" if known else "start one with autoresearch run")
    head_sha = resolve_rev(root, f"refs/heads/{session.branch}", f"the session branch "
                           f"{session.branch}")
    base_sha = resolve_rev(root, session.base_commit, "the session's base commit")
    subject = Subject(
        kind="session", label=f"session {tag}: {session.branch} against its base "
        f"{base_sha[:12]}", key=f"session:{tag}", base=base_sha, head=head_sha)
    return _range_change(root, base_sha, head_sha, subject)


def _sides(root: Path, changed: ChangedFile, pf: PatchedFile) -> tuple[str | None, str | None]:
    """(base, head) of one file of a diff, from the working tree: it holds the head side when the
    patch is applied, the base side when it is not; anything else raises DiffMismatch."""
    if changed.binary:
        return None, None
    old_disk = _read_file(root, changed.old_path) if changed.old_path else None
    if changed.status == "deleted":
        if old_disk is None:  # applied: the file is gone, and the diff holds all of it
            return rebuild("", pf, forward=False), None
        rebuild(old_disk, pf, forward=True)  # not applied: the file must be what it deletes
        return old_disk, None
    head_disk = _read_file(root, changed.path)
    if head_disk is not None:
        try:
            undone = rebuild(head_disk, pf, forward=False)
            return (None if changed.status == "added" else undone), head_disk
        except DiffMismatch:
            pass
    if changed.status == "added":
        return None, rebuild(None, pf, forward=True)
    if old_disk is None:
        raise DiffMismatch(f"{changed.old_path} is not in the working tree")
    return old_disk, rebuild(old_disk, pf, forward=True)


def _in_repository(root: Path, changed: ChangedFile, where: str) -> ChangedFile:
    """`changed` under the names git gives its files (canonical.py): `./a.py` is a.py, so every
    check that follows (protected, what is read) judges the file that is read; a path that
    names no file of the repository is refused (a diff is input, and `root / "/etc/passwd"`
    is /etc/passwd)."""
    def name(path: str) -> str:
        try:
            return repo_relative(root, path)
        except NotInRepository as exc:
            raise PreconditionError(
                f"the diff names {exc.reason}: {path!r}",
                where=where,
                fix="a review reads only files under --repo; pass a diff whose paths are "
                "relative to the repository (as `git diff` writes them)") from None

    path = name(changed.path)
    old_path = name(changed.old_path) if changed.old_path else None
    # `--- a/./a.py` and `+++ b/a.py` looked like a rename: one file, modified.
    status: Status = "modified" if changed.status == "renamed" and old_path == path \
        else changed.status
    return replace(changed, path=path, old_path=old_path, status=status)


def _refuse_twice_named(files: Sequence[ChangedFile], written: Sequence[ChangedFile],
                        where: str) -> None:
    """One file, one part of the diff: `a.py` and `./a.py` are one file, whose two parts would
    each claim to be its whole change."""
    first: dict[str, str] = {}
    for changed, as_written in zip(files, written, strict=True):
        if changed.path in first:
            raise PreconditionError(
                f"the diff changes {changed.path} twice (as {first[changed.path]!r} and "
                f"{as_written.path!r})", where=where,
                fix="pass one diff of the change, as `git diff` writes it (each file once)")
        first[changed.path] = as_written.path


def from_diff_file(root: Path, diff_path: str) -> Change:
    """`--diff FILE` ('-' reads stdin), against the files of `root`'s working tree."""
    if diff_path == "-":
        where = "the diff on standard input"
        read = _read_diff(sys.stdin.buffer, where)
    else:
        where = diff_path
        try:
            with open(diff_path, "rb") as stream:
                read = _read_diff(stream, where)
        except OSError as exc:
            raise AutoresearchError(f"cannot read the diff: {exc.strerror}", where=diff_path,
                                    fix="pass the path of a unified diff file") from None
    text = read.text
    files, raw = parse_diff(text, where=where)
    # An empty diff (`git diff > change.diff` with nothing changed) is an empty change, as
    # `--base X --head X` is: nothing to review. Text naming no file is not a diff at all.
    if not files and not read.oversized and text.strip():
        raise AutoresearchError(
            "the diff names no file: it is not a unified diff (no `diff --git` or `---`/`+++` "
            "file header)", where=where,
            fix="pass a unified diff (e.g. `git diff main... > change.diff`)")
    written = files + [f for f, _ in read.oversized]
    named = [_in_repository(root, f, where) for f in written]
    _refuse_twice_named(named, written, where)
    in_repo = is_repo(root)
    head_rev = run_git(root, "rev-parse", "--verify", "--quiet", "HEAD", check=False).strip() \
        if in_repo else ""
    heads: dict[str, str | None] = {}
    bases: dict[str, str | None] = {}
    # The parsed files, under their names; `named` ends with the oversized ones (not read).
    for changed, as_written in zip(named[:len(files)], files, strict=True):
        try:
            base_text, head_text = _sides(root, changed, raw[as_written.path])
        except DiffMismatch as exc:
            raise PreconditionError(
                f"the diff does not match {changed.path} in {root} (neither applied nor "
                f"applicable: {exc})", where=where,
                fix="run the review in the checkout the diff was made from (--repo DIR), "
                "at the revision it applies to") from None
        heads[changed.path] = head_text
        if changed.old_path:
            bases[changed.old_path] = base_text
    label = f"diff {'<stdin>' if diff_path == '-' else diff_path}"
    subject = Subject(kind="diff", label=label,
                      key=f"diff:{Path(diff_path).resolve() if diff_path != '-' else 'stdin'}",
                      head=None, base=head_rev or None)
    source = TextSource(root, head_rev or None, heads, bases)
    return Change(root=root, subject=subject, diff_text=text, files=named, source=source,
                  commits=[], notes=[*_symlink_notes(named),
                                     *(_too_large(f, lines) for f, lines in read.oversized)])


def _read_diff(stream: BinaryIO, where: str) -> ReadDiff:
    """The diff read line by line (never whole: see diff_reader), files over the limit left out."""
    lines = (raw.decode("utf-8", errors="replace") for raw in stream)
    try:
        return read_diff(lines, MAX_DIFF_LINES)
    except OSError as exc:
        raise AutoresearchError(f"cannot read the diff: {exc.strerror}", where=where,
                                fix="pass the path of a unified diff file") from None
