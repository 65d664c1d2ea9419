"""Where report's files go: never over a file report did not write, and each one whole.

"report wrote it" is read from the file itself, never from its times: report.md starts with
`MD_MARK`, report.html with `HTML_HEAD`, progress.png carries `PNG_SOFTWARE` in its `Software`
text chunk (written by matplotlib's savefig(metadata=...)). Anything else of those names (the
user's notes, a symbolic link, a directory, a file it cannot read) is in the way: the whole set is
refused before any file is written, unless --force. Each file is written to a temporary file in
the same directory, then renamed over the old one, so an interrupted report leaves the old file
or the new one, never a truncated one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import struct
from pathlib import Path

from autoresearch.errors import AutoresearchError

# The first line of report.md: an HTML comment, which Markdown renderers do not show.
MD_MARK = "<!-- written by `autoresearch report`, which rewrites this file when it runs again -->"
HTML_GENERATOR = "<meta name='generator' content='autoresearch report'>"
HTML_HEAD = "<!doctype html><html lang='en'><head><meta charset='utf-8'>" + HTML_GENERATOR
PNG_SOFTWARE = "autoresearch report"

PNG_NAME, HTML_NAME, MD_NAME = "progress.png", "report.html", "report.md"
REPORT_NAMES = (PNG_NAME, HTML_NAME, MD_NAME)

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_MAX_CHUNKS = 64  # the text chunks come right after IHDR; a PNG of ours has a handful
_MAX_TEXT = 4096


class ReportError(AutoresearchError):
    """The report cannot be written as asked."""


def _starts_with(path: Path, prefix: str) -> bool:
    head = prefix.encode("utf-8")
    with path.open("rb") as f:
        return f.read(len(head)) == head


def _png_is_ours(path: Path) -> bool:
    """Whether the PNG's `Software` text chunk (before its image data) names report."""
    with path.open("rb") as f:
        if f.read(len(_PNG_MAGIC)) != _PNG_MAGIC:
            return False
        for _ in range(_MAX_CHUNKS):
            header = f.read(8)
            if len(header) < 8:
                return False
            (length,), kind = struct.unpack(">I", header[:4]), header[4:]
            if kind in (b"IDAT", b"IEND"):
                return False
            if kind == b"tEXt" and length <= _MAX_TEXT:
                key, _, value = f.read(length).partition(b"\0")
                if key == b"Software":
                    return value.startswith(PNG_SOFTWARE.encode("ascii"))
                f.seek(4, os.SEEK_CUR)  # the CRC
            else:
                f.seek(length + 4, os.SEEK_CUR)
    return False


def _is_ours(name: str, path: Path) -> bool:
    if name == PNG_NAME:
        return _png_is_ours(path)
    return _starts_with(path, HTML_HEAD if name == HTML_NAME else MD_MARK + "\n")


def not_written_by_report(out: Path) -> list[str]:
    """The files of report's names in `out` that report did not write, each with why."""
    found = []
    for name in REPORT_NAMES:
        path = out / name
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        except NotADirectoryError:
            return []  # `out` is not a directory: making it fails, and says so
        if stat.S_ISLNK(info.st_mode):
            found.append(f"{name} (a symbolic link)")
        elif stat.S_ISDIR(info.st_mode):
            found.append(f"{name} (a directory)")
        elif not stat.S_ISREG(info.st_mode):
            found.append(f"{name} (not a regular file)")
        else:
            try:
                ours = _is_ours(name, path)
            except OSError as exc:
                found.append(f"{name} (unreadable: {exc.strerror})")
                continue
            if not ours:
                found.append(name)
    return found


def refuse_to_overwrite(out: Path, force: bool) -> None:
    """Raise when a file report would write in `out` is not one of report's own (unless force)."""
    if force:
        return
    found = not_written_by_report(out)
    if not found:
        return
    them = "it" if len(found) == 1 else "them"
    raise ReportError(
        f"refusing to overwrite {', '.join(found)}: autoresearch report did not write {them} "
        "(nothing was written)",
        where=str(out),
        fix=f"write the report elsewhere (--out DIR), move {them} aside, or pass --force to "
            f"overwrite {them}")


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` whole or not at all: a temporary file beside it, then a rename.

    The new file keeps the mode of the one it replaces (a new one: the umask's default). A
    failed write names `path` (not the temporary file, nor nothing: a write(2) error has no
    file name), so the CLI says which file it could not write, and how to fix that.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(OSError):
            old = path.stat(follow_symlinks=False)
            if stat.S_ISREG(old.st_mode):
                os.chmod(tmp, stat.S_IMODE(old.st_mode))
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.filename in (None, tmp, str(tmp)):
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
