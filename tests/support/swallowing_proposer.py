"""A scripted proposer whose second proposal swallows every exception for a while, as plugin or
library code that catches BaseException does: a stop signal landing there is lost to the loop
unless the harness raises it again (stop_signals.raise_lost_stop)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from autoresearch.proposers.base import Proposal, ProposalContext
from tests.support.scripted_proposer import ScriptedProposer


class SwallowingProposer(ScriptedProposer):
    name = "swallowing"

    def __init__(self, config: Any, options: Any = None) -> None:
        super().__init__(config, options)
        self.marker = Path(self.options["marker"])
        self.calls = 0

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        self.calls += 1
        if self.calls == 2 and not self.marker.exists():
            self.marker.write_text("swallowing\n")
            deadline = time.monotonic() + 4.0
            while time.monotonic() < deadline:
                with contextlib.suppress(BaseException):  # the point of this proposer
                    time.sleep(0.05)
        return super().propose(ctx)
