"""Proposers produce the next change. See `base.py` for the interface and `registry.py` for plugins."""

from autoresearch.proposers.base import (
    ExperimentOutcome,
    ExperimentSummary,
    InFlight,
    Proposal,
    ProposalContext,
    Proposer,
    Usage,
)

__all__ = [
    "ExperimentOutcome",
    "ExperimentSummary",
    "InFlight",
    "Proposal",
    "ProposalContext",
    "Proposer",
    "Usage",
]
