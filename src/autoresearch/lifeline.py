"""What ties the life of every process a run starts to the orchestrator's, whatever kills it.

A run (verify command, guard, coding agent) is ended by its `ProcessTree` when it finishes, times
out or is stopped. This module covers the orchestrator dying first (kill -9, the OOM killer, a
crash), in three layers, each catching what the one before cannot:

1. The parent-death signal. The run's first process is started under `setpriv --pdeathsig KILL`
   (or prctl in a preexec_fn), so the kernel kills it when the orchestrator dies. A shell command
   that is one simple command is run as `exec <command>`, so that first process *is* the command
   (dash would otherwise fork it and only the shell would get the signal). The signal is not
   inherited by children, hence:
2. The watchdog (`autoresearch.watchdog`): one small process per orchestrator, started with its
   first run, in its own session (a closed terminal's SIGHUP or a Ctrl-C does not reach it). It
   holds the read end of a pipe whose write end only the orchestrator has; when the orchestrator
   dies, for any reason, the pipe reaches EOF and the watchdog kills every process carrying the
   orchestrator's owner mark (setsid()'d daemons included), every process group of a run
   still going (members that cleared their environment) and every descendant of the
   orchestrator it saw in its periodic looks at the tree (those that did both), then exits.
3. On resume, the session kills the processes of every tag of the repository whose owner is dead
   (`process_tree.kill_orphans`): the case where the watchdog was killed too.

Starting a process goes through `launch` so that every run gets all three.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from autoresearch import strays
from autoresearch.process_tree import OWNER_ENV, RUN_ID_ENV, owner_token

__all__ = ["Watchdog", "exec_if_simple", "launch_plan", "run_env", "watchdog"]


def run_env(base: Mapping[str, str], run_id: str) -> dict[str, str]:
    """``base`` plus the marks every process of the run inherits (see ``process_tree``)."""
    env = dict(base)
    env[RUN_ID_ENV] = run_id
    env[OWNER_ENV] = owner_token()
    return env


# ---- 1. the parent-death signal -----------------------------------------------------------
#
# The kernel sends it when the *thread* that spawned the child exits; run_command and run_agent
# block that thread until the end, so that is the same thing here.
#
# Preferred: `setpriv --pdeathsig KILL` (util-linux) execs into the command with the signal set.
# A preexec_fn would do the same in-process, but it forces subprocess to fork() instead of
# vfork(), and fork() copies the page tables: measured 3 ms with a small heap and 31 ms with
# a 500 MB one, against ~1 ms either way through setpriv. preexec_fn + prctl is the fallback.

_PR_SET_PDEATHSIG = 1
_SIGKILL = int(signal.SIGKILL)


def launch_plan(argv: Sequence[str]) -> tuple[list[str], Callable[[], None] | None]:
    """``argv`` (and a preexec_fn) such that the process gets SIGKILL when we die (Linux)."""
    setpriv = _setpriv()
    if setpriv is not None:
        return [setpriv, "--pdeathsig", "KILL", *argv], None
    return list(argv), _child_setup(os.getpid())


@functools.cache
def _setpriv() -> str | None:
    """Path of a setpriv that supports --pdeathsig (util-linux >= 2.33), else None."""
    if not sys.platform.startswith("linux"):
        return None
    exe = shutil.which("setpriv")
    if exe is None:
        return None
    try:
        usage = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return exe if "--pdeathsig" in usage else None


def load_prctl() -> Callable[..., int] | None:
    """libc's prctl with its argument types set (Linux), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    fn.restype = ctypes.c_int
    return fn


# Resolved once in the parent so the forked child does as little as possible before exec.
_PRCTL = load_prctl()


