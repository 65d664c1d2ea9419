"""The agent may only edit files: running git or touching git-ignored files is refused and undone.

The worktree here is laid out like the harness's: a linked worktree of the user's repository,
detached at the session branch's tip, whose verify runs left a git-ignored data file and caches.
Each fake agent mode is one trick an agent with a shell could play on the harness.
"""

from __future__ import annotations

import os
import sqlite3
import textwrap
from pathlib import Path

import pytest

from autoresearch import gitops
from autoresearch.gitops.commits import commit_change
from autoresearch.gitops.status import changed_paths
from autoresearch.proposers.agent import AgentProposer
from autoresearch.proposers.agent.proposer import SessionBranchMoved
from autoresearch.proposers.base import ProposalContext
from autoresearch.proposers.faults import FailedProposal, FatalProposerError
from tests.conftest import CONFIG, make_repo, run_cli
from tests.llm.conftest import TARGET, MakeCtx, linked_session, live_session, make_config
from tests.support.git_repo import git


@pytest.fixture
def session(worktree: Path, make_ctx: MakeCtx) -> ProposalContext:
    """The user's repository (`worktree` fixture, `main` checked out) and the session's linked
    worktree, detached at `autoresearch/t`, with what earlier verify runs left in it."""
    ctx = linked_session(worktree, make_ctx, ignored="data/\n__pycache__/\n")
    linked = ctx.worktree
    (linked / "data").mkdir()
    (linked / "data" / "offset.txt").write_text("0\n")  # read by the evaluation, git-ignored
    (linked / "__pycache__").mkdir()
    (linked / "__pycache__" / "target.cpython-311.pyc").write_bytes(b"cache")
    return ctx


def agent() -> AgentProposer:
    return AgentProposer(make_config(agent="claude"), {"agent": "claude"})


def refs(cwd: Path) -> dict[str, str]:
    out = git(cwd, "for-each-ref", "--format=%(refname) %(objectname)")
    return dict(line.split(" ", 1) for line in out.splitlines())


def refused(ctx: ProposalContext, monkeypatch: pytest.MonkeyPatch, mode: str) -> str:
    monkeypatch.setenv("FAKE_AGENT_MODE", mode)
    with pytest.raises(FailedProposal) as info:
        agent().propose(ctx)
    assert info.value.usage and info.value.usage[0].cost_usd == 0.0123  # still billed
    return info.value.what


def assert_untouched(ctx: ProposalContext, head: str) -> None:
    wt = ctx.worktree
    assert git(wt, "rev-parse", "HEAD") == head
    assert git(wt, "status", "--porcelain", "--untracked-files=all", "--ignored") == "\n".join(
        ["!! __pycache__/target.cpython-311.pyc", "!! data/offset.txt"])
    assert (wt / "target.py").read_text() == TARGET
    assert (wt / "data" / "offset.txt").read_text() == "0\n"
    assert (wt / "__pycache__" / "target.cpython-311.pyc").read_bytes() == b"cache"


def test_changing_ignored_files_and_hiding_new_ones_is_refused_and_reverted(
        agents: Path, session: ProposalContext, monkeypatch: pytest.MonkeyPatch) -> None:
    head = git(session.worktree, "rev-parse", "HEAD")
    what = refused(session, monkeypatch, "ignored")
    assert "the agent may not touch git-ignored files or .gitignore files" in what
    for change in ("lib/.gitignore (new)", "data/offset.txt (modified)", "lib/hidden.py (new)"):
        assert change in what
    assert not (session.worktree / "lib" / ".gitignore").exists()
    assert not (session.worktree / "lib" / "hidden.py").exists()
    assert_untouched(session, head)


def test_switching_to_the_session_branch_is_refused_and_head_detached_again(
        agents: Path, session: ProposalContext, monkeypatch: pytest.MonkeyPatch) -> None:
    wt = session.worktree
    head, before = git(wt, "rev-parse", "HEAD"), refs(wt)
    what = refused(session, monkeypatch, "switch")
    assert "the agent ran git: it may commit only on the detached HEAD it was given" in what
    assert "HEAD was switched to refs/heads/autoresearch/t" in what
    assert git(wt, "rev-parse", "--abbrev-ref", "HEAD") == "HEAD"  # detached
    assert refs(wt) == before
    assert_untouched(session, head)


