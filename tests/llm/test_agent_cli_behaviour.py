"""Honest agents, behaving the way the real CLIs do (`fake_agent.py` emulates each one's output).

Claude Code (`claude -p --output-format json|stream-json`) ends with a result object carrying
`total_cost_usd`, `is_error` and a `subtype` (`success`, `error_max_turns`, ...), and exits 0 on
most failures; Codex (`codex exec --json`) prints JSONL events, its token counts in
`turn.completed` and its failures as `turn.failed`; aider commits every edit itself unless told
`--no-auto-commits`. None of that may turn into a silent empty change, a lost change, a double
commit, a hang or an unbounded read.

The worktree is laid out as the harness's (a linked worktree detached at the session branch,
under `.autoresearch/worktrees/`), so the agent's log lands where a session keeps it.
"""

from __future__ import annotations

import logging
import os
import re
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from autoresearch import gitops
from autoresearch.gitops.status import changed_paths
from autoresearch.proposers.agent import AgentProposer
from autoresearch.proposers.agent import process as agent_process
from autoresearch.proposers.agent.proposer import SessionBranchMoved
from autoresearch.proposers.base import ProposalContext
from autoresearch.proposers.faults import FailedProposal, FatalProposerError, ProposerOutage
from tests.llm.conftest import (
    TARGET,
    MakeCtx,
    agent_timeout_counts_from,
    linked_session,
    make_config,
)
from tests.support.git_repo import git


@pytest.fixture
def session(worktree: Path, make_ctx: MakeCtx) -> ProposalContext:
    """The session's linked worktree, detached at `autoresearch/t`, as the harness leaves it."""
    return linked_session(worktree, make_ctx)


def agent(**options: Any) -> AgentProposer:
    options = {"agent": "claude", **options}
    return AgentProposer(make_config(**options), options)


