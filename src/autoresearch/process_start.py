"""Telling a process from one that reused its pid, by its start time.

An owner token (see `process_tree.owner_token`) records a process's pid and its start time as
psutil reports it: the clock ticks since boot (exact to 10 ms on Linux) plus the boot time,
which /proc/stat gives in whole seconds and which moves when the wall clock is adjusted (NTP).
The same process can therefore read a whole number of seconds away from its token, while another
process that took the pid differs by a fraction of a second. Both the orchestrator's side
(`process_tree`) and the watchdog judge by this one rule; this module imports nothing, so the
watchdog stays small.
"""

from __future__ import annotations

# Judged without the boot time's moves, a suite run saw a live owner called dead and its run
# killed as an orphan. A pid reuse passes only if it started a whole number of seconds (to
# within this) from the owner, about 1 in 100 reuses: the cost is then a leftover not killed.
SAME_START_S = 0.005
BOOT_TIME_MOVES_S = 86_400  # how far the boot time may have moved since the token was made


def same_start(now: float, recorded: float) -> bool:
    """Whether a start time read now (seconds since the epoch) is the one a token recorded."""
    moved = round(now - recorded)
    return abs(now - recorded - moved) <= SAME_START_S and abs(moved) <= BOOT_TIME_MOVES_S
