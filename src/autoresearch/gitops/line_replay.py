"""A parallel winner's change made again line for line on a newer incumbent, where git's merge
reports a conflict only because the keep changed lines next to the winner's.

Git's merge counts changes to adjacent lines as a conflict: two parallel winners that set
neighbouring knobs (`LR = …` on one line, `WARM = …` two lines down, the keep between them on
`MOM = …`) could never stack. Here each hunk of the winner's change (its commit against its
parent, without context) must replace lines, and it goes exactly where those lines are now:
not found by searching for them (`x = 1` twice in a file, and a search picks either), but
followed through the keep's own change (the same parent against the incumbent): the lines the
keep inserted or removed above it move it, and a keep hunk that touches its lines, or inserts
between them, is a conflict. At that place the lines must be the ones it replaces, byte for byte.
A pure insertion has no lines of its own to check and is left to git's merge, as are files made,
removed, renamed or binary. The caller measures the replayed commit again before any keep.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autoresearch.gitops.history import blob_at
from autoresearch.gitops.runner import git, git_names, run_git

# A hunk header of a diff without context: `@@ -start[,count] +start[,count] @@`.
_HEADER = re.compile(rb"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
# What only git's merge may replay: files made, removed, renamed, copied, binary or re-moded.
_NOT_LINES = re.compile(rb"^(?:new file|deleted file|rename from|copy from|old mode|"
                        rb"Binary files|GIT binary patch)", re.MULTILINE)


@dataclass(frozen=True)
class Hunk:
    """One change of a file: `old` lines (with their line ends) replaced by `new` ones. `start`
    is the first old line (1-based), or for an insertion (no old lines) the line it follows."""

    start: int
    old: tuple[bytes, ...]
    new: tuple[bytes, ...]


def replay_lines(worktree: Path, commit: str, onto: str) -> dict[str, bytes] | None:
    """The files of `onto` with `commit`'s change made on them hunk by hunk (path -> content),
    or None when it cannot be placed exactly (see the module's docstring)."""
    parent = f"{commit}^"
    out: dict[str, bytes] = {}
    for path in git_names(worktree, "diff", "--name-only", "--no-renames", "-z", parent, commit):
        mine, theirs = _hunks(worktree, parent, commit, path), _hunks(worktree, parent, onto,
                                                                       path)
        current = blob_at(worktree, onto, path)
        if mine is None or theirs is None or current is None or not mine:
            return None
        if any(not h.old for h in mine):
            return None  # an insertion: nothing of its own to anchor it
        placed = _placed(mine, theirs)
        replayed = None if placed is None else _apply(_lines(current), placed)
        if replayed is None:
            return None
        out[path] = replayed
    return out or None


def _hunks(cwd: Path, a: str, b: str, path: str) -> list[Hunk] | None:
    """The hunks of `path` from `a` to `b` without context; None when they are not line changes
    of a file both have (see `_NOT_LINES`)."""
    diff = run_git(cwd, "diff", "-U0", "--no-color", "--no-ext-diff", "--no-textconv",
                   "--no-renames", "--full-index", a, b, "--", path)
    if diff.returncode != 0 or _NOT_LINES.search(diff.stdout):
        return None
    return _parse(diff.stdout.split(b"\n"))


def _parse(lines: Sequence[bytes]) -> list[Hunk] | None:
    hunks: list[Hunk] = []
    i = 0
    while i < len(lines):
        header = _HEADER.match(lines[i])
        i += 1
        if header is None:
            continue  # the file's header lines, before its first hunk
        start = int(header.group(1))
        counts = [int(header.group(n)) if header.group(n) is not None else 1 for n in (2, 4)]
        sides: tuple[list[bytes], list[bytes]] = ([], [])
        last: list[bytes] | None = None
        # Exactly as many lines as the header counts: a removed line that reads `-- x` shows
        # as `--- x`, which must not be taken for anything but content.
        while len(sides[0]) < counts[0] or len(sides[1]) < counts[1] or (
                i < len(lines) and lines[i].startswith(b"\\")):
            if i >= len(lines):
                return None
            line = lines[i]
            i += 1
            if line.startswith(b"\\"):  # "\ No newline at end of file": the line before
                if last:
                    last[-1] = last[-1].removesuffix(b"\n")
                continue
            side = sides[0] if line.startswith(b"-") else sides[1] if line.startswith(b"+") \
                else None
            if side is None:
                return None
            side.append(line[1:] + b"\n")
            last = side
        hunks.append(Hunk(start, tuple(sides[0]), tuple(sides[1])))
    return hunks


def _placed(mine: list[Hunk], theirs: list[Hunk]) -> list[tuple[int, Hunk]] | None:
    """Where each of `mine` starts in the incumbent, followed through `theirs` (the keep's hunks
    of the same file from the same parent); None when one of theirs touches its lines."""
    placed = []
    for hunk in mine:
        first, last = hunk.start, hunk.start + len(hunk.old) - 1
        shift = 0
        for keep in theirs:
            if keep.old:
                keep_last = keep.start + len(keep.old) - 1
                if keep_last < first:
                    shift += len(keep.new) - len(keep.old)
                elif keep.start <= last:
                    return None  # the keep changed one of its lines
            elif keep.start < first:
                shift += len(keep.new)  # inserted above it
            elif keep.start < last:
                return None  # inserted between its lines
        placed.append((first + shift, hunk))
    return placed


def _lines(data: bytes) -> list[bytes]:
    """A file's lines with their ends (the last one without, when the file has none)."""
    return re.findall(rb"[^\n]*\n|[^\n]+\Z", data)


def _apply(lines: list[bytes], placed: list[tuple[int, Hunk]]) -> bytes | None:
    for start, hunk in sorted(placed, key=lambda p: p[0], reverse=True):
        at = start - 1
        if at < 0 or tuple(lines[at:at + len(hunk.old)]) != hunk.old:
            return None  # not the lines it replaces
        lines[at:at + len(hunk.old)] = hunk.new
    return b"".join(lines)


def write_replayed(worktree: Path, files: dict[str, bytes]) -> list[str]:
    """Write the replayed files into the worktree (which holds the incumbent) and stage them."""
    for path, data in files.items():
        (worktree / path).write_bytes(data)
    paths = sorted(files)
    git(worktree, "add", "--", *paths)
    return paths
