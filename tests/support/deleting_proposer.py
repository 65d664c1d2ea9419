"""A proposer that deletes one `E*` line of target.py at a time (a simplification), for the
simplicity-ratchet test; it has nothing left to try when no such line remains."""

from __future__ import annotations

from autoresearch.proposers.base import Proposal, ProposalContext, Proposer


class DeletingProposer(Proposer):
    name = "deleting"

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        lines = ctx.read("target.py").splitlines()
        tried = len(ctx.history)
        deletable = [i for i, line in enumerate(lines) if line.startswith("E")]
        if not deletable:
            return None
        del lines[deletable[tried % len(deletable)]]
        return Proposal("delete a knob worth one σ", {"target.py": "\n".join(lines) + "\n"})
