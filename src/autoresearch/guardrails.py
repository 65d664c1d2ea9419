"""Refuse what may not change, in code, before anything is committed.

A proposal is checked path by path: it must stay inside the repository (no absolute paths, no
`..`, nothing under `.git/`, no writing through symlinks), match the scope globs, match no
protected glob, and stay within size limits. Protected files are also hashed when the session
starts, so any change to them — by a proposer, a coding agent, or the verify command itself — is
detected and refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from autoresearch.globs import matches

MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_FILES_PER_PROPOSAL = 100


@dataclass(frozen=True)
class Rules:
    scope: Sequence[str]
    protected: Sequence[str]
    max_file_bytes: int = MAX_FILE_BYTES
    max_files: int = MAX_FILES_PER_PROPOSAL


def path_problem(root: Path, path: str, rules: Rules) -> str | None:
    """Why `path` (repo-relative, POSIX) may not be changed, or None when it may."""
    if not path or "\0" in path or "\\" in path:
        return f"{path!r}: not a plain relative path"
    pure = PurePosixPath(path)
    if pure.is_absolute() or path.startswith("~"):
        return f"{path}: absolute paths are not allowed (paths are relative to the repository)"
    if any(part in ("..", "") for part in path.split("/")) or ".." in pure.parts:
        return f"{path}: escapes the repository (contains '..')"
    if ".git" in pure.parts:
        return f"{path}: git's own files may not be changed"
    if matches(path, rules.protected):
        return f"{path}: protected (matches {_which(path, rules.protected)})"
    if not matches(path, rules.scope):
        return f"{path}: outside the scope {list(rules.scope)}"
    # Symlinks could redirect a write to a protected file or outside the repository.
    target = root / path
    probe = target
    while probe != root and probe != probe.parent:
        if probe.is_symlink():
            return f"{path}: goes through a symlink ({probe.relative_to(root)})"
        probe = probe.parent
    try:
        resolved_parent = target.parent.resolve()
    except OSError:
        return f"{path}: its directory cannot be resolved"
    if resolved_parent != root.resolve() and root.resolve() not in resolved_parent.parents:
        return f"{path}: resolves outside the repository"
    return None


def _which(path: str, patterns: Iterable[str]) -> str:
    return next((p for p in patterns if matches(path, [p])), "?")


def check_edits(root: Path, edits: Mapping[str, str | None], rules: Rules) -> list[str]:
    """Every reason the proposed edits may not be applied (empty when they may)."""
    problems: list[str] = []
    if len(edits) > rules.max_files:
        problems.append(f"{len(edits)} files changed; at most {rules.max_files} per proposal")
    for path, content in edits.items():
        problem = path_problem(root, path, rules)
        if problem:
            problems.append(problem)
        elif content is not None and len(content.encode("utf-8")) > rules.max_file_bytes:
            problems.append(f"{path}: {len(content.encode())} bytes exceeds {rules.max_file_bytes}")
    return problems


def check_changed_paths(root: Path, paths: Iterable[str], rules: Rules) -> list[str]:
    """The same rules for a change already made in a worktree (coding agents)."""
    paths = list(paths)
    problems: list[str] = []
    if len(paths) > rules.max_files:
        problems.append(f"{len(paths)} files changed; at most {rules.max_files} per proposal")
    for path in paths:
        problem = path_problem(root, path, rules)
        if problem is None and (root / path).is_file():
            size = (root / path).stat().st_size
            if size > rules.max_file_bytes:
                problem = f"{path}: {size} bytes exceeds {rules.max_file_bytes}"
        if problem:
            problems.append(problem)
    return problems


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


def hash_files(root: Path, paths: Iterable[str]) -> dict[str, str]:
    """sha256 of each existing file ("<missing>" for absent ones)."""
    out: dict[str, str] = {}
    for path in paths:
        target = root / path
        try:
            out[path] = hashlib.sha256(target.read_bytes()).hexdigest()
        except (FileNotFoundError, IsADirectoryError):
            out[path] = "<missing>"
    return out


def protected_changes(root: Path, expected: Mapping[str, str]) -> list[str]:
    """Protected files whose content no longer matches the hashes taken at session start."""
    now = hash_files(root, expected)
    return sorted(p for p, digest in expected.items() if now[p] != digest)
