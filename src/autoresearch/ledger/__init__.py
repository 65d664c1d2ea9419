"""The durable record of every session, experiment, run, metric, cost and event."""

from autoresearch.ledger.store import (
    FINAL_STATUSES,
    ExperimentRow,
    Ledger,
    RunRow,
    SessionRow,
    TrialStatus,
)

__all__ = ["FINAL_STATUSES", "ExperimentRow", "Ledger", "RunRow", "SessionRow", "TrialStatus"]
