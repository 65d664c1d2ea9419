"""The `agent` proposer: a headless coding-agent CLI (Claude Code, Codex, aider, custom) edits
the experiment's worktree, and the resulting diff is the proposal.

Modules: `presets` (how to call each CLI and read its cost), `process` (the run, its timeout and
process-group kill), `worktree` (git bookkeeping around a run), `prompt` (the task), `proposer`.
"""

from autoresearch.proposers.agent.proposer import AgentProposer

__all__ = ["AgentProposer"]
