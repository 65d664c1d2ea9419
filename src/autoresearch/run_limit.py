"""A session's experiment limit (`run -n N`) outlives the command that set it.

`-n` counts the session's experiments in total, so the same command completes the same N after
a stop. But the hint a stopped session shows is `autoresearch run`, without the `-n`, and a
resume without it ran on with no limit at all (a tester's `-n 4` session, killed at its first
candidate and resumed as the hint said, ran on to its 20th experiment). So each `-n` is recorded
as an event of the session, and a run given none resumes toward the last one recorded, saying
so, while the session has not reached it. Once it has, a run without `-n` goes on as before
(no limit but the config's `[limits]`): continuing finished research is then what is asked.
"""

from __future__ import annotations

from autoresearch.ledger import Ledger, SessionRow

LIMIT_EVENT = "limit"


def for_this_run(ledger: Ledger, row: SessionRow, given: int | None,
                 done: int) -> tuple[int | None, str | None]:
    """The `-n` for this run, given `done` experiments counted so far, and a line saying it was
    taken from the session's record (None when `-n` was given or nothing applies)."""
    if given is not None:
        if given != recorded(ledger, row):
            ledger.add_event(row.id, LIMIT_EVENT, f"-n {given}: {given} experiments in total",
                             data={"iterations": given})
        return given, None
    limit = recorded(ledger, row)
    if limit is None or done >= limit:
        return None, None
    return limit, (f"resuming toward -n {limit}, the limit this session was run with "
                   f"({done} of {limit} done); give -n to change it")


def recorded(ledger: Ledger, row: SessionRow) -> int | None:
    """The last `-n` a run of this session was given, if any."""
    events = ledger.events(row.id, kind=LIMIT_EVENT)
    data = events[-1]["data"] if events else None
    value = data.get("iterations") if isinstance(data, dict) else None
    return value if isinstance(value, int) and value >= 1 else None
