"""One canonical form for every repo-relative path, before any rule judges it.

Scope, protected and ignored rules are globs over text, so they are only as good as the text
they are given: `src/./metric.py`, `src//metric.py`, `SRC/Metric.py` on a case-insensitive file
system, `métric.py` spelled NFD on one that ignores Unicode normalization, or `src/alias/metric.py`
through a symlinked directory all name the file `src/metric.py` while matching none of its globs.
So every path that enters the harness (a model's edit block, an agent's change read from git, a
repair, a knob file) goes through `canonical_path` first, and the rules see only what it returns.

What is normalized, because it cannot hide anything: `.` segments, repeated slashes and a
trailing slash (`src/./a.py` is `src/a.py`). Callers that must receive the exact canonical text
(the guardrails, which judge what will be written and committed) pass `exact=True`, and then
even these are refused, naming the form to use.

What is refused, because the name on disk would differ from the name judged:
- anything that is not a plain relative path: empty, absolute (`/x`, `~`, `C:`), a backslash (a
  separator on Windows), `..`, or a segment `.git` (git's own files, in any case);
- characters that are not plain text in a path: lone surrogates (bytes that are not UTF-8),
  control and invisible format characters, and non-ASCII spaces;
- an alias of an existing name: a segment the file system resolves although the directory lists
  no entry spelled exactly so (case-insensitive or normalization-insensitive file systems), or
  one that differs from an existing entry only by case or Unicode form (a twin that would alias
  it on such a file system); a new segment not in Unicode NFC form;
- any symlink on the way, the last segment included: a write through it would land somewhere
  the rules did not judge (outside the repository, in `.git`, on a protected file);
- a directory or special file where a file is named, or a file where a directory is.

`shown` renders a path (or any text a proposer supplied) safely for messages, logs and the ledger.
"""

from __future__ import annotations

import os
import re
import stat
import unicodedata
from pathlib import Path

MAX_SEGMENT_BYTES = 255  # NAME_MAX on Linux and macOS
MAX_PATH_BYTES = 4096  # PATH_MAX on Linux

_DRIVE = re.compile(r"^[A-Za-z]:")
# Unicode categories that have no business in a file name: controls, invisible format characters
# (zero-width and bidirectional marks), line/paragraph separators, private use, unassigned.
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


class PathRefused(Exception):
    """A path that may not be used (or read for a model), with the rule it broke."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def shown(text: str) -> str:
    """`text` as it may be printed, logged or stored: escaped when it is not plain text.

    A proposer's text can hold lone surrogates (which neither SQLite nor JSON encoders accept) or
    control characters (which would garble a terminal); those come back as a Python literal.
    """
    if all(ch.isprintable() and not 0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        return text
    return ascii(text)


def fold(name: str) -> str:
    """The form under which two names may be the same file on some file system."""
    return unicodedata.normalize("NFC", name).casefold()


def _char_problem(raw: str) -> str | None:
    for ch in raw:
        code = ord(ch)
        if 0xD800 <= code <= 0xDFFF:
            return f"is not valid UTF-8 (it holds the lone surrogate U+{code:04X})"
        category = unicodedata.category(ch)
        if category in _BAD_CATEGORIES or (category == "Zs" and ch != " "):
            return (f"contains U+{code:04X} ({unicodedata.name(ch, 'a control character')}), "
                    "which a file name must not hold")
    return None


def _segments(raw: object) -> list[str]:
    """The lexical segments of a proposed path; PathRefused when it is not a plain relative one."""
    if not isinstance(raw, str):
        raise PathRefused(f"is not a path (a {type(raw).__name__})")
    if not raw:
        raise PathRefused("is empty")
    problem = _char_problem(raw)
    if problem:
        raise PathRefused(problem)
    if "\\" in raw:
        raise PathRefused("contains a backslash (paths use '/'; on Windows a backslash is a "
                          "separator, so the name is ambiguous)")
    if raw.startswith(("/", "~")) or _DRIVE.match(raw):
        raise PathRefused("is absolute (paths are relative to the repository)")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PathRefused("escapes the repository (contains '..')")
    if not parts:
        raise PathRefused("names the repository itself, not a file")
    if any(fold(p) == ".git" for p in parts):
        raise PathRefused("is inside .git (git's own files may not be changed)")
    if any(len(p.encode()) > MAX_SEGMENT_BYTES for p in parts) or len(raw.encode()) > MAX_PATH_BYTES:
        raise PathRefused("is too long for a file name")
    return parts


class Canonicalizer:
    """Canonical paths under one root; directory listings are cached for the object's lifetime,
    so make one per batch of paths (a proposal, a prompt), not one per session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._listings: dict[Path, set[str] | None] = {}

    def __call__(self, raw: object, *, exact: bool = False) -> str:
        return self.canonical(raw, exact=exact)

    def canonical(self, raw: object, *, exact: bool = False) -> str:
        """The canonical repo-relative POSIX form of `raw`; PathRefused saying why there is none.

        With `exact`, a path whose text differs from its canonical form (`./a.py`, `a//b.py`)
        is refused too, naming the form to use.
        """
        parts = _segments(raw)
        canonical = "/".join(parts)
        if exact and canonical != raw:
            raise PathRefused(f"is not in canonical form (write it as {canonical})")
        self._check_on_disk(parts)
        return canonical

    def _listing(self, directory: Path) -> set[str] | None:
        if directory not in self._listings:
            try:
                self._listings[directory] = set(os.listdir(directory))
            except OSError:
                self._listings[directory] = None
        return self._listings[directory]

    def _check_on_disk(self, parts: list[str]) -> None:
        """Walk the path segment by segment, refusing aliases, symlinks and type mismatches."""
        current = self.root
        for i, name in enumerate(parts):
            here = "/".join(parts[: i + 1])
            last = i == len(parts) - 1
            entries = self._listing(current)
            if entries is None:
                return  # current does not exist: everything below it is new
            if name not in entries:
                twin = next((e for e in sorted(entries) if fold(e) == fold(name)), None)
                if twin is not None or os.path.lexists(current / name):
                    spelled = "/".join([*parts[:i], twin]) if twin else "another name"
                    raise PathRefused(
                        f"names {here} under another spelling of {spelled} (case or Unicode "
                        "form differs); use the exact name of the existing file")
                if unicodedata.normalize("NFC", name) != name:
                    raise PathRefused(f"is not in Unicode NFC form ({here})")
                return  # a new name: nothing below it exists
            try:
                mode = os.lstat(current / name).st_mode
            except OSError:
                return  # vanished meanwhile: treat as new
            if stat.S_ISLNK(mode):
                raise PathRefused(
                    f"goes through the symlink {here}: symlinks are never followed, since a "
                    "write through one lands on a file the rules did not judge (name the file "
                    "itself)")
            if not last and not stat.S_ISDIR(mode):
                raise PathRefused(f"treats {here} as a directory, but it is a file")
            if last and stat.S_ISDIR(mode):
                raise PathRefused("is a directory, not a file")
            if last and not stat.S_ISREG(mode):
                raise PathRefused("is not a regular file")
            current = current / name


def canonical_path(raw: object, root: Path | None = None, *, exact: bool = False) -> str:
    """The canonical form of one repo-relative path (see the module docstring).

    Without `root`, only the lexical checks apply (the path is judged as text); with it, the
    file system under `root` is consulted for aliases, symlinks and types.
    """
    if root is None:
        parts = _segments(raw)
        canonical = "/".join(parts)
        if exact and canonical != raw:
            raise PathRefused(f"is not in canonical form (write it as {canonical})")
        return canonical
    return Canonicalizer(root).canonical(raw, exact=exact)
