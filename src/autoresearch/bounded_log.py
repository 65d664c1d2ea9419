"""A log file of bounded size: the head of a command's output, a marker, and a rolling tail;
and the pump that moves a process's output from its pipes into such logs while it runs."""

from __future__ import annotations

import contextlib
import math
import os
import re
import select
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

__all__ = ["BoundedLog", "OutputPump", "dropped_from", "without_marker"]

# The line a cut leaves in the log; the command's output never holds it (see `without_marker`).
_MARKER = re.compile(r"^\[autoresearch: (\d+) bytes of output dropped here\]$", re.MULTILINE)

_READ_CHUNK = 1 << 16
_MIN_LOG_BYTES = 4096
# Reads per wake-up are capped so that a flooding child (`yes`) cannot keep the caller from
# checking its deadline.
_READS_PER_STEP = 16
# Without a pidfd (old kernels) the child's exit is only noticed by polling.
_NO_PIDFD_TICK_S = 0.02


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
        self.written = self._size  # every byte ever written, the dropped ones included

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
        self.written += len(data)
        if self._size > self._max:
            self._cut()

    def tail(self, max_bytes: int) -> bytes:
        """The log's last `max_bytes` as it is now (the caller cuts a partial first line)."""
        start = max(self._size - max_bytes, 0)
        return os.pread(self._fd, self._size - start, start)

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


class OutputPump:
    """Moves bytes from a process's output pipes into their bounded logs while the caller waits.

    One poll() over the pipes and, when a pid is given, a pidfd for that child: its exit wakes
    the caller at once even when a grandchild still holds a pipe open. Pipes are non-blocking
    and each wake-up reads a bounded amount, so a flood of output cannot starve the caller.
    """

    def __init__(self, streams: Sequence[tuple[IO[bytes], BoundedLog]],
                 pid: int | None = None) -> None:
        self._pipes = {pipe.fileno(): (pipe, log) for pipe, log in streams}
        self._open = set(self._pipes)
        self._poller = select.poll()
        for fd in self._pipes:
            os.set_blocking(fd, False)
            self._poller.register(fd, select.POLLIN)
        self._watches_pid = pid is not None
        self._pidfd: int | None = None
        if pid is not None:
            with contextlib.suppress(AttributeError, OSError):
                self._pidfd = os.pidfd_open(pid)
                self._poller.register(self._pidfd, select.POLLIN)

    @property
    def pipe_open(self) -> bool:
        """Whether some pipe has not reached its end (a writer may still hold it)."""
        return bool(self._open)

    def step(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for output or the child's exit; handle what arrived."""
        if self._watches_pid and self._pidfd is None:
            timeout_s = min(timeout_s, _NO_PIDFD_TICK_S)
        for fd, _events in self._poller.poll(max(0, math.ceil(timeout_s * 1000))):
            if fd in self._open:
                self._read(fd)
            elif fd == self._pidfd:
                # Readable forever once the child exited; stop watching or poll() would spin.
                self._poller.unregister(fd)
                self._close_pidfd()

    def drain(self, deadline: float) -> None:
        """Read until every pipe's end or ``deadline`` (monotonic)."""
        while self.pipe_open and (left := deadline - time.monotonic()) > 0:
            self.step(left)

    def _read(self, fd: int) -> None:
        log = self._pipes[fd][1]
        for _ in range(_READS_PER_STEP):
            try:
                data = os.read(fd, _READ_CHUNK)
            except BlockingIOError:
                return
            if not data:
                self._poller.unregister(fd)
                self._open.discard(fd)
                return
            log.write(data)

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def close(self) -> None:
        """Close the pidfd and the pipes (a writer still holding one gets EPIPE)."""
        self._close_pidfd()
        for fd, (pipe, _log) in self._pipes.items():
            if fd in self._open:
                self._poller.unregister(fd)
                self._open.discard(fd)
            pipe.close()


def dropped_from(text: str) -> int:
    """How many bytes of the output a cut log says it dropped (0 when it was never cut)."""
    found = _MARKER.findall(text)
    return int(found[-1]) if found else 0


def without_marker(text: str) -> str:
    """A log's text without the cut's marker line: it is the harness's note, not the command's
    output, so no metric is read from it (`[autoresearch: 4902094 bytes …]` is not a metric
    named autoresearch)."""
    return _MARKER.sub("", text)
