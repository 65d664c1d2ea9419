"""Refuse what may not change, in code, before anything is committed; fence the evaluation while
anything runs.

A proposal is checked path by path. Every path is first put in its canonical form
(`repo_paths.canonical_path`: no `.`/`..` tricks, no aliases by case or Unicode form, no symlink
on the way, nothing under `.git/`), and only then judged: it must not be one of git's control
files (`.gitignore`, `.gitattributes`, `.gitmodules`, at any depth), must match no protected glob
(compared case- and Unicode-insensitively too, so that no spelling of a protected name gets
through on any file system), must match the scope, must not be ignored by git (it could not be
committed, so the run would measure something the commit does not hold), and must stay within
size limits. Its content must be text (`textcheck`).

Protected files are hashed when the session starts. Every run (the verify command, a command
guard) happens inside `protected_fence`: the files are made read-only, hashed and stamped (size,
mtime, ctime, inode, mode) right before, and checked again right after; any difference, even a
file rewritten with its old content and its old mtime, is tampering. The chmod is only a first
line: root, or a process that chmods the file back, can still write, and then the ctime tells
(no process can set it back).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from autoresearch.file_stamp import Stamp
from autoresearch.gitops.history import blob_at
from autoresearch.gitops.status import ignored_paths, tracked_among
from autoresearch.globs import matches
from autoresearch.repo_paths import Canonicalizer, PathRefused, fold, shown
from autoresearch.textcheck import bytes_problem, text_problem
from autoresearch.unicode_controls import clean_prose

if TYPE_CHECKING:
    from autoresearch.proposers.base import Proposal

MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_FILES_PER_PROPOSAL = 100
# Files that change what git sees or how it stores content, wherever they are.
GIT_CONTROL_FILES = frozenset({".gitignore", ".gitattributes", ".gitmodules"})

__all__ = [
    "Fence", "PathRefused", "Rules", "apply_edits", "check_changed_paths", "check_edits",
    "clean_proposal_text",
    "hash_files", "is_protected", "judge_path", "path_problem", "protected_changes",
    "protected_fence",
]


@dataclass(frozen=True)
class Rules:
    scope: Sequence[str]
    protected: Sequence[str]
    max_file_bytes: int = MAX_FILE_BYTES
    max_files: int = MAX_FILES_PER_PROPOSAL


def is_protected(path: str, patterns: Iterable[str]) -> str | None:
    """The protected glob a canonical `path` matches, also under case/Unicode folding; or None.

    Folding matters on file systems that ignore case or normalization, where `Score.py` would be
    the protected `score.py`; elsewhere it refuses only names that are confusingly close to one.
    """
    patterns = list(patterns)
    for pattern in patterns:
        if matches(path, [pattern]) or matches(fold(path), [fold(pattern)]):
            return pattern
    return None


def protected_among(paths: Iterable[str], patterns: Iterable[str]) -> list[str]:
    """The paths `is_protected` calls protected, sorted: every list of protected files (the run
    fence's reference, the text kept from the model) is this one, so a glob spelt in another
    case (`Secrets.txt` for `secrets.txt`) protects the file everywhere, not only from edits."""
    patterns = list(patterns)
    return sorted(p for p in paths if is_protected(p, patterns) is not None)


def judge_path(root: Path, raw: object, rules: Rules, *, exact: bool = True,
               canonical: Canonicalizer | None = None) -> str:
    """The canonical form of `raw` if a proposal may change that file; else PathRefused with the
    rule it breaks. `exact=False` accepts cosmetic variants (`./a.py`) and returns the canonical
    text; the guardrails themselves use `exact=True`, so what is written is what was judged."""
    path = (canonical or Canonicalizer(root))(raw, exact=exact)
    name = path.rsplit("/", 1)[-1]
    if fold(name) in GIT_CONTROL_FILES:
        raise PathRefused(f"is git's control file {name} (it changes what git sees or stores)")
    protected = is_protected(path, rules.protected)
    if protected is not None:
        raise PathRefused(f"protected (matches {protected})")
    if not matches(path, rules.scope):
        raise PathRefused(f"outside the scope {list(rules.scope)}")
    return path


def path_problem(root: Path, path: object, rules: Rules,
                 canonical: Canonicalizer | None = None) -> str | None:
    """Why `path` (repo-relative, POSIX, canonical) may not be changed, or None when it may."""
    try:
        judge_path(root, path, rules, canonical=canonical)
    except PathRefused as exc:
        return f"{_label(path)}: {exc.reason}"
    return None


def _label(path: object) -> str:
    return shown(path) if isinstance(path, str) else repr(path)


def _ignored_problems(root: Path, paths: Iterable[str]) -> list[str]:
    ignored = ignored_paths(root, list(paths))
    return [f"{p}: ignored by git (a .gitignore rule), so it could not be committed and the run "
            "would not measure the commit" for p in sorted(ignored)]


def _untracked_deletions(root: Path, paths: list[str]) -> list[str]:
    untracked = sorted(set(paths) - tracked_among(root, paths))
    return [f"{p}: not a file git tracks, so there is nothing to delete in a commit"
            for p in untracked]


def check_edits(root: Path, edits: Mapping[str, str | None], rules: Rules) -> list[str]:
    """Every reason the proposed edits may not be applied (empty when they may)."""
    problems: list[str] = []
    if len(edits) > rules.max_files:
        problems.append(f"{len(edits)} files changed; at most {rules.max_files} per proposal")
    canonical = Canonicalizer(root)
    written: list[str] = []
    deleted: list[str] = []
    for path, content in edits.items():
        problem = path_problem(root, path, rules, canonical)
        if problem is None and content is not None:
            problem = _content_problem(root, path, content, rules)
            written.append(path)
        elif problem is None:
            deleted.append(path)
        if problem:
            problems.append(problem)
    if not problems:
        # Both would fail the commit (`git add` refuses them) after the files were touched.
        problems += _ignored_problems(root, written) + _untracked_deletions(root, deleted)
    return problems


def _content_problem(root: Path, path: str, content: object, rules: Rules) -> str | None:
    try:
        before = (root / path).read_bytes()
    except OSError:
        before = None
    old = before.decode("utf-8", errors="replace") if before is not None else None
    problem = text_problem(content, old)
    if problem:
        return f"{path}: {problem}"
    assert isinstance(content, str)
    size = len(content.encode("utf-8"))
    if size > rules.max_file_bytes:
        return f"{path}: {size} bytes exceeds {rules.max_file_bytes}"
    return None


def check_changed_paths(root: Path, paths: Iterable[str], rules: Rules) -> list[str]:
    """The same rules for a change already made in a worktree (coding agents): the paths come
    from git, and each changed file's bytes must be text unless the file was binary before."""
    paths = list(paths)
    problems: list[str] = []
    if len(paths) > rules.max_files:
        problems.append(f"{len(paths)} files changed; at most {rules.max_files} per proposal")
    canonical = Canonicalizer(root)
    for path in paths:
        problem = path_problem(root, path, rules, canonical)
        full = root / path
        if problem is None and full.is_file() and full.lstat().st_nlink > 1:
            # A hard link shares its inode with another file, a protected one maybe: git would
            # commit a copy, but the run fence's read-only mark and stamps would land on both.
            problem = (f"{path}: a hard link to another file; write a file of its own (a copy) "
                       "instead")
        elif problem is None and full.is_file():
            size = full.stat().st_size
            if size > rules.max_file_bytes:
                problem = f"{path}: {size} bytes exceeds {rules.max_file_bytes}"
            else:
                content = bytes_problem(full.read_bytes(), blob_at(root, "HEAD", path))
                problem = f"{path}: {content}" if content else None
        if problem:
            problems.append(problem)
    return problems


def clean_proposal_text(proposal: Proposal) -> None:
    """Make a proposal's prose safe to record (the ledger, the commit message): a proposer's
    hypothesis and rationale are untrusted text, cleaned rather than refused (`clean_prose`)."""
    proposal.hypothesis = clean_prose(proposal.hypothesis)
    proposal.rationale = clean_prose(proposal.rationale)


def apply_edits(root: Path, edits: Mapping[str, str | None]) -> None:
    """Write checked edits into the worktree (None deletes the file)."""
    for path, content in edits.items():
        target = root / path
        if content is None:
            target.unlink(missing_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        # A plain write is enough: an interrupted write is undone when the worktree is reset.
        target.write_text(content, encoding="utf-8")


# --- the protected files around a run ------------------------------------------------------


def hash_files(root: Path, paths: Iterable[str]) -> dict[str, str]:
    """sha256 of each existing file ("<missing>" for absent ones)."""
    out: dict[str, str] = {}
    for path in paths:
        target = root / path
        try:
            out[path] = hashlib.sha256(target.read_bytes()).hexdigest()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            out[path] = "<missing>"
    return out


def protected_changes(root: Path, expected: Mapping[str, str]) -> list[str]:
    """Protected files whose content no longer matches the hashes taken at session start."""
    now = hash_files(root, expected)
    return sorted(p for p, digest in expected.items() if now[p] != digest)


@dataclass
class Fence:
    """What a fenced run did to the protected files: one phrase per file it touched (filled when
    the fence closes; empty when nothing was touched)."""

    changes: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)  # the files the changes name

    @property
    def tampered(self) -> bool:
        return bool(self.changes)


@contextmanager
def protected_fence(worktree: Path, expected: Mapping[str, str]) -> Iterator[Fence]:
    """Fence the protected files of `worktree` (path -> sha256 at session start) for one run.

    Before: the files must still hash as at the session start, and are made read-only, then
    stamped and hashed. After (whatever ended the run, an interrupt included): stamped and hashed
    again, modes restored. Any difference is reported in the yielded `Fence.changes`; the caller
    decides whose fault it is and restores the files from git.
    """
    fence = Fence()
    before_hashes = hash_files(worktree, expected)
    modes: dict[str, int] = {}
    for path in expected:
        full = worktree / path
        try:
            st = full.lstat()
            if stat.S_ISREG(st.st_mode):
                modes[path] = stat.S_IMODE(st.st_mode)
                os.chmod(full, modes[path] & ~0o222)
        except OSError:
            continue
    before = {p: Stamp.of(worktree / p, follow_links=False) for p in expected}  # after the chmod: only the run differs
    try:
        yield fence
    finally:
        after = {p: Stamp.of(worktree / p, follow_links=False) for p in expected}
        after_hashes = hash_files(worktree, expected)
        for path, mode in modes.items():
            full = worktree / path
            try:
                if stat.S_ISREG(full.lstat().st_mode):
                    os.chmod(full, mode)
            except OSError:
                continue
        found = _fence_changes(expected, before_hashes, after_hashes, before, after)
        fence.paths[:] = [path for path, _ in found]
        fence.changes[:] = [f"{path} ({how})" for path, how in found]


def _fence_changes(expected: Mapping[str, str], before_hashes: Mapping[str, str],
                   after_hashes: Mapping[str, str], before: Mapping[str, Stamp | None],
                   after: Mapping[str, Stamp | None]) -> list[tuple[str, str]]:
    """(path, how it changed) for each protected file the run touched."""
    changes: list[tuple[str, str]] = []
    for path in sorted(expected):
        digest = expected[path]
        if before_hashes[path] != digest:
            changes.append((path, "differed from the session's start before the run"))
        elif after_hashes[path] == "<missing>" and digest != "<missing>":
            changes.append((path, "deleted"))
        elif after_hashes[path] != digest:
            changes.append((path, "content changed"))
        elif before[path] != after[path]:
            changes.append((path, _how(before[path], after[path])))
    return changes


def _how(before: Stamp | None, after: Stamp | None) -> str:
    """How a file whose content is back as it was was still touched."""
    if before is None or after is None or before.ino != after.ino:
        return "replaced during the run by a file with the same content"
    if (before.size, before.mtime_ns) != (after.size, after.mtime_ns):
        return "written during the run, then its content put back"
    return "written or chmod-ed during the run, then its content and mtime put back"
