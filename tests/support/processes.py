"""Processes seen from a test: whether one is alive, and killing a session's watchdog."""

from __future__ import annotations

import contextlib
import time

import psutil


def alive(pid: int) -> bool:
    """The process exists and has not run its course (a zombie has)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_watchdog(pid: int) -> None:
    """SIGKILL the watchdog of orchestrator ``pid`` (it is started with the first run)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for child in psutil.Process(pid).children():
            with contextlib.suppress(psutil.Error):
                if "autoresearch.watchdog" in " ".join(child.cmdline()):
                    child.kill()
                    return
        time.sleep(0.05)
