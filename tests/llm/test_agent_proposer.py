"""The agent proposer with fake agent CLIs on PATH, in a real git worktree."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest

from autoresearch import gitops, guardrails
from autoresearch.gitops.status import changed_paths
from autoresearch.proposers.agent import AgentProposer
from autoresearch.proposers.agent import process as agent_process
from autoresearch.proposers.base import Proposal
from autoresearch.proposers.faults import FailedProposal, FatalProposerError
from tests.llm.conftest import TARGET, MakeCtx, agent_timeout_counts_from, make_config
from tests.support.git_repo import git
from tests.support.processes import alive


def calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def agent(**options: Any) -> AgentProposer:
    options = {"agent": "claude", **options}
    return AgentProposer(make_config(**options), options)


def test_claude_preset_edits_the_worktree_and_reports_its_cost(
        agents: Path, make_ctx: MakeCtx, worktree: Path) -> None:
    proposal = agent().propose(make_ctx())
    assert proposal is not None and proposal.in_worktree and proposal.edits == {}
    assert proposal.hypothesis == "set X to the optimum 7"
    assert "smallest at 7" in proposal.rationale
    (u,) = proposal.usage
    assert (u.provider, u.model, u.cost_usd) == ("agent:claude", "claude-sonnet-4-6", 0.0123)
    assert (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens) == (
        1500, 400, 9000, 700)
    assert changed_paths(worktree) == ["target.py"]
    (call,) = calls(agents)
    assert call["argv"][:3] == ["-p", "--output-format", "json"]
    assert "Bash" in call["argv"][call["argv"].index("--disallowedTools") + 1]
    assert Path(call["cwd"]).resolve() == worktree.resolve()
    prompt = call["prompt"]
    assert "Do NOT run the verify command (`python score.py`)" in prompt
    assert "Do NOT commit" in prompt and "Minimise the score" in prompt
    assert "do-not-leak-123" not in prompt


def test_codex_preset_reads_token_usage_from_jsonl(agents: Path, make_ctx: MakeCtx) -> None:
    proposal = agent(agent="codex", model="gpt-6.2-sol").propose(make_ctx())
    assert proposal is not None and proposal.hypothesis == "set X to the optimum 7"
    (u,) = proposal.usage
    assert (u.input_tokens, u.cache_read_tokens, u.output_tokens) == (5000, 15000, 800)
    assert u.cost_usd == pytest.approx((5000 * 2.0 + 15000 * 0.10 + 800 * 10) / 1e6)
    argv = calls(agents)[0]["argv"]
    assert argv[:5] == ["exec", "--json", "--sandbox", "workspace-write", "--model"]
    assert argv[-1] == "-"


def test_codex_without_a_model_records_its_tokens_unpriced(
        agents: Path, make_ctx: MakeCtx, worktree: Path) -> None:
    # Codex does not report its model: pricing the tokens as some guessed model would be wrong.
    proposal = agent(agent="codex").propose(make_ctx())
    assert proposal is not None
    (u,) = proposal.usage
    assert (u.model, u.input_tokens, u.cost_usd) == ("codex-default", 5000, 0.0)


def test_aider_preset_passes_scope_files_and_cleans_its_scratch_files(
        agents: Path, make_ctx: MakeCtx, worktree: Path) -> None:
    proposal = agent(agent="aider").propose(make_ctx())
    assert proposal is not None
    (u,) = proposal.usage
    assert u.cost_usd == pytest.approx(0.03)
    assert (u.input_tokens, u.cache_read_tokens, u.output_tokens) == (9500, 2500, 1200)
    assert not (worktree / ".aider.chat.history.md").exists()
    assert changed_paths(worktree) == ["target.py"]
    argv = calls(agents)[0]["argv"]
    assert {"--yes-always", "--no-auto-commits", "--no-suggest-shell-commands",
            "--message-file"} <= set(argv)
    assert argv[-2:] == ["lib/util.py", "target.py"]  # the visible scope, no protected file


def test_custom_command_template(agents: Path, make_ctx: MakeCtx, worktree: Path) -> None:
    p = agent(agent="custom", command="myagent --prompt-file {prompt_file} --cwd {worktree}")
    proposal = p.propose(make_ctx())
    assert proposal is not None and proposal.hypothesis == "set X to the optimum 7"
    assert proposal.usage == []
    argv = calls(agents)[0]["argv"]
    assert argv[0] == "--prompt-file" and argv[3] == str(worktree)
    assert not Path(argv[1]).exists()  # the prompt file lived outside the worktree, and is gone


def test_protected_and_out_of_scope_changes_reach_the_guardrails(
        agents: Path, make_ctx: MakeCtx, worktree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_ctx()
    rules = guardrails.Rules(ctx.config.scope, ctx.config.all_protected)
    for mode, expected in (("protected", "score.py: protected"),
                           ("outside", "notes.md: outside the scope")):
        monkeypatch.setenv("FAKE_AGENT_MODE", mode)
        proposal = agent().propose(ctx)
        assert proposal is not None and proposal.in_worktree
        problems = guardrails.check_changed_paths(worktree, changed_paths(worktree), rules)
        assert any(expected in p for p in problems)
        gitops.checkout(worktree, "HEAD")  # what the harness does with a rejected change


def test_a_commit_onto_a_checked_out_branch_is_refused_and_undone(
        agents: Path, make_ctx: MakeCtx, worktree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Here the worktree has `main` checked out, so the agent's commit moves a branch: unlike a
    # commit on the detached HEAD the harness gives it (test_agent_cli_behaviour.py).
    monkeypatch.setenv("FAKE_AGENT_MODE", "commit")
    head = git(worktree, "rev-parse", "HEAD")
    with pytest.raises(FailedProposal) as info:
        agent().propose(make_ctx())
    assert "the agent ran git: it may commit only on the detached HEAD" in info.value.what
    assert "HEAD moved" in info.value.what and info.value.usage[0].cost_usd == 0.0123
    assert git(worktree, "rev-parse", "HEAD") == head
    assert changed_paths(worktree) == []
    assert (worktree / "target.py").read_text() == TARGET


def test_no_change_is_a_failed_proposal_with_its_cost(
        agents: Path, make_ctx: MakeCtx, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_AGENT_MODE", "nothing")
    with pytest.raises(FailedProposal) as info:
        agent().propose(make_ctx())
    assert "made no change" in info.value.what and info.value.usage[0].cost_usd == 0.0123


def test_timeout_kills_the_whole_process_group_and_restores_the_worktree(
        agents: Path, make_ctx: MakeCtx, worktree: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_AGENT_MODE", "hang")
    monkeypatch.setattr(agent_process, "GRACE_SECONDS", 0.5)
    # The 1 s starts once the agent's child runs (its pid file written whole): from the launch,
    # a loaded machine could spend it starting Python, and no child would be there to kill.
    pidfile = tmp_path / "child.pid"
    timing = agent_timeout_counts_from(pidfile, monkeypatch)
    with pytest.raises(FailedProposal, match="did not finish within 1 s"):
        agent(agent_timeout_seconds=1).propose(make_ctx())
    (started,) = timing
    # 1 s, 0.5 s of grace, then the restore's git commands (seconds when the machine is busy):
    # not the 600 s the agent and its child would sleep.
    assert time.monotonic() - started < 20
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.05)
    assert not alive(pid), "the agent's child survived the timeout"
    assert (worktree / "target.py").read_text() == TARGET
    assert changed_paths(worktree) == []


def test_an_unauthenticated_cli_stops_the_session(
        agents: Path, make_ctx: MakeCtx, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_AGENT_MODE", "auth")
    with pytest.raises(FatalProposerError, match="cannot authenticate"):
        agent().propose(make_ctx())
    with pytest.raises(FatalProposerError, match="was not found"):
        agent(executable="/nonexistent/claude").propose(make_ctx())


def test_repair_returns_the_fixed_candidate_as_edits(
        agents: Path, make_ctx: MakeCtx, worktree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = git(worktree, "rev-parse", "HEAD")
    # The harness committed the crashed candidate on top of the incumbent and left it checked out.
    (worktree / "target.py").write_text("import missing_module\n" + TARGET)
    git(worktree, "commit", "-qam", "candidate")
    crashed = git(worktree, "rev-parse", "HEAD")
    (worktree / "run.log").write_text("verify output\n")  # left behind by the verify run
    ctx = make_ctx()
    assert ctx.incumbent is not None
    ctx = dataclasses.replace(ctx, incumbent=dataclasses.replace(ctx.incumbent, commit=base))
    monkeypatch.setenv("FAKE_AGENT_MODE", "repair")
    failed = Proposal(hypothesis="use a module", in_worktree=True)
    fixed = agent().repair(ctx, failed, "ModuleNotFoundError: missing_module")
    assert fixed is not None and not fixed.in_worktree
    assert fixed.edits == {"target.py": "import math\n" + TARGET}
    assert fixed.hypothesis == "use a module" and fixed.usage[0].purpose == "repair"
    assert "ModuleNotFoundError: missing_module" in calls(agents)[0]["prompt"]
    assert git(worktree, "rev-parse", "HEAD") == crashed
    assert changed_paths(worktree) == ["run.log"]  # the worktree is as the harness left it


def test_a_repair_that_changes_nothing_fails_with_the_tokens_it_spent(
        agents: Path, make_ctx: MakeCtx, worktree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (worktree / "target.py").write_text("import missing_module\n" + TARGET)
    git(worktree, "commit", "-qam", "candidate")
    monkeypatch.setenv("FAKE_AGENT_MODE", "nothing")
    p = agent()
    with pytest.raises(FailedProposal) as info:
        p.repair(make_ctx(), Proposal(hypothesis="use a module", in_worktree=True), "boom")
    # The call is billed with the failure, to the crashed experiment; nothing carries over.
    assert "the agent made no repair" in info.value.what
    assert [(u.purpose, u.cost_usd) for u in info.value.usage] == [("repair", 0.0123)]
    monkeypatch.setenv("FAKE_AGENT_MODE", "improve")
    git(worktree, "reset", "-q", "--hard", "HEAD^")
    proposal = p.propose(make_ctx())
    assert proposal is not None and [u.purpose for u in proposal.usage] == ["propose"]


@pytest.mark.parametrize(("link", "refusal"), [
    ("ln -s ../secrets.txt lib/notes.py", "lib/notes.py is a symbolic link"),
    ("mkdir hidden && echo 'Y = 1' > hidden/util.py && rm -r lib && ln -s hidden lib",
     "lib is a symbolic link"),
    ("ln secrets.txt lib/notes.py", "lib/notes.py is a hard link to another file"),
])
def test_a_repair_never_reads_a_protected_file_through_a_link(
        make_ctx: MakeCtx, worktree: Path, tmp_path: Path, link: str, refusal: str) -> None:
    (worktree / "target.py").write_text("import missing_module\n" + TARGET)
    git(worktree, "commit", "-qam", "candidate")
    crashed = git(worktree, "rev-parse", "HEAD")
    script = tmp_path / "agent.sh"
    script.write_text(f"sed -i 's/import missing_module/import math/' target.py\n{link}\n")
    repairer = AgentProposer(make_config(), {"agent": "custom", "command": f"bash {script}"})
    with pytest.raises(FailedProposal) as info:
        repairer.repair(make_ctx(), Proposal(hypothesis="use a module", in_worktree=True), "boom")
    assert f"the repair cannot be taken: {refusal}" in info.value.what
    assert "do-not-leak" not in info.value.what
    assert git(worktree, "rev-parse", "HEAD") == crashed
    assert changed_paths(worktree) == []  # the links are gone with the rest of the run


def test_the_prompt_names_the_verify_command_as_it_runs_not_its_template(
        make_ctx: MakeCtx) -> None:
    from autoresearch.config import parse_config
    from autoresearch.proposers.agent import prompt as agent_prompt
    from autoresearch.proposers.llm.context import build_context

    config = parse_config({
        "scope": ["target.py"], "protected": ["score.py"],
        "verify": {"command": "{python} score.py --fast", "budget_seconds": 5},
        "metric": {"name": "score", "direction": "minimize"},
        "proposer": {"name": "agent", "agent": "claude"},
    })
    ctx = make_ctx(config)
    text = agent_prompt.render(ctx, build_context(ctx, include_files=False), agent_prompt.PROPOSE)
    assert "Do NOT run the verify command (`python score.py --fast`)" in text
    assert "{python}" not in text


def test_a_files_placeholder_alone_becomes_one_argument_per_file(tmp_path: Path) -> None:
    from autoresearch.proposers.agent.presets import CustomPreset
    from autoresearch.proposers.llm.prices import PriceTable

    preset = CustomPreset({"command": "myagent --edit {files} --note 'in {files}'"}, PriceTable())
    call = preset.invocation("p", tmp_path / "prompt.md", tmp_path, ["a.py", "lib/b c.py"])
    assert call.argv == ["myagent", "--edit", "a.py", "lib/b c.py", "--note", "in a.py lib/b c.py"]


@pytest.mark.parametrize("line", [
    '{"total_cost_usd": Infinity, "usage": {"input_tokens": 10}}',
    '{"total_cost_usd": -0.5, "usage": {"input_tokens": 10}}',
    '{"cost_usd": "0.1", "usage": {"input_tokens": 10}}',
    '{"total_cost_usd": 1e400, "usage": {"input_tokens": 10}}',
])
def test_a_cost_that_cannot_be_one_counts_as_unreported(line: str) -> None:
    from autoresearch.proposers.agent.presets import make_preset
    from autoresearch.proposers.llm.prices import PriceTable

    custom = make_preset({"agent": "custom", "command": "myagent"}, PriceTable(None))
    report = custom.report(line + "\n", "", "propose")
    assert report.usage is not None and report.usage.cost_usd == 0.0
    assert not report.cost_known  # said to be unmetered, as a run that reported no cost


@pytest.mark.parametrize("tokens", ["-1000000", "NaN", "Infinity", "1e30", "10000000000000"])
def test_token_counts_that_cannot_be_ones_count_as_none(tokens: str) -> None:
    from autoresearch.proposers.agent.presets import make_preset
    from autoresearch.proposers.llm.prices import PriceTable

    priced = make_preset({"agent": "custom", "command": "myagent", "model": "claude-sonnet-4-6"},
                         PriceTable(None))
    line = '{"usage": {"input_tokens": TOKENS, "output_tokens": 100}}\n'.replace("TOKENS", tokens)
    report = priced.report(line, "", "propose")
    assert report.usage is not None and report.usage.input_tokens == 0
    assert 0 < report.usage.cost_usd < 0.01  # the 100 output tokens alone
