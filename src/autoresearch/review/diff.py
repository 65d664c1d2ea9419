"""A unified diff as the review needs it: per file, the head lines the change adds or modifies.

Parsing is `unidiff`'s; this module keeps what the reviewers use: the added lines (head line
numbers: only these get inline findings), the removed lines (base line numbers: the history
reviewer blames them), and each hunk's head-side span (a GitHub inline comment must sit inside
one). It also rebuilds one side of a file from the other, for `--diff FILE` reviews whose patch
is not (or is already) applied to the working tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from unidiff.errors import UnidiffParseError
from unidiff.patch import PatchedFile, PatchSet

from autoresearch.errors import AutoresearchError

Status = Literal["added", "modified", "deleted", "renamed"]


@dataclass(frozen=True)
class Hunk:
    old_start: int
    old_length: int
    new_start: int
    new_length: int
    added: tuple[int, ...]  # head line numbers added in this hunk
    removed: tuple[int, ...]  # base line numbers removed in this hunk

    @property
    def new_span(self) -> range:
        """The head lines a comment on this hunk may cover (context lines included)."""
        return range(self.new_start, self.new_start + self.new_length)


@dataclass(frozen=True)
class ChangedFile:
    path: str  # the head path ("" never: a deleted file keeps its old path here)
    old_path: str | None  # None for an added file
    status: Status
    binary: bool
    hunks: tuple[Hunk, ...]
    patch: str = field(default="", repr=False, compare=False)  # this file's part of the diff
    # A symbolic link on the head side: its "content" is the target's name, not code.
    symlink: bool = False

    @property
    def added(self) -> frozenset[int]:
        return frozenset(n for h in self.hunks for n in h.added)

    @property
    def removed(self) -> frozenset[int]:
        return frozenset(n for h in self.hunks for n in h.removed)

    @property
    def lines_added(self) -> int:
        return sum(len(h.added) for h in self.hunks)

    @property
    def lines_removed(self) -> int:
        return sum(len(h.removed) for h in self.hunks)

    def hunk_at(self, line: int) -> Hunk | None:
        for h in self.hunks:
            if line in h.new_span:
                return h
        return None


_C_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


def _unquote(name: str) -> str:
    """A path as git wrote it, unquoted: git puts a name holding a byte >= 0x80 (any non-ASCII
    name, `é.py` too, unless core.quotePath is off), a tab, a newline or a quote in double
    quotes with C escapes (`"b/caf\\303\\251.py"`); left quoted, the file could not be read and
    its reviewers would see nothing. Bytes that are not UTF-8 are replaced: such a file cannot
    be read back by name, and is reviewed from its diff alone."""
    if len(name) < 2 or not (name.startswith('"') and name.endswith('"')):
        return name
    out = bytearray()
    body, i = name[1:-1], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            octal = body[i + 1:i + 4]
            if len(octal) == 3 and all(c in "01234567" for c in octal):
                out.append(int(octal, 8) & 0xFF)
                i += 4
                continue
            if nxt in _C_ESCAPES:
                out.append(_C_ESCAPES[nxt])
                i += 2
                continue
        out.extend(ch.encode("utf-8"))
        i += 1
    return out.decode("utf-8", errors="replace")


def strip_prefix(name: str) -> str:
    """A path of a diff header as the repository names it: unquoted, without `a/` or `b/`."""
    name = _unquote(name)
    for prefix in ("a/", "b/"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


SYMLINK_MODE = "120000"


def _head_is_symlink(pf: PatchedFile) -> bool:
    """Whether git's extended header says the head side is a symbolic link: `new file mode
    120000`, `new mode 120000` (a type change), or an `index a..b 120000` line (a link whose
    target changed)."""
    for line in pf.patch_info or ():
        words = str(line).split()
        names_head_mode = words[:3] == ["new", "file", "mode"] or words[:2] == ["new", "mode"] \
            or (words[:1] == ["index"] and len(words) == 3)
        if names_head_mode and words[-1] == SYMLINK_MODE:
            return True
    return False


def _changed_file(pf: PatchedFile) -> ChangedFile:
    source, target = pf.source_file or "", pf.target_file or ""
    if pf.is_added_file:
        status: Status = "added"
    elif pf.is_removed_file:
        status = "deleted"
    elif pf.is_rename or (strip_prefix(source) != strip_prefix(target) and source != "/dev/null"):
        status = "renamed"
    else:
        status = "modified"
    old = None if status == "added" else strip_prefix(source)
    new = strip_prefix(source) if status == "deleted" else (strip_prefix(target) if target else pf.path)
    hunks = tuple(
        Hunk(
            old_start=h.source_start, old_length=h.source_length,
            new_start=h.target_start, new_length=h.target_length,
            added=tuple(ln.target_line_no for ln in h if ln.is_added and ln.target_line_no),
            removed=tuple(ln.source_line_no for ln in h if ln.is_removed and ln.source_line_no),
        )
        for h in pf
    )
    return ChangedFile(path=new, old_path=old, status=status, binary=pf.is_binary_file,
                       hunks=hunks, patch=str(pf), symlink=_head_is_symlink(pf))


def parse_diff(text: str, where: str = "the diff") -> tuple[list[ChangedFile], dict[str, PatchedFile]]:
    """The files of a unified diff, and unidiff's own objects by head path (to rebuild a side)."""
    try:
        patch = PatchSet(text)
    except UnidiffParseError as exc:
        raise AutoresearchError(
            f"cannot read the diff: {exc}", where=where,
            fix="pass a unified diff, e.g. from `git diff base...head > change.diff`",
        ) from None
    files: list[ChangedFile] = []
    raw: dict[str, PatchedFile] = {}
    for pf in patch:
        changed = _changed_file(pf)
        files.append(changed)
        raw[changed.path] = pf
    return files, raw


class DiffMismatch(Exception):
    """The text does not match the side of the diff it was given as."""


def rebuild(text: str | None, pf: PatchedFile, *, forward: bool) -> str:
    """Apply the file's hunks to `text` (the base, forward) or undo them (the head, backward).

    Every context and removed (or added, backward) line must match exactly, so a diff that does
    not belong to this text raises `DiffMismatch` instead of producing a plausible wrong file.
    """
    lines = (text or "").splitlines(keepends=True)
    out: list[str] = []
    pos = 0  # index into `lines`
    for h in pf:
        start = (h.source_start if forward else h.target_start) - 1
        start = max(start, 0)
        if start < pos or start > len(lines):
            raise DiffMismatch(f"hunk at line {start + 1} is outside the file")
        out.extend(lines[pos:start])
        pos = start
        for ln in h:
            keep_side = ln.is_context or (ln.is_removed if forward else ln.is_added)
            new_side = ln.is_context or (ln.is_added if forward else ln.is_removed)
            if keep_side:
                if pos >= len(lines) or lines[pos].rstrip("\r\n") != ln.value.rstrip("\r\n"):
                    raise DiffMismatch(f"line {pos + 1} differs from the diff")
                pos += 1
            if new_side:
                out.append(ln.value)
    out.extend(lines[pos:])
    return "".join(out)


def matches_side(text: str | None, changed: ChangedFile, pf: PatchedFile, *, head: bool) -> bool:
    """Whether `text` holds the diff's head side (head=True) or base side at the hunks' lines."""
    try:
        rebuild(text, pf, forward=not head)
    except DiffMismatch:
        return False
    return True