def test_refs_are_put_back_and_the_session_branch_moved_stops_the_session_its_commit_saved(
        agents: Path, session: ProposalContext, monkeypatch: pytest.MonkeyPatch) -> None:
    # The agent commits and points the session branch at its commit: whoever moves that
    # branch during a run (the agent, or the user from another terminal) stops the session, as
    # between keeps; the commit only the branch held is saved before the branch goes back.
    wt = session.worktree
    head, before = git(wt, "rev-parse", "HEAD"), refs(wt)
    monkeypatch.setenv("FAKE_AGENT_MODE", "refs")
    with pytest.raises(SessionBranchMoved) as info:
        agent().propose(session)
    assert info.value.exit_code == 3
    assert info.value.usage and info.value.usage[0].cost_usd == 0.0123  # still billed
    what = " ".join(info.value.reason.split())
    now = refs(wt)
    [ref] = set(now) - set(before)
    assert ref == f"refs/autoresearch/t/saved/{now[ref][:12]}"
    for phrase in ("HEAD moved", "refs/heads/agent-branch was created",
                   "refs/tags/agent-tag was created",
                   "the session branch autoresearch/t was moved while the agent ran: it pointed "
                   f"at {now[ref][:10]}, not at {head[:10]} where the session last set it"):
        assert phrase in what, what
    assert git(wt, "log", "-1", "--format=%s", ref) == "agent commit on the side"
    assert f"saved as {ref} before it was put back at {head[:10]}" in what
    assert {name: now[name] for name in before} == before
    assert_untouched(session, head)


