"""The files a pipeline behind the harness's output writes: `autoresearch run | tee night.log`.

With its stdout or stderr on a pipe, the harness's output reaches the checkout through another
program (`tee`, `ts | tee`, `logger`...), which grows a file there while the agent runs. That
file is the harness's output as much as a `> night.log` redirect is (`checkout.own_output_files`),
so it is found the same way, by what it is (device and inode), not by its name: the processes
holding the read end of the harness's pipe, the regular files they hold open for writing, and so
on down a pipeline of a few stages (a reader whose own stdout is a pipe passes it on).

Linux only (`/proc`); elsewhere, or where `/proc` hides other processes, nothing is found and
such a file counts as any other change, as before. The answer is taken once, before the first
agent run: a process the agent starts later that opens the harness's pipe (through
`/proc/<pid>/fd`) cannot make a file of its own count as the harness's output.
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Iterable
from pathlib import Path

_PROC = Path("/proc")
_STAGES = 4  # how far down a pipeline to follow (`run | ts | tee log` is two)
_WRITE_MODES = (os.O_WRONLY, os.O_RDWR)


def _pipe_inode(target: str) -> int | None:
    """The inode of a `pipe:[N]` link target, as /proc/<pid>/fd shows a pipe."""
    if target.startswith("pipe:[") and target.endswith("]"):
        return int(target[6:-1])
    return None


def _access_mode(pid: str, fd: str) -> int | None:
    """O_RDONLY, O_WRONLY or O_RDWR for one descriptor of another process (its fdinfo)."""
    try:
        text = (_PROC / pid / "fdinfo" / fd).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags:"):
            return int(line.split()[1], 8) & os.O_ACCMODE
    return None


def _descriptors(pid: str) -> Iterable[tuple[str, str]]:
    """(fd, link target) of one process's open descriptors; none when they cannot be read."""
    try:
        fds = os.listdir(_PROC / pid / "fd")
    except OSError:
        return
    for fd in fds:
        try:
            yield fd, os.readlink(_PROC / pid / "fd" / fd)
        except OSError:
            continue


def _readers(pipes: set[int], skip: int) -> set[str]:
    """The processes (but `skip`, this one) holding one of `pipes` open for reading."""
    found: set[str] = set()
    for pid in os.listdir(_PROC):
        if not pid.isdigit() or int(pid) == skip:
            continue
        for fd, target in _descriptors(pid):
            if _pipe_inode(target) in pipes and _access_mode(pid, fd) == os.O_RDONLY:
                found.add(pid)
                break
    return found


def _written_by(pid: str) -> tuple[set[tuple[int, int]], set[int]]:
    """The regular files (device, inode) a process holds open for writing, and the pipes it
    writes to (the next stage of the pipeline)."""
    files: set[tuple[int, int]] = set()
    pipes: set[int] = set()
    for fd, target in _descriptors(pid):
        if _access_mode(pid, fd) not in _WRITE_MODES:
            continue
        if (inode := _pipe_inode(target)) is not None:
            pipes.add(inode)
            continue
        try:
            st = os.stat(_PROC / pid / "fd" / fd)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            files.add((st.st_dev, st.st_ino))
    return files, pipes


def own_pipes() -> set[int]:
    """The pipes this process's stdout and stderr are written to."""
    pipes: set[int] = set()
    for fd in (1, 2):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed, or no /proc
            continue
        if (inode := _pipe_inode(target)) is not None:
            pipes.add(inode)
    return pipes


@functools.cache
def files_behind_own_pipes() -> frozenset[tuple[int, int]]:
    """(st_dev, st_ino) of the regular files the programs reading this process's output pipes
    write, down to `_STAGES` stages; cached: taken once, before any agent runs."""
    if not _PROC.is_dir():
        return frozenset()
    files: set[tuple[int, int]] = set()
    pipes, seen_pipes, seen = own_pipes(), set[int](), {str(os.getpid())}
    for _ in range(_STAGES):
        pipes -= seen_pipes
        if not pipes:
            break
        seen_pipes |= pipes
        readers = _readers(pipes, os.getpid()) - seen
        seen |= readers
        pipes = set()
        for pid in readers:
            written, onward = _written_by(pid)
            files |= written
            pipes |= onward
    return frozenset(files)
