"""A `--diff FILE` read line by line, each file's part kept only while it stays under the limit.

A revision range names a file over `MAX_DIFF_LINES` changed lines from git's counts and never
reads its diff; a diff file has no such counts, so it is read as a stream of lines, split at
each file's header (`diff --git`, or the `--- ` line of a plain unified diff outside a hunk),
and a file's lines are kept until its changed lines pass the limit: then they are dropped and
the rest of that file is only counted. Memory is bounded by the biggest file under the limit,
not by the size of the diff (a 50 MB diff of one generated file would otherwise be parsed whole,
gigabytes of unidiff objects).

Inside a hunk the header's line counts say where it ends, as unidiff reads it, so a removed
line that starts with `-- ` is not taken for the next file's header.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from autoresearch.review.diff import ChangedFile, Status, strip_prefix

_HUNK = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")
_GIT_HEADER = re.compile(r'^diff --git (?:"?a/.*?"? )"?b/(.*?)"?$')


@dataclass
class _Part:
    """One file's part of the diff, as far as it has been read."""

    lines: list[str] = field(default_factory=list)
    git: bool = False  # begun by `diff --git` (its `--- ` line is still to come)
    seen_minus: bool = False
    changed: int = 0
    old: str | None = None  # from the `--- ` / `+++ ` lines ("/dev/null" kept as is)
    new: str | None = None
    git_path: str | None = None
    renamed: bool = False
    added: bool = False
    deleted: bool = False

    def note(self, line: str) -> None:
        """Learn the file's names and status from a header line."""
        if line.startswith("--- ") and self.old is None:
            self.old = line[4:].rstrip("\r\n").split("\t")[0]
        elif line.startswith("+++ ") and self.new is None:
            self.new = line[4:].rstrip("\r\n").split("\t")[0]
        elif line.startswith("rename to ") or line.startswith("rename from "):
            self.renamed = True
        elif line.startswith("new file mode"):
            self.added = True
        elif line.startswith("deleted file mode"):
            self.deleted = True

    def as_file(self) -> ChangedFile:
        """What the review says of a file it did not read: its path and status."""
        added = self.added or self.old == "/dev/null"
        deleted = self.deleted or self.new == "/dev/null"
        new = self.new if self.new and self.new != "/dev/null" else None
        old = self.old if self.old and self.old != "/dev/null" else None
        path = strip_prefix(new or old or self.git_path or "?")
        old_path = None if added else strip_prefix(old or path)
        status: Status = ("added" if added else "deleted" if deleted
                          else "renamed" if self.renamed or old_path != path else "modified")
        return ChangedFile(path=path, old_path=old_path, status=status, binary=False, hunks=())


@dataclass
class ReadDiff:
    text: str  # the diff without the files over the limit
    oversized: list[tuple[ChangedFile, int]]  # those files, and their changed lines


def read_diff(lines: Iterable[str], limit: int) -> ReadDiff:
    """Split `lines` (a unified diff) by file, keeping the parts of files of at most `limit`
    changed lines; the others are counted, named and dropped."""
    kept: list[str] = []
    oversized: list[tuple[ChangedFile, int]] = []
    part = _Part()
    old_left = new_left = 0  # lines of the current hunk still to come

    def close(p: _Part) -> None:
        if p.changed > limit:
            oversized.append((p.as_file(), p.changed))
        else:
            kept.extend(p.lines)

    for line in lines:
        if old_left > 0 or new_left > 0:  # inside a hunk
            head = line[:1]
            if head == "+":
                new_left -= 1
                part.changed += 1
            elif head == "-":
                old_left -= 1
                part.changed += 1
            elif head in (" ", "\n", "\r", ""):
                old_left -= 1
                new_left -= 1
            if part.changed <= limit:
                part.lines.append(line)
            elif part.lines:
                part.lines = []  # over the limit: from now on only counted
            continue
        starts_file = line.startswith("diff --git ") or (
            line.startswith("--- ") and not (part.git and not part.seen_minus))
        if starts_file:
            close(part)
            part = _Part(git=line.startswith("diff --git "))
            if part.git:
                found = _GIT_HEADER.match(line.rstrip("\r\n"))
                part.git_path = found.group(1) if found else None
        if line.startswith("--- "):
            part.seen_minus = True
        hunk = _HUNK.match(line)
        if hunk:
            old_left = int(hunk.group(1)) if hunk.group(1) is not None else 1
            new_left = int(hunk.group(2)) if hunk.group(2) is not None else 1
        else:
            part.note(line)
        if part.changed <= limit:
            part.lines.append(line)
    close(part)
    return ReadDiff("".join(kept), oversized)
