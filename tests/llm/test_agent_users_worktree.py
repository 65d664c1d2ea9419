"""A worktree added while a coding agent is at work: by the agent, or by the user from another
terminal (`git worktree add ../x autoresearch/<tag>`, to commit from). The guard cannot tell
which: the proposal is refused either way, but the worktree is removed only when nothing in it
would be lost; one holding work stays, named, with the way to remove it if it is not the user's.

The fake agent (`fake_agent.py`) waits with FAKE_AGENT_GO set until the test has added its
worktree; real git repositories, the real proposer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from autoresearch.proposers.agent import AgentProposer
from autoresearch.proposers.agent.gitstate import GitState
from autoresearch.proposers.agent.proposer import SessionBranchMoved
from autoresearch.proposers.base import ProposalContext
from autoresearch.proposers.faults import FailedProposal
from tests.conftest import cli_env
from tests.llm.conftest import TARGET, MakeCtx, linked_session, make_config, use_fake_agent
from tests.llm.test_agent_branch_moved import propose_meanwhile, saved_refs, wait_for
from tests.support.git_repo import git
from tests.test_resume import query


@pytest.fixture
def session(worktree: Path, make_ctx: MakeCtx) -> ProposalContext:
    return linked_session(worktree, make_ctx)


@pytest.fixture
def at_work(agents: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake agent waits, once started, for the file this returns (the test's go)."""
    monkeypatch.setenv("FAKE_AGENT_GO", str(tmp_path / "go"))
    return tmp_path / "go"


def agent() -> AgentProposer:
    return AgentProposer(make_config(agent="claude"), {"agent": "claude"})


def registered(repo: Path) -> list[str]:
    return [os.path.realpath(line.split(" ", 1)[1]) for line in
            git(repo, "worktree", "list", "--porcelain").splitlines()
            if line.startswith("worktree ")]


def run_while_user(session: ProposalContext, go: Path,
                   user: Callable[[], None]) -> BaseException | None:
    """The agent's run, with `user()` done from another terminal while it is at work."""
    def meanwhile() -> None:
        user()
        go.touch()

    return propose_meanwhile(agent(), session, Path(os.environ["FAKE_AGENT_PIDFILE"]), meanwhile)


# What the user leaves uncommitted in the worktree they add: a new file, an edit to a tracked
# one, a git-ignored file (the state directory is ignored), or a new file in a worktree they lock.
WORK = {"untracked": ("notes.md", "my notes\n"), "tracked": ("target.py", "X = 6.5  # mine\n"),
        "ignored": (".autoresearch/mine.txt", "kept\n"), "locked": ("notes.md", "my notes\n")}


@pytest.mark.parametrize("kind", sorted(WORK))
def test_a_worktree_added_during_the_run_holding_work_is_left_named_and_refused(
        session: ProposalContext, worktree: Path, tmp_path: Path, at_work: Path,
        kind: str) -> None:
    mine = tmp_path / "mine"
    name, content = WORK[kind]

    def user_adds_a_worktree() -> None:
        git(worktree, "worktree", "add", "-q", str(mine), "autoresearch/t")
        (mine / name).parent.mkdir(parents=True, exist_ok=True)
        (mine / name).write_text(content)
        if kind == "locked":
            git(worktree, "worktree", "lock", str(mine))

    base = git(worktree, "rev-parse", "autoresearch/t")
    raised = run_while_user(session, at_work, user_adds_a_worktree)
    assert isinstance(raised, FailedProposal), raised
    what = " ".join(raised.what.split())
    real = os.path.realpath(mine)
    # Still a violation: the proposal is refused, the agent's change discarded.
    assert f"a worktree was added at {real} with refs/heads/autoresearch/t checked out" in what
    assert (session.worktree / "target.py").read_text() == TARGET
    # But the worktree and the work in it are where the user left them, and the message says
    # where, why, and how to remove it if it is not theirs.
    assert (mine / name).read_text() == content
    assert real in registered(worktree)
    assert (f"the worktree added at {real} (with refs/heads/autoresearch/t checked out) was "
            f"left in place: it holds work that is not committed ({name})") in what, what
    force = "--force --force" if kind == "locked" else "--force"
    assert f"remove it: git worktree remove {force} {real}" in what
    assert ("locked" in git(worktree, "worktree", "list", "--porcelain")) == (kind == "locked")
    assert git(worktree, "rev-parse", "autoresearch/t") == base


