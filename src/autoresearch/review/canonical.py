"""Paths the user gives a review, put in the one form git names a file before anything judges them.

A `--diff` file and the `protected` list are written by people: `./evaluate.py`,
`lib/../evaluate.py`, `src//a.py`, the absolute path of a file in the checkout, or `alias/a.py`
through a symbolic link to `src/` all name a file git calls `evaluate.py` or `src/a.py`, yet
match none of the globs written for that name, so a protected file would reach a model under its
other spelling. Each is therefore made relative to the repository root, its `.` segments and
doubled slashes dropped, `..` and linked directories resolved as the file system resolves them
when the file is opened; only then is it checked (inside the repository, protected, read).

The last segment is kept as written: git stores a symbolic link as a file of its own (its
content is the target's name), so a diff of `link.py` is about the link, not its target.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from autoresearch.globs import normalize_pattern

_GLOB_CHARS = frozenset("*?[")
OUTSIDE = "a path outside the repository"


class NotInRepository(ValueError):
    """A path that names no file of the repository's working tree; `reason` says what it names
    instead ("a path outside the repository")."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def repo_relative(root: Path, path: str) -> str:
    """The repository-relative name (as git writes it) of the file `path` names; relative paths
    are taken from the repository root. NotInRepository when it is not a file of the working
    tree: outside the root (absolute elsewhere, `..` past it, a linked directory that leads out)
    or inside `.git`."""
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if not parts:
        raise NotInRepository("no file")
    real_root = _real(root)
    start = Path("/") if path.startswith("/") else real_root
    *directories, name = parts
    if name == "..":  # the path ends at a directory: nothing is kept as written
        directories, name = parts, ""
    folder = _real(start.joinpath(*directories))
    full = folder / name if name else folder
    if full == real_root:
        raise NotInRepository("the repository itself, not a file")
    if not full.is_relative_to(real_root):
        raise NotInRepository(OUTSIDE)
    relative = full.relative_to(real_root).as_posix()
    # git refuses to track any path with a `.git` segment: its own files are never in a diff.
    if any(part.casefold() == ".git" for part in relative.split("/")):
        raise NotInRepository("a path inside .git (git's own files)")
    return relative


def pattern_forms(root: Path, pattern: str) -> list[str]:
    """The forms of a path glob that match what it names: with `..` resolved, and, when its
    literal leading part goes through a symbolic link that stays in the repository, also
    through the link's target (`alias/*.py` with alias -> src: `src/*.py`); more forms only
    ever protect more. NotInRepository when it can only name paths outside the repository
    (`../x.py`)."""
    text = normalize_pattern(pattern)
    if not text:
        return [pattern]  # matches no file, as written; nothing to resolve
    lexical = posixpath.normpath(text)
    if lexical in (".", "..") or lexical.startswith("../"):
        raise NotInRepository(OUTSIDE)
    forms = [lexical]
    segments = text.split("/")
    literal = 0
    while literal < len(segments) and not _GLOB_CHARS & set(segments[literal]):
        literal += 1
    if literal:
        real_root = _real(root)
        real = _real(real_root.joinpath(*segments[:literal]))
        if real != real_root and real.is_relative_to(real_root):
            through = "/".join([real.relative_to(real_root).as_posix(), *segments[literal:]])
            forms.append(posixpath.normpath(through))
    return list(dict.fromkeys(forms))
