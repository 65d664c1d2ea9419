"""A proposer that plays back a JSON script, for end-to-end tests of the loop.

Each item of the script (a JSON list, option `script`) is one proposal:
  {"hypothesis": "...", "edits": {"target.py": "X = 5\\n"}}          whole-file edits
  {"hypothesis": "...", "worktree": {"target.py": "..."}}              written into the worktree
  {"error": "..."}                                                     a failed proposal
  {"hypothesis": "...", "edits": {...}, "repairs": [{"edits": {...}}]} fixes offered after a crash
Each experiment gets the first item that no decided experiment and no experiment in flight (a
sibling slot's) was given. Which experiment got which item is kept beside the script, so a
resumed session re-proposes an interrupted item and never repeats a decided one, whatever order
parallel experiments finished in.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
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
        script = Path(self.options["script"])
        self.items: list[dict[str, Any]] = json.loads(script.read_text())
        self._assignments = script.with_suffix(".assigned.json")
        self.assigned: dict[str, int] = (json.loads(self._assignments.read_text())
                                         if self._assignments.exists() else {})
        self.decided: set[int] = set()  # items whose experiment was decided
        self.repairs_used: dict[str, int] = {}  # experiment id -> repairs given
        self.seen_stuck = False

    @property
    def position(self) -> int:
        return len(self.decided)

    def resume(self, history: Sequence[ExperimentOutcome]) -> None:
        for outcome in history:
            self.observe(outcome)

    def observe(self, outcome: ExperimentOutcome) -> None:
        item = self.assigned.get(outcome.summary.id)
        if item is not None:
            self.decided.add(item)

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        if ctx.stuck:
            self.seen_stuck = True
            marker = Path(self.options["script"]).with_suffix(".stuck")
            marker.write_text(str(self.position))
        running = {self.assigned[e.id] for e in ctx.in_flight if e.id in self.assigned}
        free = [i for i in range(len(self.items)) if i not in self.decided | running]
        if not free:
            return None
        self.assigned[ctx.experiment_id] = free[0]
        # Atomically: the kill -9 tests may kill the session in the middle of this write. The
        # temporary file is this process's own: two sessions may share the script.
        tmp = self._assignments.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.assigned))
        tmp.replace(self._assignments)
        item = self.items[free[0]]
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
        repairs = self.items[self.assigned[ctx.experiment_id]].get("repairs", [])
        used = self.repairs_used.get(ctx.experiment_id, 0)
        if used >= len(repairs):
            return None
        fix = dict(repairs[used])
        self.repairs_used[ctx.experiment_id] = used + 1
        fix.setdefault("hypothesis", failed.hypothesis + " (repaired)")
        return self._proposal(ctx, fix)