def test_a_users_commit_from_their_worktree_stops_the_session_without_undoing_their_files(
        session: ProposalContext, worktree: Path, tmp_path: Path, at_work: Path) -> None:
    # The user commits on the session branch from the worktree they added, and goes on working
    # there. Putting the branch back would move their HEAD under them (their commit shown
    # undone in their index): it is left where they put it and the session stops (exit 3), as
    # the session stops rather than move its branch under a checkout (checkout_sync).
    mine = tmp_path / "mine"

    def user_commits_from_a_worktree() -> None:
        git(worktree, "worktree", "add", "-q", str(mine), "autoresearch/t")
        (mine / "lib" / "util.py").write_text("def helper():\n    return 2\n")
        git(mine, "commit", "-qam", "mine")
        (mine / "notes.md").write_text("more to come\n")

    raised = run_while_user(session, at_work, user_commits_from_a_worktree)
    assert isinstance(raised, SessionBranchMoved), raised
    assert raised.exit_code == 3
    said = " ".join(raised.reason.split())
    real = os.path.realpath(mine)
    assert "the session branch autoresearch/t was moved while the agent ran" in said
    assert (f"refs/heads/autoresearch/t was left as is (it is checked out in another worktree, "
            f"{real}") in said, said
    assert f"switch that worktree to another branch before you resume (git -C {real} switch " \
           "-c my-t)" in said
    assert git(worktree, "rev-parse", "autoresearch/t") == git(mine, "rev-parse", "HEAD")
    assert git(worktree, "log", "-1", "--format=%s", "autoresearch/t") == "mine"
    assert git(mine, "status", "--porcelain") == "?? notes.md"  # nothing shown undone
    assert f"the worktree added at {real}" in said and real in registered(worktree)