def test_the_agents_stray_commit_on_a_users_branch_is_put_back_and_saved(
        agents: Path, session: ProposalContext, worktree: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A branch of the user's, not checked out: the agent commits and moves it there. A rejected
    # proposal, as before (the session goes on); the branch goes back, its new commit saved.
    git(worktree, "branch", "side")
    wt = session.worktree
    head, side, before = git(wt, "rev-parse", "HEAD"), git(wt, "rev-parse", "side"), refs(wt)
    what = " ".join(refused(session, monkeypatch, "stray").split())
    assert "the agent ran git" in what and "refs/heads/side moved" in what
    assert git(wt, "rev-parse", "side") == side
    now = refs(wt)
    [ref] = set(now) - set(before)
    assert ref.startswith("refs/autoresearch/t/saved/")
    assert git(wt, "log", "-1", "--format=%s", ref) == "agent commit on a branch of the user's"
    assert git(wt, "rev-parse", f"{ref}~1") == head
    assert (f"refs/heads/side held 1 commit(s) no other ref holds (latest {now[ref][:10]}): "
            f"saved as {ref} before it was put back at {side[:10]} (git log {ref}; build on "
            "them from there)") in what
    assert_untouched(session, head)


def test_the_users_checked_out_branch_moved_by_the_agent_is_put_back_and_stops_the_session(
        agents: Path, session: ProposalContext, worktree: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Moving the branch the user's checkout is on moves that checkout's HEAD: its files then
    # read as the agent's commit undone. It was only a rejected proposal, the branch left moved
    # and the session going on (an agent could do it all night). Its index still holds the old
    # commit, so the branch goes back there, and the session stops as for any other change to
    # the user's checkout.
    user_main = git(worktree, "rev-parse", "main")
    monkeypatch.setenv("FAKE_AGENT_MODE", "main")
    with pytest.raises(FatalProposerError) as info:
        agent().propose(session)
    what = " ".join(info.value.what.split())
    assert f"the agent changed your own checkout {worktree}" in what
    assert "refs/heads/main moved" in what
    assert f"refs/heads/main, checked out in {os.path.realpath(worktree)}, was moved by the " \
           "agent to" in what and f"put back at {user_main[:10]}" in what, what
    assert "the harness put your checkout back as it was" in what
    assert git(worktree, "rev-parse", "main") == user_main
    # Its commit, which only main held, is saved before main goes back.
    [saved] = git(worktree, "for-each-ref", "--format=%(refname)",
                  "refs/autoresearch/t/saved/").splitlines()
    assert git(worktree, "log", "-1", "--format=%s", saved) == "agent commit on main"
    assert f"saved as {saved} before it was put back at {user_main[:10]}" in what
    assert git(worktree, "status", "--porcelain") == ""
    assert git(session.worktree, "rev-parse", "--abbrev-ref", "HEAD") == "HEAD"


def test_the_users_branch_is_left_when_their_checkout_moved_on_with_it(
        session: ProposalContext, worktree: Path) -> None:
    # The user staged their own work meanwhile: their index no longer holds the old commit, so
    # putting the branch back would make it disagree with what they have; it is left, named.
    from autoresearch.proposers.agent.gitstate import GitState

    state = GitState.take(session.worktree, "t")
    user_main = git(worktree, "rev-parse", "main")
    moved = git(session.worktree, "commit-tree", "HEAD^{tree}", "-p", "HEAD", "-m", "agent's")
    git(session.worktree, "update-ref", "refs/heads/main", moved, user_main)  # as the agent does
    (worktree / "notes.txt").write_text("mine\n")
    git(worktree, "add", "notes.txt")
    left = " ".join(state.restore(session.worktree))
    assert "refs/heads/main was left as is (it is checked out in another worktree" in left
    assert f"and was at {user_main}" in left
    assert git(worktree, "rev-parse", "main") == moved


def stash_list(cwd: Path) -> str:
    return git(cwd, "stash", "list", "--format=%H %gs")


def users_stashes(checkout: Path) -> str:
    """Two stashes the user made in their own checkout before the session."""
    for n in (1, 2):
        (checkout / "lib" / "util.py").write_text(f"def helper():\n    return {n + 1}\n")
        git(checkout, "stash", "push", "-q", "-m", f"the user's stash {n}")
    return stash_list(checkout)


def test_an_agents_stash_is_refused_and_removed_and_the_users_stashes_kept(
        agents: Path, session: ProposalContext, worktree: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    head = git(session.worktree, "rev-parse", "HEAD")
    assert refused(session, monkeypatch, "stash").count("refs/stash was created") == 1
    assert stash_list(worktree) == ""  # no entry left in the user's repository
    assert_untouched(session, head)
    before = users_stashes(worktree)
    what = refused(session, monkeypatch, "stash")
    assert "refs/stash moved" in what and "left as is" not in what
    assert stash_list(worktree) == before  # the same entries, in the same order
    assert_untouched(session, head)


def test_a_stash_of_the_user_the_agent_dropped_is_put_back(
        agents: Path, session: ProposalContext, worktree: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    before = users_stashes(worktree)
    assert "refs/stash moved" in refused(session, monkeypatch, "stashdrop")
    assert stash_list(worktree) == before


def test_a_stash_made_in_the_users_checkout_is_never_dropped(
        agents: Path, session: ProposalContext, worktree: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The harness cannot tell an agent's stash on the user's branch from the user's own.
    what = refused(session, monkeypatch, "userstash")
    assert "refs/stash was left as is (an entry was made in another worktree" in what
    assert "WIP on main" in stash_list(worktree)


def test_hiding_a_tracked_change_from_git_status_is_refused_and_cleared(
        agents: Path, session: ProposalContext, monkeypatch: pytest.MonkeyPatch) -> None:
    wt = session.worktree
    head = git(wt, "rev-parse", "HEAD")
    what = refused(session, monkeypatch, "hide")
    assert "assume-unchanged/skip-worktree flags changed on score.py" in what
    assert git(wt, "ls-files", "-v", "score.py") == "H score.py"
    assert "print('score:'" in (wt / "score.py").read_text()
    assert_untouched(session, head)


def test_a_git_hook_is_refused_and_removed(
        agents: Path, session: ProposalContext, worktree: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    head = git(session.worktree, "rev-parse", "HEAD")
    what = refused(session, monkeypatch, "hook")
    assert "hooks/post-checkout was changed" in what
    assert not (worktree / ".git" / "hooks" / "post-checkout").exists()
    assert_untouched(session, head)


def test_earlier_outputs_caches_and_other_sessions_are_not_the_agents_doing(
        agents: Path, session: ProposalContext, worktree: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    wt = session.worktree
    # Session `other` is running: it moves its own refs meanwhile.
    with live_session(worktree, "other"):
        agent_runs_beside_its_outputs(session, monkeypatch)
    assert "refs/autoresearch/other/discarded/other-0001" in refs(wt)


def agent_runs_beside_its_outputs(session: ProposalContext,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    wt = session.worktree
    for mode in ("pycache", "others"):
        monkeypatch.setenv("FAKE_AGENT_MODE", mode)
        # What the verify command produces in the worktree (a reset removes it: each commit's
        # runs make their own).
        (wt / "data").mkdir(exist_ok=True)
        (wt / "data" / "offset.txt").write_text("0\n")
        proposal = agent().propose(session)
        assert proposal is not None and proposal.in_worktree
        assert changed_paths(wt) == ["target.py"]
        # The ignored data the verify command produced is untouched; the caches the agent's own
        # python run rewrote are deleted (regenerable, and a planted .pyc could change an import).
        assert (wt / "data" / "offset.txt").read_text() == "0\n"
        assert not (wt / "__pycache__" / "target.cpython-311.pyc").exists()
        gitops.checkout(wt, "HEAD")


@pytest.mark.slow
def test_a_session_never_keeps_a_score_faked_through_ignored_files(
        tmp_path: Path, agents: Path) -> None:
    """The audit's exploit, end to end: the evaluation reads a git-ignored data file; the agent
    rewrites it and hides a new file behind lib/.gitignore. Refused, and the next honest change
    is judged on the real data."""
    score = textwrap.dedent("""
        import pathlib, target
        data = pathlib.Path("data/offset.txt")
        if not data.exists():  # the data preparation: ignored output, made once per worktree
            data.parent.mkdir(exist_ok=True)
            data.write_text("0\\n")
        print(f"score: {(target.X - 7) ** 2 + float(data.read_text())}")
        print("mem_mb: 1")
    """)
    config = CONFIG + '\n[proposer]\nname = "agent"\nagent = "claude"\nagent_timeout_seconds = 60\n'
    repo = make_repo(tmp_path / "repo", {"target.py": "X = 3.0\n", "score.py": score,
                                         ".gitignore": "data/\n", "autoresearch.toml": config})
    modes = tmp_path / "modes"
    modes.write_text("ignored\nimprove\n")
    env = {"PATH": os.environ["PATH"], "FAKE_AGENT_MODES": str(modes),
           "FAKE_AGENT_LOG": os.environ["FAKE_AGENT_LOG"],
           "FAKE_AGENT_PIDFILE": os.environ["FAKE_AGENT_PIDFILE"]}
    result = run_cli(repo, "run", "--tag", "g", "--iterations", "3", env=env, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        exps = conn.execute("SELECT status, decision_reason FROM experiments ORDER BY seq").fetchall()
        scores = [r[0] for r in conn.execute("SELECT value FROM metrics WHERE name = 'score'")]
    assert [e[0] for e in exps] == ["keep", "rejected", "keep"], exps
    assert "git-ignored" in exps[1][1] and "lib/.gitignore" in exps[1][1]
    assert min(scores) == pytest.approx(0.0)  # X = 7 on the real data; never the faked -1000
    worktree = repo / ".autoresearch" / "worktrees" / "g"
    assert (worktree / "data" / "offset.txt").read_text() == "0\n"
    assert not (worktree / "lib").exists()


def test_writing_to_the_users_own_checkout_stops_the_session(
        agents: Path, session: ProposalContext, worktree: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    head = git(session.worktree, "rev-parse", "HEAD")
    monkeypatch.setenv("FAKE_AGENT_MODE", "checkout")
    with pytest.raises(FatalProposerError) as info:
        agent().propose(session)
    what = info.value.what
    assert f"the agent changed your own checkout {worktree}" in what
    assert "agent-notes.md" in what and "target.py" in what
    assert info.value.usage and info.value.usage[0].cost_usd == 0.0123  # still billed
    # The checkout is left for the user to judge (it could be their own work)...
    assert "edited in your checkout" in (worktree / "target.py").read_text()
    # ...while the agent's worktree change is thrown away.
    assert_untouched(session, head)


def test_a_checkout_the_user_left_dirty_is_not_mistaken_for_the_agents(
        agents: Path, session: ProposalContext, worktree: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    (worktree / "target.py").write_text("X = 1.0  # the user's own experiment\n")
    (worktree / "scratch.txt").write_text("the user's notes\n")
    monkeypatch.setenv("FAKE_AGENT_MODE", "improve")
    proposal = agent().propose(session)
    assert proposal is not None and proposal.in_worktree
    assert "X = 7.0" in (session.worktree / "target.py").read_text()


def test_refs_a_sibling_slot_moves_meanwhile_are_not_the_agents_doing(
        session: ProposalContext, worktree: Path) -> None:
    # In a parallel session the harness keeps or parks a sibling slot's experiment while this
    # slot's agent may be at work: those moves are the harness's own (gitops.REF_JOURNAL).
    from autoresearch.proposers.agent.gitstate import GitState

    wt = session.worktree
    before = GitState.take(wt, "t")
    (wt / "target.py").write_text("X = 5.0\n")
    sibling = commit_change(wt, "a sibling's candidate\n").sha
    gitops.checkout(wt, before.head)
    gitops.update_ref(worktree, "refs/autoresearch/t/discarded/t-0007", sibling)  # a park
    gitops.update_ref(worktree, "refs/heads/autoresearch/t", sibling)  # a keep
    git(wt, "update-ref", "refs/heads/agent-branch", sibling)  # the agent, not the harness
    assert before.changes(wt) == [f"refs/heads/agent-branch was created at {sibling[:10]}"]
    assert before.restore(wt) == []
    now = refs(wt)
    assert "refs/heads/agent-branch" not in now
    assert now["refs/heads/autoresearch/t"] == now["refs/autoresearch/t/discarded/t-0007"] == sibling
    # The same move made by someone else (not recorded by this process) is refused as before.
    git(wt, "update-ref", "refs/heads/autoresearch/t", before.head)
    again = GitState.take(wt, "t")
    git(wt, "update-ref", "refs/heads/autoresearch/t", sibling)
    assert again.changes(wt) == []  # not said to be the agent's: anyone may have moved it
    assert again.session_branch_move(wt) == (before.head, sibling)


def test_a_fetch_during_the_agents_run_is_neither_refused_nor_undone(
        agents: Path, session: ProposalContext, worktree: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The user fetches from their checkout while the agent works (here the fake agent does it
    # for them, which looks the same): the remote-tracking refs move. They are a copy of another
    # repository that the harness never reads: not the agent's violation, and left where the
    # fetch put them (putting them back would undo the user's fetch).
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(worktree), str(remote))
    git(worktree, "remote", "add", "origin", str(remote))
    git(worktree, "fetch", "-q", "origin")
    before = git(worktree, "rev-parse", "refs/remotes/origin/main")
    elsewhere = tmp_path / "elsewhere"
    git(tmp_path, "clone", "-q", str(remote), str(elsewhere))
    (elsewhere / "NEWS.md").write_text("a teammate's change\n")
    git(elsewhere, "add", "NEWS.md")
    git(elsewhere, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "news")
    git(elsewhere, "push", "-q", "origin", "HEAD:main")
    pushed = git(elsewhere, "rev-parse", "HEAD")
    monkeypatch.setenv("FAKE_AGENT_MODE", "fetch")
    proposal = agent().propose(session)
    assert proposal is not None and proposal.in_worktree
    assert changed_paths(session.worktree) == ["target.py"]
    assert git(worktree, "rev-parse", "refs/remotes/origin/main") == pushed != before
    assert not [name for name in refs(worktree) if "/saved/" in name]