def _child_setup(parent_pid: int) -> Callable[[], None] | None:
    if _PRCTL is None:
        return None
    prctl = _PRCTL

    def setup() -> None:
        prctl(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(137)

    return setup


# Words after which `exec` would change what the command means: shell keywords and builtins
# (`exec cd x` fails where `cd x` works; dash's echo is not /bin/echo), and `exec` itself.
_NOT_EXECUTABLE = frozenset({
    "!", "{", "}", "[[", "]]", "case", "do", "done", "elif", "else", "esac", "fi", "for",
    "function", "if", "in", "select", "then", "time", "until", "while",
    ".", ":", "[", "alias", "bg", "break", "builtin", "cd", "command", "continue", "declare",
    "echo", "eval", "exec", "exit", "export", "false", "fc", "fg", "getopts", "hash", "jobs",
    "kill", "let", "local", "printf", "pwd", "read", "readonly", "return", "set", "shift",
    "source", "test", "times", "trap", "true", "type", "typeset", "ulimit", "umask", "unalias",
    "unset", "wait",
})


def exec_if_simple(command: str) -> str:
    """``exec <command>`` when the command is one simple command, else the command unchanged.

    The shell then replaces itself with the command instead of forking it, so the command is the
    run's first process and gets the parent-death signal. Expansions, quoting and redirections
    keep their meaning; lists, pipes, background jobs, subshells, keywords, builtins and leading
    assignments (`A=1 cmd`) are left to the shell as written.
    """
    if "\n" in command or "`" in command or "$(" in command:
        return command  # a substitution may hold a list; not worth parsing
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: let the shell report it
        return command
    if not tokens:
        return command
    first = tokens[0]
    if first in _NOT_EXECUTABLE or "=" in first.split("/", 1)[0] or first.startswith(("(", "{")):
        return command
    for token in tokens:
        operator = token and all(c in "();&|<>" for c in token)
        if operator and not ("<" in token or ">" in token):
            return command  # ; & && | || ( ): a list, a pipeline, a job or a subshell
    return f"exec {command}"


# ---- 2. the watchdog ------------------------------------------------------------------------


class Watchdog:
    """The orchestrator's side of the watchdog: starts it once, tells it the live run groups.

    The protocol is one line per event on the watchdog's stdin, each written with a single
    write() (atomic on a pipe), so threads may report concurrently: ``+<pgid>`` when a run
    starts, ``-<pgid>`` when its tree is dead.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid = 0  # the process that started it (a forked child needs its own)
        self._groups: set[int] = set()

    def watch(self, pgid: int) -> None:
        """A run's first process started as the leader of process group ``pgid``.

        Call ``ensure_started`` before starting it: its processes carry the owner mark from the
        start, so the watchdog finds them even if we die before this line is written."""
        with self._lock:
            self._groups.add(pgid)
            self._send(f"+{pgid}\n")

    def unwatch(self, pgid: int) -> None:
        with self._lock:
            self._groups.discard(pgid)
            if self._proc is not None and self._pid == os.getpid():
                self._send(f"-{pgid}\n", start=False)

    def ensure_started(self) -> None:
        """Start the watchdog if it is not running (call before the first run starts)."""
        with self._lock:
            self._ensure()

    def _send(self, line: str, start: bool = True) -> None:
        if start:
            self._ensure()
        if self._proc is None or self._proc.stdin is None:
            return
        try:
            os.write(self._proc.stdin.fileno(), line.encode())
        except OSError:  # it died (someone killed it): start a new one, tell it everything
            self._restart()

    def _ensure(self) -> None:
        if self._proc is not None and self._pid == os.getpid() and self._proc.poll() is None:
            return
        self._restart()

    def _restart(self) -> None:
        old, self._proc = self._proc, None
        if old is not None and self._pid == os.getpid():
            with contextlib.suppress(OSError):
                if old.stdin is not None:
                    old.stdin.close()
            # It is gone or going (its pipe broke): reap it, so that its pid is not kept
            # registered (and its zombie unreaped) for the rest of the session.
            with contextlib.suppress(subprocess.TimeoutExpired):
                old.wait(timeout=1)
            if old.returncode is not None:
                strays.forget(old.pid, old)
        try:
            self._proc = _start_watchdog()
        except OSError:
            return  # no watchdog: layers 1 and 3 still hold
        self._pid = os.getpid()
        assert self._proc.stdin is not None
        fd = self._proc.stdin.fileno()
        with contextlib.suppress(OSError):
            for pgid in self._groups:
                os.write(fd, f"+{pgid}\n".encode())


def _start_watchdog() -> subprocess.Popen[bytes]:
    package_parent = str(Path(__file__).resolve().parents[1])
    code = (f"import sys; sys.path.insert(0, {package_parent!r}); "
            "from autoresearch.watchdog import main; main()")
    # Registered as ours: it lives outside our session, where the sweep looks for strays.
    return strays.spawn_helper(lambda: subprocess.Popen(
        [sys.executable, "-I", "-c", code, owner_token()],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        # Its own session: a terminal's hangup, a Ctrl-C or a kill of our process group must
        # not take it down with us; it leaves by itself once it has done its job.
        start_new_session=True, close_fds=True,
    ), lambda p: p.pid)


_WATCHDOG = Watchdog()


def watchdog() -> Watchdog:
    """This process's watchdog (one per orchestrator process, started on first use)."""
    return _WATCHDOG
