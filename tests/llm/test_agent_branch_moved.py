"""The session branch moved while a coding agent is at work: by the user from another terminal,
or by the agent. The guard cannot tell which, so it does what the session does when its branch
moves between keeps (tests/test_branch_moved.py): the session stops (exit 3), the commits the
branch held saved under refs/autoresearch/<tag>/saved/ and named, and the same command resumes.

The fake agent (`fake_agent.py`) waits with FAKE_AGENT_GO set until the test has made its commit;
real git repositories, the real CLI for the session end to end.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from autoresearch.proposers.agent import AgentProposer
from autoresearch.proposers.agent.gitstate import GitState
from autoresearch.proposers.agent.proposer import SessionBranchMoved
from autoresearch.proposers.base import Meter, ProposalContext
from autoresearch.proposers.faults import FailedProposal, FatalProposerError, OutOfTime
from tests.conftest import cli_env, run_cli
from tests.llm.conftest import (
    MakeCtx,
    agent_timeout_counts_from,
    linked_session,
    make_config,
    use_fake_agent,
)
from tests.support.git_repo import git
from tests.test_resume import query


def wait_for(path: Path, proc: subprocess.Popen[str] | None = None, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"the session ended before the agent was at work:\n{out}")
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def commit_on(repo: Path, branch: str, message: str = "mine") -> str:
    """A commit made on `branch` from outside the session (another terminal), as
    tests/test_branch_moved.py makes it."""
    tip = git(repo, "rev-parse", branch)
    mine = git(repo, "commit-tree", "-p", tip, "-m", message, f"{tip}^{{tree}}")
    git(repo, "update-ref", f"refs/heads/{branch}", mine, tip)
    return mine


def saved_refs(repo: Path, tag: str) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)",
              f"refs/autoresearch/{tag}/saved/")
    return dict(line.split(" ", 1) for line in out.splitlines())


def test_a_users_commit_on_the_session_branch_during_an_agent_run_stops_it_saved(
        toy_repo: Path, tmp_path: Path) -> None:
    # The outcome of tests/test_branch_moved.py's first test, with an agent at work when the
    # commit is made: exit 3, the commit saved and named, the experiment interrupted, and the
    # same command resumes from the session's own incumbent, the commit still saved.
    env = use_fake_agent(toy_repo, tmp_path, "improve\nimprove\n")
    env["FAKE_AGENT_GO"] = str(tmp_path / "go")
    at_work = Path(env["FAKE_AGENT_PIDFILE"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "autoresearch", "run", "--repo", str(toy_repo), "--tag", "ag",
         "--iterations", "3"], cwd=toy_repo, env=cli_env(env), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    wait_for(at_work, proc)
    base = git(toy_repo, "rev-parse", "autoresearch/ag")
    mine = commit_on(toy_repo, "autoresearch/ag")
    (tmp_path / "go").touch()
    out, _ = proc.communicate(timeout=180)
    said = " ".join(out.split())
    assert proc.returncode == 3, said
    ref = f"refs/autoresearch/ag/saved/{mine[:12]}"
    assert saved_refs(toy_repo, "ag") == {ref: mine}
    assert ("the session branch autoresearch/ag was moved while the agent ran: it pointed at "
            f"{mine[:10]}, not at {base[:10]} where the session last set it") in said
    assert f"saved as {ref}" in said and f"git log {ref}" in said
    assert "Run the same command to resume" in said
    assert "the agent ran git" not in said  # not blamed on the agent: it may be the user's
    # The branch holds only what the session set; the agent's change was not measured.
    assert git(toy_repo, "rev-parse", "autoresearch/ag") == base
    rows = query(toy_repo, "SELECT status, decision_reason, cost_usd FROM experiments "
                 "ORDER BY seq")
    assert [row[0] for row in rows] == ["keep", "interrupted"]  # the baseline, the agent's
    assert "the session stopped: the session branch autoresearch/ag was moved" in str(rows[1][1])
    assert rows[1][2] == pytest.approx(0.0123)  # the agent's run is billed all the same
    assert not (toy_repo / ".autoresearch/sessions/ag/lock").exists()
    # The same command resumes: the commit stays saved, the branch moves on from the incumbent.
    result = run_cli(toy_repo, "run", "--tag", "ag", "--iterations", "3", env=env, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert saved_refs(toy_repo, "ag") == {ref: mine}
    assert git(toy_repo, "show", "autoresearch/ag:target.py") == "X = 7.0"
    assert mine not in git(toy_repo, "rev-list", "autoresearch/ag").split()  # never on it


@pytest.fixture
def session(worktree: Path, make_ctx: MakeCtx) -> ProposalContext:
    return linked_session(worktree, make_ctx)


def agent(**options: object) -> AgentProposer:
    options = {"agent": "claude", **options}
    return AgentProposer(make_config(**options), options)


def propose_meanwhile(proposer: AgentProposer, ctx: ProposalContext, at_work: Path,
                      meanwhile: Callable[[], None]) -> BaseException | None:
    """Run `proposer.propose(ctx)` while `meanwhile()` runs once the agent is at work; what it
    raised (None: it returned)."""
    raised: list[BaseException] = []

    def call() -> None:
        try:
            proposer.propose(ctx)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            raised.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    try:
        wait_for(at_work)
        meanwhile()
    finally:
        thread.join(120)
    assert not thread.is_alive()
    return raised[0] if raised else None


def test_a_commit_on_the_session_branch_during_a_timed_out_agent_run_stops_the_session(
        agents: Path, session: ProposalContext, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The agent waits at an approval prompt until its timeout; the user commits meanwhile. Not
    # "did not finish" and the session going on: the branch moved, the session stops.
    monkeypatch.setenv("FAKE_AGENT_MODE", "askwait")
    marker = tmp_path / "committed"
    agent_timeout_counts_from(marker, monkeypatch)
    wt = session.worktree
    base = git(wt, "rev-parse", "autoresearch/t")
    made: list[str] = []

    def user_commits() -> None:
        made.append(commit_on(wt, "autoresearch/t"))
        marker.touch()

    raised = propose_meanwhile(agent(agent_timeout_seconds=1), session,
                               Path(os.environ["FAKE_AGENT_PIDFILE"]), user_commits)
    assert isinstance(raised, SessionBranchMoved), raised
    ref = f"refs/autoresearch/t/saved/{made[0][:12]}"
    assert saved_refs(wt, "t") == {ref: made[0]}
    assert f"saved as {ref}" in raised.reason and raised.exit_code == 3
    assert git(wt, "rev-parse", "autoresearch/t") == base


@pytest.mark.parametrize("cut_by", ["agent_timeout_seconds", "the session's time limit"])
def test_a_commit_on_another_branch_during_a_run_cut_short_is_saved_and_named(
        agents: Path, session: ProposalContext, worktree: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, cut_by: str) -> None:
    # A commit on a branch of the user's, not checked out, while the agent waits until it is
    # stopped: the guard puts the branch back as the agent's doing, so the reason the run
    # ended says where the commit is saved, whatever cut the run short.
    git(worktree, "branch", "side")
    monkeypatch.setenv("FAKE_AGENT_MODE", "askwait")
    marker = tmp_path / "committed"
    agent_timeout_counts_from(marker, monkeypatch)
    wt = session.worktree
    side = git(wt, "rev-parse", "side")
    made: list[str] = []

    def user_commits() -> None:
        made.append(commit_on(wt, "side"))
        marker.touch()

    ctx, proposer = session, agent(agent_timeout_seconds=1)
    if cut_by != "agent_timeout_seconds":
        ctx = dataclasses.replace(session, meter=Meter(record=lambda usage: None,
                                                       deadline=time.time() + 5))
        proposer = agent()
    raised = propose_meanwhile(proposer, ctx, Path(os.environ["FAKE_AGENT_PIDFILE"]),
                               user_commits)
    assert isinstance(raised, FailedProposal if cut_by == "agent_timeout_seconds"
                      else OutOfTime), raised
    ref = f"refs/autoresearch/t/saved/{made[0][:12]}"
    assert saved_refs(wt, "t") == {ref: made[0]}
    assert "refs/heads/side held 1 commit(s)" in raised.what
    assert f"saved as {ref} before it was put back at {side[:10]}" in raised.what
    assert git(wt, "rev-parse", "side") == side


def test_a_session_branch_moved_while_the_agent_changed_your_checkout_is_named_and_saved(
        agents: Path, session: ProposalContext, worktree: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Both at once: the agent writes to the user's checkout (the session stops, exit 5, as
    # before), and the session branch moved meanwhile: the stop names that move too, and where
    # the commit it held is saved.
    monkeypatch.setenv("FAKE_AGENT_MODE", "checkout")
    monkeypatch.setenv("FAKE_AGENT_GO", str(tmp_path / "go"))
    wt = session.worktree
    made: list[str] = []

    def user_commits() -> None:
        made.append(commit_on(wt, "autoresearch/t"))
        (tmp_path / "go").touch()

    raised = propose_meanwhile(agent(), session, Path(os.environ["FAKE_AGENT_PIDFILE"]),
                               user_commits)
    assert isinstance(raised, FatalProposerError), raised
    what = " ".join(raised.what.split())
    assert f"the agent changed your own checkout {worktree}" in what
    assert "the session branch autoresearch/t was moved while the agent ran" in what
    ref = f"refs/autoresearch/t/saved/{made[0][:12]}"
    assert f"saved as {ref}" in what and saved_refs(wt, "t") == {ref: made[0]}


def test_commits_are_saved_when_what_held_them_before_the_run_is_gone(
        session: ProposalContext) -> None:
    # The run deleted a ref and the only copy of its commit's object: git cannot say whether
    # the commits of a ref being put back are held elsewhere, so they are saved.
    wt = session.worktree
    tree = git(wt, "rev-parse", "HEAD^{tree}")
    doomed = git(wt, "commit-tree", "-p", "HEAD", "-m", "only under a ref", tree)
    git(wt, "update-ref", "refs/heads/doomed", doomed)
    state = GitState.take(wt, "t")
    stray = git(wt, "commit-tree", "-p", "HEAD", "-m", "the agent's", tree)
    git(wt, "update-ref", "refs/heads/agent-branch", stray)
    git(wt, "update-ref", "-d", "refs/heads/doomed")
    objects = Path(git(wt, "rev-parse", "--path-format=absolute", "--git-common-dir")) / "objects"
    (objects / doomed[:2] / doomed[2:]).unlink()
    left = " ".join(state.restore(wt))
    assert saved_refs(wt, "t") == {f"refs/autoresearch/t/saved/{stray[:12]}": stray}
    assert "refs/heads/agent-branch held some commit(s)" in left
    assert "refs/heads/agent-branch" not in git(wt, "for-each-ref", "refs/heads/")
