"""The files tune looks at: those the scope selects, and among them those holding a marker.

Both knob discovery and the messages about markers no knob is made of scan the same files the
same way; keeping the scan in one place keeps them agreeing on which files were read (and on a
file that is not UTF-8, which neither can read).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from autoresearch.globs import select

# Marker files larger than this are data, not code; scanning them would cost every experiment.
_MAX_SCAN_BYTES = 2_000_000


def in_scope_files(root: Path, scope: Sequence[str]) -> list[str]:
    """The files under `root` that the scope globs select: git's list, else a directory walk."""
    from autoresearch import gitops  # local: config imports this module
    from autoresearch.gitops.runner import GitError

    try:
        return select(gitops.tracked_files(root), scope)
    except (GitError, OSError):
        pass  # not a git checkout (tests, exported trees)
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]  # .git, .autoresearch, .venv
        rel = Path(dirpath).relative_to(root)
        found += [(rel / f).as_posix() for f in filenames]
    return select(found, scope)


def files_with_markers(root: Path, files: Sequence[str]) -> Iterator[tuple[str, str | None]]:
    """(file, text) of each in-scope file small and readable enough to hold a `# knob:` marker,
    and that mentions one; the text None when the file is not UTF-8 (a Latin-1 source file: its
    markers can be neither read nor rewritten, and saying only "no marker" would be untrue)."""
    for rel in files:
        path = root / rel
        try:
            if not path.is_file() or path.stat().st_size > _MAX_SCAN_BYTES:
                continue
            data = path.read_bytes()  # exact: no universal newlines (see read_text)
        except OSError:
            continue  # unreadable files cannot hold markers
        if b"knob:" not in data:
            continue
        try:
            text: str | None = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        yield rel, text


def texts_with_markers(root: Path, files: Sequence[str]) -> Iterator[tuple[str, str]]:
    """(file, text) of each in-scope UTF-8 file that mentions a `# knob:` marker."""
    for rel, text in files_with_markers(root, files):
        if text is not None:
            yield rel, text
