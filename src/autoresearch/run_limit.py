"""A session's experiment limit (`run -n N`) outlives the command that set it.

`-n` counts the session's experiments in total, so the same command completes the same N after
a stop. But the hint a stopped session shows is `autoresearch run`, without the `-n`, and a
resume without it ran on with no limit at all (a tester's `-n 4` session, killed at its first
candidate and resumed as the hint said, ran on to its 20th experiment). So each `-n` is recorded
as an event of the session, and a run given none resumes toward the last one recorded, saying
so, while the session has not reached it. Once it has, a run without `-n` goes on as before
(no limit but the config's `[limits]`): continuing finished research is then what is asked.

A limit that stops a session names itself: this run's `-n`, the one remembered, or
`[limits] max_experiments` (which a `-n` replaces), so that the way to go on is the right one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from autoresearch.ledger import Ledger, SessionRow

LIMIT_EVENT = "limit"


@dataclass(frozen=True)
class ExperimentLimit:
    """The experiments this run may bring the session to, and what set that figure."""

    count: int | None
    source: Literal["-n", "remembered -n", "max_experiments", "none"]

    @classmethod
    def of(cls, given: int | None, taken: str | None, iterations: int | None,
           max_experiments: int | None) -> ExperimentLimit:
        """From `for_this_run`'s answer (`iterations`, `taken`) to this run's `-n` (`given`),
        or the config's `[limits] max_experiments` when neither gave one."""
        if given is not None:
            return cls(given, "-n")
        if iterations is not None:
            return cls(iterations, "remembered -n" if taken else "-n")
        if max_experiments is not None:
            return cls(max_experiments, "max_experiments")
        return cls(None, "none")

    def explain(self, reason: str, done_at_start: int) -> str:
        """The stop `reason` ("reached 4 experiments"), saying which limit it was and, when the
        session had reached it before this run started (`done_at_start` experiments), how to go
        on: a `-n` counts the session's experiments, so it is that many more than done."""
        if self.count is None or reason != f"reached {self.count} experiments":
            return reason
        if done_at_start < self.count:
            return reason + {"-n": "", "remembered -n": f" (the -n {self.count} this session "
                             "was run with)", "max_experiments": " ([limits] max_experiments)",
                             "none": ""}[self.source]
        head = reason if done_at_start == self.count else (
            f"the session had {done_at_start} experiments, more than {self.count}")
        more = f"-n {done_at_start + self.count} runs {self.count} more"
        if self.source == "max_experiments":
            return (f"{head}, before this run started: [limits] max_experiments = {self.count} "
                    f"counts the session's experiments ({done_at_start} so far); raise it, or "
                    f"give -n, which counts them too and replaces it: {more}")
        return (f"{head}, before this run started: -n counts the session's experiments "
                f"({done_at_start} so far), so {more}")


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
