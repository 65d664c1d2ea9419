"""The files `autoresearch review` writes (`--sarif`, `--markdown`, `--github`, `--json`),
checked before the review starts.

They are written last, after every model call has been paid for; a path that cannot be written
found only then would throw the review away with its cost. So each is checked first: all four
behave alike, their missing directories are created when they are written (as `report --out`
creates its directory, and as CI report options commonly do), and a path where that cannot work
(a parent that is a file, a directory without write permission, the path of a directory) is
refused up front, exit 2, naming the option and the directory. Two options naming one file, or
an output naming the diff under review, are refused too: one would overwrite the other.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from autoresearch.errors import AutoresearchError

STDOUT = "-"


class OutputPathError(AutoresearchError):
    """An output option the review could not write to: an invalid option, exit 2."""

    exit_code = 2


def check_output_paths(outputs: Mapping[str, Path | None], diff: str | None) -> None:
    """Refuse, before anything runs, an output path the review could not write or that would
    overwrite another output or the `--diff` file. `outputs`: option name -> path (None: not
    given, `-`: standard output)."""
    claimed: dict[Path, str] = {}
    if diff is not None and diff != STDOUT:
        claimed[_identity(Path(diff))] = "--diff"
    for option, path in outputs.items():
        if path is None or str(path) == STDOUT:
            continue
        problem = _unwritable(path)
        if problem is not None:
            raise OutputPathError(f"{option} {path}: {problem}", where=option,
                                  fix="name a file in a directory you can write to (missing "
                                  "directories are created)")
        same = claimed.get(_identity(path))
        if same is not None:
            raise OutputPathError(
                f"{same} and {option} name the same file {path}: the review would overwrite it",
                where=f"{same} / {option}", fix=f"give {option} a file of its own")
        claimed[_identity(path)] = option


def write_output(path: Path, text: str) -> None:
    """Write one output (`-`: standard output), creating its missing directories."""
    if str(path) == STDOUT:
        sys.stdout.write(text)
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:  # checked before the review, yet the disk may have changed since
        raise AutoresearchError(f"cannot write {path}: {exc.strerror}", where=str(path),
                                fix="choose a writable path") from None


def _identity(path: Path) -> Path:
    """One name per file, whatever spelling and links led to it (the file need not exist)."""
    return Path(os.path.realpath(path))


def _unwritable(path: Path) -> str | None:
    """Why `path` cannot be written, creating its missing directories (None: it can)."""
    if path.is_dir():
        return "is a directory (name a file in it)"
    if path.exists():
        return None if os.access(path, os.W_OK) else "is a file you cannot write to"
    # The nearest directory that exists: the missing ones will be created in it.
    missing: Path | None = None
    parent = path.absolute().parent
    while not parent.exists():
        if parent.is_symlink():
            return f"its directory {parent} is a symbolic link to nothing"
        missing, parent = parent, parent.parent
    if not parent.is_dir():
        return f"{parent} is not a directory, so {missing or path} cannot be created in it"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"the directory {parent} is not writable, so {missing or path} cannot be created"
    return None
