"""The signals that stop a session cleanly, the way Ctrl-C does.

SIGINT (Ctrl-C) raises KeyboardInterrupt by Python's default. SIGTERM (`kill`, a service manager)
and SIGHUP (the terminal closed, the ssh connection dropped) do the same here: the running
experiment is recorded as interrupted, its process tree killed, the worktree reset, and the
same command resumes. Without this, SIGHUP's default action would end the process on the spot,
leaving the verify command's tree to the watchdog and the experiment to the next resume.

After a hangup the terminal is gone: writing to it fails (EIO), and the session still has to
finish recording. So on SIGHUP the standard streams that were a terminal and no longer are
(a hung-up terminal stops answering as one) are pointed at /dev/null.

A closed output pipe (`run | head`, a pager quit, a dead `tee`) is the same event for a pipe:
the first write that fails with EPIPE points stdout at /dev/null and stops the session the same
way, as SIGPIPE, instead of a BrokenPipeError escaping from whatever line printed.

Every other command (`review`, `status`, `show`, `results`, `report`, ...) only prints: when its
reader goes away it stops where it is, quietly, like `cat` or `git log` do (`QuietOnClosedPipe`,
installed by `cli.main`; the CLI then exits 141, 128 + SIGPIPE, with nothing on stderr).
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any, TextIO

__all__ = ["OUTPUT_CLOSED_EXIT", "OutputClosed", "QuietOnClosedPipe", "SessionStopped",
           "StopSignal", "describe_interrupt", "output_closed", "raise_lost_stop",
           "stop_signals_as_interrupt", "stop_under_way"]

OUTPUT_CLOSED_EXIT = 128 + signal.SIGPIPE  # what a shell shows for a tool SIGPIPE ended

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
_received: list[int] = []  # the stop signals received, first first
_stopping = threading.Event()  # a stop is being carried out (see stop_under_way)
# A stop raised by the handler and not yet taken up (see raise_lost_stop): the signal, or empty.
_unanswered: list[int] = []
ALREADY_STOPPING = (b"\nalready stopping: the runs are being ended and recorded, then every slot "
                    b"reset (kill -9 ends it at once; the next run recovers what was open)\n")
_pipe_closed = threading.Event()  # stdout's reader went away (see _ClosedPipeGuard)


class SessionStopped(Exception):
    """The session ends for a reason the user should read (paused, fingerprint, ...), with the
    exit code the CLI returns. It lives here, below every engine module, so that any of them
    (shared data, the executor, a trial) can stop the session without importing the session."""

    def __init__(self, reason: str, exit_code: int = 0) -> None:
        self.reason = reason
        self.exit_code = exit_code
        super().__init__(reason)


class StopSignal(KeyboardInterrupt):
    """A stop asked by a signal other than Ctrl-C; `name` says which (for the final message)."""

    def __init__(self, signum: int) -> None:
        self.name = signal.Signals(signum).name
        super().__init__(self.name)


class OutputClosed(BaseException):
    """Standard output's reader went away: the command stops where it is (a BaseException, like
    KeyboardInterrupt: no `except Exception` on the way may take it for an error to report)."""


def _point_at_null(stream: TextIO) -> None:
    """Send what is still written (and the final flush) to /dev/null instead of the dead pipe."""
    with contextlib.suppress(OSError, ValueError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, stream.fileno())
        os.close(null)


class _StdoutWatch:
    """A stand-in for sys.stdout that notices its reader going away: the first write or flush
    that finds the pipe closed points fd 1 at /dev/null, then `_reader_gone` says what follows."""

    # What a failed write raises: a closed pipe (and, under the session's guard, the quiet
    # wrapper's own stop when one is installed beneath it).
    _CLOSED: tuple[type[BaseException], ...] = (BrokenPipeError,)

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.closed_pipe = False

    def _closed(self) -> None:
        if self.closed_pipe:
            return
        self.closed_pipe = True
        _point_at_null(self._stream)
        self._reader_gone()

    def _reader_gone(self) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        try:
            self._stream.flush()
        except self._CLOSED:
            self._closed()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class QuietOnClosedPipe(_StdoutWatch):
    """sys.stdout for the commands that only print: a write that finds the pipe closed points
    fd 1 at /dev/null and raises `OutputClosed`, once.

    A long text is written in a loop on the binary buffer: a single big write that the reader
    abandons half way returns short, and the text layer would drop the rest silently (the
    command would then go on, printing into nothing, and exit 0); the next write of the loop
    fails instead, and the stop is the same whatever the size of what was printed."""

    _DIRECT = 8192  # shorter texts go through the text layer as they are

    def _reader_gone(self) -> None:
        raise OutputClosed

    def write(self, text: str) -> int:
        try:
            buffer = getattr(self._stream, "buffer", None)
            if buffer is None or len(text) <= self._DIRECT:
                return self._stream.write(text)
            self._stream.flush()
            data = memoryview(text.encode(self._stream.encoding or "utf-8",
                                          self._stream.errors or "strict"))
            while data:
                data = data[buffer.write(data):]
            buffer.flush()
            return len(text)
        except BrokenPipeError:
            self._closed()
            return len(text)


def _detach_hung_up(ttys: set[int]) -> None:
    for fd in ttys:
        if not os.isatty(fd):
            with contextlib.suppress(OSError):
                null = os.open(os.devnull, os.O_RDWR)
                os.dup2(null, fd)
                os.close(null)


class _ClosedPipeGuard(_StdoutWatch):
    """sys.stdout while a session runs: a write to a closed pipe points fd 1 at /dev/null and
    interrupts the main thread as a stop named SIGPIPE, then carries on.

    SIGPIPE itself stays ignored (Python's default): the harness writes to many pipes (git's
    stdin, a coding agent's), and a reader that exits early there is that call's error, not a
    reason to stop the session. Only stdout's reader going away is."""

    _CLOSED = (BrokenPipeError, OutputClosed)  # OutputClosed: from QuietOnClosedPipe beneath

    def _reader_gone(self) -> None:
        # Through the SIGTERM handler this block installed (SIGINT may be ignored, as in a
        # background job), which then stops the session as SIGPIPE.
        _pipe_closed.set()
        _thread.interrupt_main(signal.SIGTERM)

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except self._CLOSED:
            self._closed()
            return len(text)


@contextlib.contextmanager
def stop_signals_as_interrupt() -> Iterator[None]:
    """Within this block, SIGTERM and SIGHUP raise `StopSignal` (a KeyboardInterrupt) once.

    A second stop signal while the first is being handled is ignored: the session is already on
    its way out, and an exception raised in the middle of its cleanup would cut it short. (A
    terminal hangup can deliver SIGHUP twice: from the kernel and from the shell.)

    Ctrl-C raises KeyboardInterrupt as Python's own handler does, except once the session has
    taken its stop up (`stop_under_way`): Ctrl-C pressed twice is common, and the second one,
    landing while the slots' runs were being ended, cut the stop short (the trials were left to
    the garbage collector, recorded as a harness error). It is ignored then, and told so on
    stderr; kill -9 stays the way to end it at once (the next run recovers what was open). Before
    that point every Ctrl-C interrupts: one swallowed on its way (an exception raised inside a
    `__del__` is dropped by Python) must not leave the session deaf to the next.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    ttys = {fd for fd in (0, 1, 2) if os.isatty(fd)}
    raised = False
    told = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal raised, told
        if signum == signal.SIGINT:
            if not _stopping.is_set():
                _received.append(signum)
                _unanswered[:] = [signum]
                raise KeyboardInterrupt
            if not told:
                told = True
                with contextlib.suppress(OSError):
                    os.write(2, ALREADY_STOPPING)
            return
        if signum == signal.SIGTERM and _pipe_closed.is_set():
            signum = signal.SIGPIPE
        _received.append(signum)
        if signum == signal.SIGHUP:
            _detach_hung_up(ttys)
        if raised or _stopping.is_set():
            return
        raised = True
        _unanswered[:] = [signum]
        raise StopSignal(signum)

    # Ctrl-C only where it has Python's default behaviour (not where it is ignored: a
    # background job, a caller that wants it so).
    signals = STOP_SIGNALS + ((signal.SIGINT,) if signal.getsignal(signal.SIGINT)
                              is signal.default_int_handler else ())
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    stdout = sys.stdout
    sys.stdout = _ClosedPipeGuard(stdout)
    try:
        yield
    finally:
        sys.stdout = stdout
        for sig, before in previous.items():
            signal.signal(sig, before)
        _stopping.clear()
        _unanswered.clear()


def stop_under_way() -> None:
    """The session has taken a stop up (its open trials are being ended and recorded): from
    now on, until the end of the `stop_signals_as_interrupt` block, a stop signal or Ctrl-C is
    ignored rather than cutting that short."""
    _stopping.set()
    _unanswered.clear()


def raise_lost_stop() -> None:
    """Raise again a stop whose exception was lost on its way: the scheduler calls this where it
    can take a stop (between steps, and while it waits for runs).

    A signal handler's exception surfaces wherever the main thread is; inside a `__del__` or a
    weakref callback Python prints it and drops it, and code that catches BaseException (a
    plugin proposer, a library) swallows it. The session then ran on to its end, deaf to the
    Ctrl-C or SIGTERM (a second SIGTERM is ignored by design). A stop that was taken up has
    reached `stop_under_way` by the time the loop could run again, so one still unanswered
    here was lost."""
    if _unanswered and not _stopping.is_set():
        signum = _unanswered.pop()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise StopSignal(signum)


def describe_interrupt(exc: KeyboardInterrupt | None = None) -> str:
    """What stopped the session, for its last message and the records of what it cut short:
    "Ctrl-C", "SIGTERM", "SIGHUP" or "SIGPIPE: the output was closed" (None: the stop under
    way, if any)."""
    name = exc.name if isinstance(exc, StopSignal) else (
        # Re-raised as a plain KeyboardInterrupt on the way (a run cut short is re-raised so).
        signal.Signals(_received[0]).name
        if _received and _received[0] != signal.SIGINT else "Ctrl-C")
    return "SIGPIPE: the output was closed" if name == "SIGPIPE" else name


def output_closed(exc: KeyboardInterrupt) -> bool:
    """Did the session stop because its output pipe closed (so stdout now goes nowhere)?"""
    return describe_interrupt(exc).startswith("SIGPIPE")
