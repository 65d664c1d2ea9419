"""The scripted proposer's proposals, replayed onto a newer incumbent as tune replays its own
(`TuneProposer.replay`): for end-to-end tests of a parallel session whose winners conflict in
git. Each proposal first lets tune find the knobs of the incumbent's checkout, as tune does
before it proposes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autoresearch.proposers.base import Proposal, ProposalContext
from autoresearch.proposers.tune import TuneProposer
from tests.support.scripted_proposer import ScriptedProposer


class ScriptedTune(ScriptedProposer):
    name = "scripted-tune"

    def __init__(self, config: Any, options: Any = None) -> None:
        super().__init__(config, options)
        self.tune = TuneProposer(config, {"seed": 0})

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        self.tune._discover(ctx)
        return super().propose(ctx)

    def replay(self, before: Any, after: Any, worktree: Path) -> Proposal | None:
        return self.tune.replay(before, after, worktree)

    def close(self) -> None:
        self.tune.close()