def mode(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("FAKE_AGENT_MODE", name)


def branch_tip(ctx: ProposalContext) -> str:
    return git(ctx.worktree, "rev-parse", "refs/heads/autoresearch/t")


# --- the agent commits its own change ----------------------------------------------------------

def test_an_agents_own_commit_is_the_candidate_with_its_message_as_the_hypothesis(
        agents: Path, session: ProposalContext, monkeypatch: pytest.MonkeyPatch) -> None:
    wt = session.worktree
    head, tip = git(wt, "rev-parse", "HEAD"), branch_tip(session)
    mode(monkeypatch, "commit")
    proposal = agent().propose(session)
    assert proposal is not None and proposal.in_worktree
    # HEAD is back where the harness left it, the commit's content in the working tree: the
    # harness commits it once, itself; the session branch never moved.
    assert git(wt, "rev-parse", "HEAD") == head and branch_tip(session) == tip
    assert git(wt, "rev-parse", "--abbrev-ref", "HEAD") == "HEAD"  # still detached
    assert changed_paths(wt) == ["target.py"]
    assert (wt / "target.py").read_text() == TARGET.replace("X = 3.0", "X = 6.9")
    assert proposal.hypothesis == "Set X to 6.9, just below the optimum"
    assert "A smaller step." in proposal.rationale
    assert proposal.usage[0].cost_usd == 0.0123


def test_several_commits_and_uncommitted_files_all_make_the_one_candidate(
        agents: Path, session: ProposalContext, monkeypatch: pytest.MonkeyPatch) -> None:
    wt = session.worktree
    head = git(wt, "rev-parse", "HEAD")
    mode(monkeypatch, "twocommits")
    proposal = agent().propose(session)
    assert proposal is not None
    assert git(wt, "rev-parse", "HEAD") == head
    assert sorted(changed_paths(wt)) == ["lib/new.py", "target.py"]
    assert "X = 6.9" in (wt / "target.py").read_text() and (wt / "lib/new.py").exists()
    assert proposal.hypothesis == "first step; second step"


def test_aiders_auto_commit_is_folded_back_and_its_message_names_the_hypothesis(
        agents: Path, session: ProposalContext, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    # The preset passes --no-auto-commits; a user who turns aider's default back on gets the
    # same candidate, not a refusal.
    wt = session.worktree
    head, tip = git(wt, "rev-parse", "HEAD"), branch_tip(session)
    mode(monkeypatch, "improve")
    proposal = agent(agent="aider", extra_args=["--auto-commits"]).propose(session)
    assert proposal is not None
    assert git(wt, "rev-parse", "HEAD") == head and branch_tip(session) == tip
    assert changed_paths(wt) == ["target.py"]
    assert "X = 7.0" in (wt / "target.py").read_text()
    assert proposal.hypothesis == "feat: Set X to the optimum 7.0"
    assert proposal.usage[0].cost_usd == pytest.approx(0.03)


def test_a_commit_that_moves_the_session_branch_stops_the_session(
        agents: Path, session: ProposalContext, monkeypatch: pytest.MonkeyPatch) -> None:
    wt = session.worktree
    head, tip = git(wt, "rev-parse", "HEAD"), branch_tip(session)
    mode(monkeypatch, "refs")
    with pytest.raises(SessionBranchMoved) as info:
        agent().propose(session)
    assert info.value.exit_code == 3
    assert "the agent ran git" in info.value.reason
    assert "the session branch autoresearch/t was moved while the agent ran" in info.value.reason
    assert git(wt, "rev-parse", "HEAD") == head and branch_tip(session) == tip
    assert changed_paths(wt) == []


# --- errors reported in the output of a CLI that exits 0 ---------------------------------------

def test_error_max_turns_rejects_the_unfinished_change_with_the_reason(
        agents: Path, session: ProposalContext, monkeypatch: pytest.MonkeyPatch) -> None:
    mode(monkeypatch, "maxturns")
    with pytest.raises(FailedProposal) as info:
        agent().propose(session)
    what = info.value.what
    assert "the agent reported an error: error_max_turns" in what
    assert "its unfinished change was discarded" in what
    assert "--max-turns" in (info.value.fix or "")
    assert info.value.usage[0].cost_usd == 0.004  # billed all the same
    assert changed_paths(session.worktree) == []
    assert (session.worktree / "target.py").read_text() == TARGET


def test_a_codex_turn_failed_event_rejects_its_change(
        agents: Path, session: ProposalContext, monkeypatch: pytest.MonkeyPatch) -> None:
    mode(monkeypatch, "turnfailed")
    with pytest.raises(FailedProposal,
                       match="reported an error: stream disconnected before completion"):
        agent(agent="codex").propose(session)
    assert changed_paths(session.worktree) == []


def test_a_refused_login_in_the_json_result_stops_the_session_with_the_fix(
        agents: Path, session: ProposalContext, monkeypatch: pytest.MonkeyPatch) -> None:
    mode(monkeypatch, "jsonauth")
    with pytest.raises(FatalProposerError) as info:
        agent().propose(session)
    assert "cannot authenticate: Invalid API key" in info.value.what
    assert "/login" in (info.value.fix or "")


def test_a_usage_limit_pauses_the_session_instead_of_rejecting_experiments(
        agents: Path, session: ProposalContext, monkeypatch: pytest.MonkeyPatch) -> None:
    mode(monkeypatch, "ratelimit")
    with pytest.raises(ProposerOutage) as info:
        agent().propose(session)
    assert "usage limit reached" in info.value.what and info.value.retry_after_s == 300


def test_a_usage_limit_with_its_reset_time_pauses_until_then(
        agents: Path, session: ProposalContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """Claude Code names when its usage limit resets: the session waits until a minute after
    that (not 300 s at a time through a 5-hour window); an absurdly far one is bounded."""
    mode(monkeypatch, "ratelimit")
    monkeypatch.setenv("FAKE_AGENT_RESET", str(int(time.time()) + 2 * 3600))
    with pytest.raises(ProposerOutage) as info:
        agent().propose(session)
    assert 2 * 3600 + 30 <= info.value.retry_after_s <= 2 * 3600 + 60
    monkeypatch.setenv("FAKE_AGENT_RESET", str(int(time.time()) + 30 * 86400))
    with pytest.raises(ProposerOutage) as info:
        agent().propose(session)
    assert info.value.retry_after_s == 6 * 3600


def test_an_agent_that_only_answers_is_recorded_with_what_it_said(
        agents: Path, session: ProposalContext, monkeypatch: pytest.MonkeyPatch) -> None:
    mode(monkeypatch, "answer")
    with pytest.raises(FailedProposal) as info:
        agent().propose(session)
    assert info.value.what == ("the agent made no change; it said: X = 3.0 looks deliberate to me; "
                               "I would rather not change it.")
    mode(monkeypatch, "nothing")
    with pytest.raises(FailedProposal, match="made no change; it said: Done."):
        agent().propose(session)


# --- cost ----------------------------------------------------------------------------------------

def test_an_agent_that_reports_no_cost_is_said_to_be_unmetered(
        agents: Path, session: ProposalContext, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    mode(monkeypatch, "improve")
    with caplog.at_level(logging.WARNING):
        agent().propose(session)  # Claude Code reports total_cost_usd
        assert "reported no cost" not in caplog.text
        gitops.checkout(session.worktree, "HEAD")
        custom = agent(agent="custom", command="myagent --prompt-file {prompt_file}")
        for _ in range(2):
            proposal = custom.propose(session)
            assert proposal is not None and proposal.usage == []
            gitops.checkout(session.worktree, "HEAD")
    warnings = [r.getMessage() for r in caplog.records if "reported no cost" in r.getMessage()]
    assert len(warnings) == 1  # once a session, not once an experiment
    assert "the custom agent reported no cost" in warnings[0]
    assert "max_usd cannot stop them" in warnings[0]


def test_codex_tokens_without_a_price_are_said_to_be_unmetered(
        agents: Path, session: ProposalContext, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    mode(monkeypatch, "improve")
    with caplog.at_level(logging.WARNING):
        agent(agent="codex", model="gpt-6.2-sol").propose(session)
        assert "reported no cost" not in caplog.text  # priced from the built-in table
        gitops.checkout(session.worktree, "HEAD")
        proposal = agent(agent="codex").propose(session)
    assert proposal is not None and proposal.usage[0].input_tokens == 5000
    assert "the codex agent reported no cost" in caplog.text


# --- interactive prompts ---------------------------------------------------------------------------

@pytest.mark.parametrize("preset", ["claude", "aider"])
def test_an_approval_prompt_gets_a_closed_stdin_and_never_hangs(
        agents: Path, session: ProposalContext, monkeypatch: pytest.MonkeyPatch,
        preset: str) -> None:
    mode(monkeypatch, "ask")
    started = time.monotonic()
    with pytest.raises(FailedProposal, match="made no change; it said: .*Edit declined"):
        agent(agent=preset, agent_timeout_seconds=60).propose(session)
    assert time.monotonic() - started < 20


def test_an_agent_waiting_for_approval_times_out_naming_the_prompt_and_the_option(
        agents: Path, session: ProposalContext, monkeypatch: pytest.MonkeyPatch) -> None:
    mode(monkeypatch, "askwait")
    monkeypatch.setattr(agent_process, "GRACE_SECONDS", 0.5)
    # The 2 s count from the prompt on (the agent writes its pid once it printed it): from the
    # launch, a busy machine could spend them starting Python, and there would be no prompt.
    agent_timeout_counts_from(Path(os.environ["FAKE_AGENT_PIDFILE"]), monkeypatch)
    with pytest.raises(FailedProposal) as info:
        agent(agent_timeout_seconds=2).propose(session)
    assert "did not finish within 2 s" in info.value.what
    assert "its last output: 'Allow edit to target.py? [y/N]'" in info.value.what
    assert "agent_timeout_seconds" in (info.value.fix or "")
    assert "approves edits without asking" in (info.value.fix or "")


# --- huge output -----------------------------------------------------------------------------------

def test_megabytes_of_stream_json_are_read_in_bounded_memory_and_their_log_capped(
        agents: Path, session: ProposalContext, monkeypatch: pytest.MonkeyPatch,
        worktree: Path) -> None:
    mode(monkeypatch, "flood")
    monkeypatch.setenv("FAKE_AGENT_FLOOD_MB", "24")
    tracemalloc.start()
    try:
        proposal = agent(extra_args=["--output-format", "stream-json", "--verbose"]).propose(
            session)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"{peak / 1e6:.1f} MB held for 24 MB of output"
    # The result object at the end is still read: the hypothesis and the cost.
    assert proposal is not None and proposal.hypothesis == "set X to the optimum 7"
    assert proposal.usage[0].cost_usd == 0.0123
    # The log keeps its head and its tail within [verify] max_log_mb (20 MB by default), the
    # middle cut with a marker saying how much, as a verify run's log is.
    log = worktree / ".autoresearch" / "sessions" / "t" / "logs" / "t-0099" / "agent-propose-1.log"
    assert 10 * 1024 * 1024 < log.stat().st_size <= 20 * 1024 * 1024
    with log.open("rb") as fh:
        assert fh.readline().startswith(b'{"type": "assistant"')
        fh.seek(10 * 1024 * 1024 - 200)
        assert re.search(rb"\[autoresearch: \d+ bytes of output dropped here\]", fh.read(4096))
        fh.seek(-300, os.SEEK_END)
        assert b'"total_cost_usd": 0.0123' in fh.read()