def test_a_branch_the_agent_moved_under_the_users_new_worktree_is_put_back_with_their_files(
        session: ProposalContext, worktree: Path, tmp_path: Path, at_work: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The user's worktree still holds the commit the branch was at (the agent moved the branch
    # from its own worktree): putting it back makes their files agree with it again.
    monkeypatch.setenv("FAKE_AGENT_MODE", "refs")
    mine = tmp_path / "mine"
    base = git(worktree, "rev-parse", "autoresearch/t")

    def user_adds_a_worktree() -> None:
        git(worktree, "worktree", "add", "-q", str(mine), "autoresearch/t")
        (mine / "notes.md").write_text("my notes\n")

    raised = run_while_user(session, at_work, user_adds_a_worktree)
    assert isinstance(raised, SessionBranchMoved), raised
    said = " ".join(raised.reason.split())
    assert (f"refs/heads/autoresearch/t, checked out in {os.path.realpath(mine)}, was moved by "
            f"the agent to") in said and f"put back at {base[:10]}" in said, said
    assert git(worktree, "rev-parse", "autoresearch/t") == base
    assert git(mine, "status", "--porcelain") == "?? notes.md"
    assert (mine / "notes.md").read_text() == "my notes\n"


def test_a_clean_worktree_added_during_the_run_is_removed_its_commits_saved(
        session: ProposalContext, worktree: Path, tmp_path: Path, at_work: Path) -> None:
    # Nothing uncommitted, but a commit on its detached HEAD that no ref holds: saved first,
    # then the worktree goes (nothing in it is lost).
    mine = tmp_path / "mine"
    made: list[str] = []

    def commit_in_a_detached_worktree() -> None:
        git(worktree, "worktree", "add", "-q", "--detach", str(mine), "autoresearch/t")
        (mine / "lib" / "util.py").write_text("def helper():\n    return 3\n")
        git(mine, "commit", "-qam", "detached work")
        made.append(git(mine, "rev-parse", "HEAD"))

    raised = run_while_user(session, at_work, commit_in_a_detached_worktree)
    assert isinstance(raised, FailedProposal), raised
    what = " ".join(raised.what.split())
    ref = f"refs/autoresearch/t/saved/{made[0][:12]}"
    assert saved_refs(worktree, "t") == {ref: made[0]}
    assert f"saved as {ref} before it was removed" in what, what
    assert not mine.exists() and os.path.realpath(mine) not in registered(worktree)


def test_a_worktree_git_cannot_read_any_more_is_left_alone(
        session: ProposalContext, worktree: Path, tmp_path: Path) -> None:
    # Its `.git` link deleted: `git status` there would answer for another repository (or none),
    # so nothing in it is known to be safe to delete.
    wt = session.worktree
    state = GitState.take(wt, "t")
    mine = tmp_path / "mine"
    git(worktree, "worktree", "add", "-q", "--detach", str(mine), "HEAD")
    (mine / ".git").unlink()
    left = " ".join(state.restore(wt))
    assert (mine / "target.py").read_text() == TARGET
    assert (f"the worktree added at {os.path.realpath(mine)} was left in place: git cannot tell "
            "what it holds (its .git link is gone or points elsewhere)") in left, left
    assert os.path.realpath(mine) in registered(worktree)


def test_the_session_branch_is_not_moved_back_under_a_users_worktree_from_before_the_run(
        session: ProposalContext, worktree: Path, tmp_path: Path) -> None:
    # A worktree of the user's on the session branch from before the run (added between runs):
    # a commit on the branch during the run is not moved back under it either.
    mine = tmp_path / "mine"
    git(worktree, "worktree", "add", "-q", str(mine), "autoresearch/t")
    (mine / "notes.md").write_text("my notes\n")
    wt = session.worktree
    state = GitState.take(wt, "t")
    (mine / "lib" / "util.py").write_text("def helper():\n    return 4\n")
    git(mine, "commit", "-qam", "mine")
    theirs = git(mine, "rev-parse", "HEAD")
    left = " ".join(state.restore(wt))
    assert "refs/heads/autoresearch/t was left as is" in left, left
    assert git(worktree, "rev-parse", "autoresearch/t") == theirs
    assert git(mine, "status", "--porcelain") == "?? notes.md"


def test_a_session_whose_user_adds_a_worktree_meanwhile_keeps_their_work_and_stops_at_a_keep(
        toy_repo: Path, tmp_path: Path) -> None:
    # The real CLI: the user adds a worktree on the session branch while the agent is at work
    # and starts writing in it. That run's proposal is refused (the worktree, maybe the agent's,
    # is named and left); the next one is an improvement, which the session will not move its
    # branch to under that worktree: it stops (exit 3), naming it. Their file is intact.
    env = use_fake_agent(toy_repo, tmp_path, "improve\nimprove\n")
    env["FAKE_AGENT_GO"] = str(tmp_path / "go")
    proc = subprocess.Popen(
        [sys.executable, "-m", "autoresearch", "run", "--repo", str(toy_repo), "--tag", "ag",
         "--iterations", "3"], cwd=toy_repo, env=cli_env(env), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    wait_for(Path(env["FAKE_AGENT_PIDFILE"]), proc)
    mine = tmp_path / "mine"
    git(toy_repo, "worktree", "add", "-q", str(mine), "autoresearch/ag")
    (mine / "notes.md").write_text("my notes\n")
    (tmp_path / "go").touch()
    out, _ = proc.communicate(timeout=180)
    said = " ".join(out.split())
    real = os.path.realpath(mine)
    assert proc.returncode == 3, said
    assert (mine / "notes.md").read_text() == "my notes\n"
    assert git(mine, "status", "--porcelain") == "?? notes.md"
    rows = query(toy_repo, "SELECT status, decision_reason FROM experiments ORDER BY seq")
    assert [row[0] for row in rows] == ["keep", "rejected", "interrupted"], rows
    assert f"the worktree added at {real} (with refs/heads/autoresearch/ag checked out) was " \
           "left in place" in " ".join(str(rows[1][1]).split())
    assert f"the worktree {real} is on the session branch autoresearch/ag" in said, said


def test_a_deleted_worktree_added_during_the_run_has_its_commits_saved_and_its_entry_pruned(
        session: ProposalContext, worktree: Path, tmp_path: Path) -> None:
    # Its directory deleted (and the worktree locked), its entry left: the commit its HEAD
    # named, which no ref holds, would go with the entry.
    wt = session.worktree
    state = GitState.take(wt, "t")
    gone = tmp_path / "gone"
    git(worktree, "worktree", "add", "-q", "--detach", str(gone), "HEAD")
    git(gone, "commit", "-q", "--allow-empty", "-m", "only here")
    made = git(gone, "rev-parse", "HEAD")
    git(worktree, "worktree", "lock", str(gone))
    shutil.rmtree(gone)
    left = " ".join(state.restore(wt))
    ref = f"refs/autoresearch/t/saved/{made[:12]}"
    assert saved_refs(worktree, "t") == {ref: made} and f"saved as {ref}" in left, left
    assert os.path.realpath(gone) not in registered(worktree)
