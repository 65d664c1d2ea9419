"""What git says about a working tree's paths: which changed, which it ignores, which it tracks.
The guardrails and the proposers judge a change by these; `readiness` asks whether the user's
checkout is clean."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from autoresearch.gitops.runner import GitError, decode_names, git, git_names, run_git


def dirty_tracked_files(root: Path) -> list[str]:
    """Tracked files with uncommitted changes (untracked files don't make a tree dirty here)."""
    out = git(root, "status", "--porcelain", "--untracked-files=no")
    return [line[3:] for line in out.splitlines() if line.strip()]


def porcelain_entries(fields: Iterable[str]) -> Iterator[tuple[str, str, str | None]]:
    """(code, path, source) of each entry of `git status --porcelain=v1 -z` output, given as its
    NUL-separated fields: `source` is a rename's or copy's original path (the field after its
    entry), else None."""
    entries = iter(fields)
    for entry in entries:
        if len(entry) < 4:
            continue
        code, path = entry[:2], entry[3:]
        yield code, path, next(entries, None) if "R" in code or "C" in code else None


def changed_paths(worktree: Path) -> list[str]:
    """Every path that differs from HEAD in the worktree, untracked ones included."""
    paths: list[str] = []
    for _, path, source in porcelain_entries(git_names(
            worktree, "status", "--porcelain", "-z", "--untracked-files=all")):
        paths += [path] if source is None else [path, source]
    return paths


def ignored_paths(cwd: Path, paths: list[str]) -> set[str]:
    """The paths among `paths` that git ignores (tracked files never are)."""
    if not paths:
        return set()
    data = b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in paths)
    # check-ignore takes file names, not pathspecs, and refuses the literal-pathspec setting.
    proc = run_git(cwd, "check-ignore", "-z", "--stdin", input_bytes=data,
                   unset=("GIT_LITERAL_PATHSPECS",))
    stderr = proc.stderr.decode("utf-8", "replace")
    if proc.returncode == 128 and "not a git repository" in stderr:
        return set()  # a plain directory has no ignore rules
    if proc.returncode not in (0, 1):  # 1: none is ignored
        raise GitError(["check-ignore"], proc.returncode, stderr, where=str(cwd))
    return set(decode_names(proc.stdout))


def tracked_among(cwd: Path, paths: list[str]) -> set[str]:
    """The paths among `paths` that the index tracks (all of them outside a git repository)."""
    if not paths:
        return set()
    proc = run_git(cwd, "ls-files", "-z", "--", *paths)
    stderr = proc.stderr.decode("utf-8", "replace")
    if proc.returncode == 128 and "not a git repository" in stderr:
        return set(paths)
    if proc.returncode != 0:
        raise GitError(["ls-files"], proc.returncode, stderr, where=str(cwd))
    return set(decode_names(proc.stdout))
