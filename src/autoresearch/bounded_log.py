"""A log file of bounded size: the head of a command's output, a marker, and a rolling tail."""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["BoundedLog", "dropped_from", "without_marker"]

# The line a cut leaves in the log; the command's output never holds it (see `without_marker`).
_MARKER = re.compile(r"^\[autoresearch: (\d+) bytes of output dropped here\]$", re.MULTILINE)

_READ_CHUNK = 1 << 16
_MIN_LOG_BYTES = 4096


class BoundedLog:
    """A log file that never exceeds ``max_bytes``: the head, a marker, and a rolling tail.

    Output is written straight to disk so the log can be followed live. When the file grows
    past the cap, the middle is cut: the first half stays, then one marker line saying how
    many bytes were dropped, then the most recent quarter (starting at a line boundary when
    one is near). The file then grows again up to the cap before the next cut, so each byte
    is copied about once: cost is linear in the output, memory is one copy buffer.
    """

    def __init__(self, path: Path, max_bytes: int, *, existing: bool = False) -> None:
        max_bytes = max(max_bytes, _MIN_LOG_BYTES)
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | (0 if existing else os.O_TRUNC)
        self._fd = os.open(path, flags, 0o644)
        self._max = max_bytes
        self._head = max_bytes // 2
        self._keep = max_bytes // 4
        self._size = os.lseek(self._fd, 0, os.SEEK_END)
        self._tail_start = self._head  # where the rolling tail begins (after the marker)
        self.dropped = 0

    @classmethod
    def cap(cls, path: Path, max_bytes: int) -> int:
        """Cut a finished file down the same way (its head, a marker, its tail) when it is over
        `max_bytes`: for output another process wrote straight to the file, which cannot be cut
        while it writes. Returns the bytes dropped."""
        log = cls(path, max_bytes, existing=True)
        try:
            if log._size > log._max:
                log._cut()
            return log.dropped
        finally:
            log.close()

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self._size += len(data)
        if self._size > self._max:
            self._cut()

    def _cut(self) -> None:
        keep_from = self._size - self._keep
        probe = os.pread(self._fd, min(self._keep // 2, _READ_CHUNK), keep_from)
        newline = probe.find(b"\n")
        if newline >= 0:
            keep_from += newline + 1
        self.dropped += keep_from - self._tail_start
        head_ends_line = os.pread(self._fd, 1, self._head - 1) == b"\n"
        marker = b"" if head_ends_line else b"\n"
        marker += f"[autoresearch: {self.dropped} bytes of output dropped here]\n".encode()
        dest = self._head
        os.pwrite(self._fd, marker, dest)
        dest += len(marker)
        self._tail_start = dest
        # dest < src throughout, so a forward chunked copy never overwrites unread bytes.
        src = keep_from
        while src < self._size:
            chunk = os.pread(self._fd, 1 << 20, src)
            os.pwrite(self._fd, chunk, dest)
            src += len(chunk)
            dest += len(chunk)
        os.ftruncate(self._fd, dest)
        os.lseek(self._fd, dest, os.SEEK_SET)
        self._size = dest

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def dropped_from(text: str) -> int:
    """How many bytes of the output a cut log says it dropped (0 when it was never cut)."""
    found = _MARKER.findall(text)
    return int(found[-1]) if found else 0


def without_marker(text: str) -> str:
    """A log's text without the cut's marker line: it is the harness's note, not the command's
    output, so no metric is read from it (`[autoresearch: 4902094 bytes …]` is not a metric
    named autoresearch)."""
    return _MARKER.sub("", text)
