"""Run the CLI with its standard output going to a pipe whose reader goes away early."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import cli_env


def run_into_closed_pipe(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`autoresearch ARGS` writing into a pipe nobody reads any more (its reader closed before
    the first write): every write it makes fails, whatever the size of its output."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "autoresearch", *args], cwd=cwd,
                              env=cli_env(), stdout=write_end, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, text=True, timeout=300)
    finally:
        os.close(write_end)


def run_reading_one_line(cwd: Path, *args: str) -> tuple[int, str, str]:
    """`autoresearch ARGS | head -1`: the first line read, then the pipe closed; returns the
    exit code, that line and standard error."""
    proc = subprocess.Popen([sys.executable, "-m", "autoresearch", *args], cwd=cwd,
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        line = proc.stdout.readline()
        proc.stdout.close()
        stderr = proc.stderr.read()
        return proc.wait(timeout=300), line, stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
