"""The durable record of every session, experiment, run, metric, cost and event."""

from autoresearch.ledger.rows import FINAL_STATUSES, ExperimentRow, RunRow, SessionRow, TrialStatus
from autoresearch.ledger.store import Ledger

__all__ = ["FINAL_STATUSES", "ExperimentRow", "Ledger", "RunRow", "SessionRow", "TrialStatus"]
