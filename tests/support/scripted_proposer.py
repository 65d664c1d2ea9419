"""A proposer that plays back a JSON script, for end-to-end tests of the loop.

Each item of the script (a JSON list, option `script`) is one proposal:
  {"hypothesis": "...", "edits": {"target.py": "X = 5\\n"}}          whole-file edits
  {"hypothesis": "...", "worktree": {"target.py": "..."}}              written into the worktree
  {"error": "..."}                                                     a failed proposal
  {"hypothesis": "...", "edits": {...}, "repairs": [{"edits": {...}}]} fixes offered after a crash
The position in the script is the number of candidate experiments already decided, so a resumed
session re-proposes an interrupted item and never repeats a finished one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autoresearch.errors import ProposalError
from autoresearch.proposers.base import (
    ExperimentOutcome,
    Proposal,
    ProposalContext,
    Proposer,
    Usage,
)


class ScriptedProposer(Proposer):
    name = "scripted"

    def __init__(self, config: Any, options: Any = None) -> None:
        super().__init__(config, options)
        self.items: list[dict[str, Any]] = json.loads(Path(self.options["script"]).read_text())
        self.position = 0
        self.repairs_used = 0
        self.seen_stuck = False

    def observe(self, outcome: ExperimentOutcome) -> None:
        if outcome.summary.kind != "baseline":
            self.position += 1

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        self.repairs_used = 0
        if ctx.stuck:
            self.seen_stuck = True
            marker = Path(self.options["script"]).with_suffix(".stuck")
            marker.write_text(str(self.position))
        if self.position >= len(self.items):
            return None
        item = self.items[self.position]
        if "error" in item:
            raise ProposalError(item["error"])
        return self._proposal(ctx, item)

    def _proposal(self, ctx: ProposalContext, item: dict[str, Any]) -> Proposal:
        usage = [Usage(provider="script", model="none", input_tokens=10, output_tokens=5,
                       cache_read_tokens=2, cache_write_tokens=3, cost_usd=0.001)]
        if "worktree" in item:
            for path, content in item["worktree"].items():
                (ctx.worktree / path).parent.mkdir(parents=True, exist_ok=True)
                (ctx.worktree / path).write_text(content)
            return Proposal(hypothesis=item.get("hypothesis", ""), in_worktree=True, usage=usage)
        return Proposal(hypothesis=item.get("hypothesis", ""), edits=item.get("edits", {}),
                        rationale=item.get("rationale", ""), usage=usage)

    def repair(self, ctx: ProposalContext, failed: Proposal, log_tail: str) -> Proposal | None:
        repairs = self.items[self.position].get("repairs", [])
        if self.repairs_used >= len(repairs):
            return None
        fix = repairs[self.repairs_used]
        self.repairs_used += 1
        fix.setdefault("hypothesis", failed.hypothesis + " (repaired)")
        return self._proposal(ctx, fix)
