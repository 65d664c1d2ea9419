"""What an agent does to git outside the worktree it was given: a worktree of its own, another
session's refs. Both are refused and put back, unless they are a live session's own doing.

The layout is the harness's: the user's repository (`main` checked out) and the session's linked
worktree, detached at `autoresearch/t`, under `.autoresearch/worktrees/t`. A session is live
while its lock (`.autoresearch/sessions/<tag>/lock`) is held by its process: these tests hold
it from a process of their own (this process runs the agent, as the orchestrator does, and a
lock it holds is never another session's).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from autoresearch.proposers.agent import AgentProposer
from autoresearch.proposers.agent.gitstate import GitState
from autoresearch.proposers.agent.proposer import SessionBranchMoved
from autoresearch.proposers.base import ProposalContext
from autoresearch.proposers.faults import FailedProposal
from autoresearch.state import SessionLock, StatePaths
from tests.llm.conftest import MakeCtx, linked_session, live_session, make_config
from tests.support.git_repo import git


@pytest.fixture
def session(worktree: Path, make_ctx: MakeCtx) -> ProposalContext:
    return linked_session(worktree, make_ctx)


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_a_lock_linked_to_this_sessions_own_does_not_make_a_finished_session_live(
        session: ProposalContext, worktree: Path, link: str) -> None:
    # The agent's processes are dead when the guard looks, but the orchestrator holds its own
    # session's lock all along: a finished session's lock made a link to it looked held.
    wt = session.worktree
    own = SessionLock(StatePaths(worktree, "t").lock)
    own.acquire()
    try:
        victim = StatePaths(worktree, "b").lock
        victim.parent.mkdir(parents=True, exist_ok=True)
        git(worktree, "branch", "autoresearch/b")
        state = GitState.take(wt, "t")
        if link == "symlink":
            victim.symlink_to(own.path)
        else:
            os.link(own.path, victim)
        head = git(wt, "commit-tree", "HEAD^{tree}", "-p", "HEAD", "-m", "planted")
        git(wt, "update-ref", "refs/heads/autoresearch/b", head)
        assert state.changes(wt) == [f"refs/heads/autoresearch/b moved from "
                                     f"{state.refs['refs/heads/autoresearch/b'][:10]} to "
                                     f"{head[:10]}"]
    finally:
        own.release()


def agent() -> AgentProposer:
    return AgentProposer(make_config(agent="claude"), {"agent": "claude"})


def refs(cwd: Path) -> dict[str, str]:
    out = git(cwd, "for-each-ref", "--format=%(refname) %(objectname)")
    return dict(line.split(" ", 1) for line in out.splitlines())


def without_saved(found: dict[str, str]) -> dict[str, str]:
    """The refs but those the guard saved the run's commits under before putting refs back."""
    return {name: sha for name, sha in found.items()
            if not name.startswith("refs/autoresearch/t/saved/")}


def registered(repo: Path) -> list[str]:
    return [line.split(" ", 1)[1] for line in git(repo, "worktree", "list", "--porcelain")
            .splitlines() if line.startswith("worktree ")]


def test_a_worktree_the_agent_adds_is_refused_removed_and_the_branch_it_moved_put_back(
        agents: Path, session: ProposalContext, worktree: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The agent checks the session branch out in a worktree of its own and commits a tampered
    # score.py onto it: the branch must not keep that commit for being "checked out elsewhere".
    elsewhere = tmp_path / "agents-worktree"
    monkeypatch.setenv("FAKE_AGENT_WORKTREE", str(elsewhere))
    monkeypatch.setenv("FAKE_AGENT_MODE", "worktree")
    before = refs(worktree)
    # It moved the session branch: the session stops, as when anyone moves it (exit 3).
    with pytest.raises(SessionBranchMoved) as info:
        agent().propose(session)
    what = info.value.reason
    assert f"a worktree was added at {elsewhere} with refs/heads/autoresearch/t checked out" in what
    assert "the session branch autoresearch/t was moved while the agent ran" in what
    assert "left as is" not in what
    assert without_saved(refs(worktree)) == before
    assert "-1000" not in git(worktree, "show", "autoresearch/t:score.py")
    assert str(elsewhere) not in registered(worktree) and not elsewhere.exists()


def test_a_finished_sessions_refs_are_watched_and_put_back(
        agents: Path, session: ProposalContext, worktree: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    git(worktree, "branch", "autoresearch/b")  # what session b kept; it is over
    before = refs(worktree)
    monkeypatch.setenv("FAKE_AGENT_MODE", "rewrite")
    with pytest.raises(FailedProposal) as info:
        agent().propose(session)
    what = info.value.what
    assert "refs/heads/autoresearch/b moved" in what
    assert "refs/autoresearch/b/evil was created" in what
    assert without_saved(refs(worktree)) == before
    # Both refs held the tampered commit: it is saved, and said, once.
    assert len(set(refs(worktree)) - set(before)) == 1 and what.count("saved as") == 1, what


def test_a_live_sessions_refs_are_its_own_doing(
        agents: Path, session: ProposalContext, worktree: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    git(worktree, "branch", "autoresearch/b")
    monkeypatch.setenv("FAKE_AGENT_MODE", "rewrite")
    with live_session(worktree, "b"):
        proposal = agent().propose(session)
    assert proposal is not None and proposal.in_worktree
    assert "refs/autoresearch/b/evil" in refs(worktree)  # not undone: b's process may need it


def test_a_ref_is_another_sessions_only_by_its_exact_tag(
        session: ProposalContext, worktree: Path) -> None:
    wt = session.worktree
    head = git(wt, "rev-parse", "HEAD")
    with live_session(worktree, "t-x"):
        state = GitState.take(wt, "t")
        git(wt, "update-ref", "refs/heads/autoresearch/t-x", head)  # live session t-x's
        assert state.changes(wt) == []
    state = GitState.take(wt, "t")
    git(wt, "update-ref", "refs/autoresearch/t-x/evil", head)  # t-x is over: the agent's
    git(wt, "update-ref", "refs/autoresearch/tt/evil", head)
    assert state.changes(wt) == [f"refs/autoresearch/t-x/evil was created at {head[:10]}",
                                 f"refs/autoresearch/tt/evil was created at {head[:10]}"]
    assert state.restore(wt) == []
    assert "refs/autoresearch/t-x/evil" not in refs(wt)


def test_worktrees_the_harness_makes_meanwhile_are_not_the_agents(
        session: ProposalContext, worktree: Path) -> None:
    """A sibling slot made again, a live session's slot: detached, where sessions keep theirs.
    The same worktree of a session that is not running, or with a branch checked out, is not."""
    wt = session.worktree
    slots = worktree / ".autoresearch" / "worktrees"
    git(worktree, "branch", "side")
    state = GitState.take(wt, "t")
    git(worktree, "worktree", "add", "-q", "--detach", str(slots / "t" / "2"), "HEAD")
    with live_session(worktree, "b"):
        git(worktree, "worktree", "add", "-q", "--detach", str(slots / "b"), "HEAD")
        assert state.changes(wt) == []
        git(worktree, "worktree", "add", "-q", "--detach", str(slots / "c"), "HEAD")
        git(worktree, "worktree", "add", "-q", str(slots / "t" / "3"), "side")
        real = os.path.realpath(slots)
        assert state.changes(wt) == [
            f"a worktree was added at {real}/c",
            f"a worktree was added at {real}/t/3 with refs/heads/side checked out"]
        assert state.restore(wt) == []
    left = registered(worktree)
    assert f"{real}/c" not in left and f"{real}/t/3" not in left
    assert f"{real}/t/2" in left and f"{real}/b" in left
