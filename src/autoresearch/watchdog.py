"""The watchdog process: kills what an orchestrator started, once that orchestrator is gone.

Started by `lifeline.Watchdog` as ``python -I -c ... <owner token>``, in its own session, with a
pipe on stdin whose write end only the orchestrator holds. It reads the process groups of the
runs in progress (``+pgid`` / ``-pgid`` lines) until EOF, which comes when the orchestrator exits,
normally or not (kill -9, a crash): the kernel closes its descriptors either way. Then it kills
every process carrying the orchestrator's owner mark and every group still listed, and exits.
After a normal exit nothing is left and that costs one scan.

It imports nothing heavy until it has work to do, so that it starts fast and stays small.
"""

from __future__ import annotations

import os
import signal
import sys


def read_groups(fd: int) -> set[int]:
    """Follow the protocol until EOF; the process groups still listed then."""
    groups: set[int] = set()
    pending = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except InterruptedError:
            continue
        except OSError:
            break
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            try:
                pgid = int(line[1:])
            except ValueError:
                continue
            if line.startswith(b"+"):
                groups.add(pgid)
            elif line.startswith(b"-"):
                groups.discard(pgid)
    return groups


def main() -> None:
    owner = sys.argv[1]
    # Only EOF ends our watch: terminal signals are for the orchestrator (we are in our own
    # session, but a user may still signal the group by hand).
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    groups = read_groups(0)
    from autoresearch.process_tree import kill_owned

    kill_owned(owner, groups)


if __name__ == "__main__":
    main()
