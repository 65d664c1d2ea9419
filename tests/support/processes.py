"""Processes seen from a test: whether one is alive, killing a session's watchdog, and a free
port on the loopback interface."""

from __future__ import annotations

import contextlib
import socket
import time

import psutil


def alive(pid: int) -> bool:
    """The process exists and has not run its course (a zombie has)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_watchdog(pid: int) -> None:
    """SIGKILL the watchdog of orchestrator ``pid`` (it is started with the first run). A test
    that asks for it means to test the case with no watchdog left: not finding one fails it."""
    deadline = time.monotonic() + 60  # seconds, when the machine is busy
    while time.monotonic() < deadline:
        for child in psutil.Process(pid).children():
            with contextlib.suppress(psutil.Error):
                if "autoresearch.watchdog" in " ".join(child.cmdline()):
                    child.kill()
                    return
        time.sleep(0.05)
    raise AssertionError(f"orchestrator {pid} has no watchdog to kill")


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
