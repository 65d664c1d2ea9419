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


# Ports a Ray head takes by default for its own parts (the dashboard agent 52365, the dashboard
# 8265, the client server 10001, the GCS 6379): a test head given one of them as its GCS port
# fails to start ("did not listen in 120 s"), as one suite run did with 52365.
RAY_DEFAULT_PORTS = frozenset({6379, 8265, 10001, 52365})


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 (now), never one of Ray's defaults."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in RAY_DEFAULT_PORTS:
            return port
