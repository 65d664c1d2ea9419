"""The session branch moved or checked out by someone else while the session runs: the session
moves it only from where it last set it, never under a checkout, and otherwise stops (exit 3)
with the user's commits saved under refs/autoresearch/<tag>/saved/, as a resume saves them.
Real git repositories and the real CLI; the branch is moved from here while the session runs."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from autoresearch import gitops
from autoresearch.checkout_sync import SessionBranch
from autoresearch.errors import PreconditionError
from autoresearch.state import StatePaths
from tests.conftest import git, make_repo, run_cli, use_script
from tests.support.git_repo import commit_in_linked_worktree
from tests.test_resume import query, start

# Each candidate's run sleeps: the branch is moved (as soon as experiment 2's keep is in the
# ledger) well before experiment 3, an improvement too, can be kept.
SLOW = [{"hypothesis": f"try {x}", "edits": {"target.py": f"X = {x}\nSLEEP = 2\n"}}
        for x in (5.0, 6.0, 6.5, 6.8)]


def wait_for_keep(repo: Path, seq: int, proc: subprocess.Popen[str],
                  timeout: float = 120) -> str:
    """The commit of experiment `seq`, once the ledger says it was kept (the branch moved to it
    before the ledger recorded that)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        rows = query(repo, f"SELECT status, commit_sha FROM experiments WHERE seq = {seq}")
        if rows and rows[0][0] == "keep":
            return str(rows[0][1])
        if proc.poll() is not None:
            raise AssertionError(f"the session ended first:\n{proc.stdout.read() if proc.stdout else ''}")
        time.sleep(0.05)
    raise AssertionError(f"experiment {seq} was never kept")


def finished(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=180)
    return proc.returncode, " ".join(out.split())


def third(repo: Path) -> tuple[str, str]:
    rows = query(repo, "SELECT status, commit_sha FROM experiments WHERE seq = 3")
    return str(rows[0][0]), str(rows[0][1])


def test_a_commit_made_on_the_session_branch_while_it_runs_is_saved_not_moved_over(
        toy_repo: Path) -> None:
    use_script(toy_repo, SLOW)
    proc = start(toy_repo, "--tag", "bn", "--iterations", "5")
    kept = wait_for_keep(toy_repo, 2, proc)
    tip = git(toy_repo, "rev-parse", "autoresearch/bn")
    assert tip == kept
    mine = git(toy_repo, "commit-tree", "-p", tip, "-m", "user", f"{tip}^{{tree}}")
    git(toy_repo, "update-ref", "refs/heads/autoresearch/bn", mine)
    code, said = finished(proc)
    assert code == 3, said
    ref = f"refs/autoresearch/bn/saved/{mine[:12]}"
    # Not moved over: the branch still holds the user's commit, and it is saved as on resume.
    assert git(toy_repo, "rev-parse", "autoresearch/bn") == mine
    assert git(toy_repo, "rev-parse", ref) == mine
    assert "the session branch autoresearch/bn was moved while the session ran" in said
    assert f"points at {mine[:10]}, not at {tip[:10]}" in said
    assert f"saved as {ref}" in said and "Run the same command to resume" in said
    # The experiment that was to be kept ends interrupted, its commit parked.
    status, commit = third(toy_repo)
    assert status == "interrupted"
    assert git(toy_repo, "rev-parse", "refs/autoresearch/bn/discarded/bn-0003") == commit
    assert "bn-0003, which was to be kept, is recorded interrupted" in said
    assert not (toy_repo / ".autoresearch/sessions/bn/lock").exists()
    # The same command resumes: the branch back at the incumbent, the user's commit kept.
    result = run_cli(toy_repo, "run", "--tag", "bn", "--iterations", "5")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"saved as {ref}" in " ".join(result.stdout.split())
    assert git(toy_repo, "rev-parse", ref) == mine
    best = query(toy_repo, "SELECT commit_sha FROM experiments WHERE status = 'keep' "
                 "ORDER BY finished_at DESC, seq DESC LIMIT 1")[0][0]
    assert git(toy_repo, "rev-parse", "autoresearch/bn") == best
    assert not query(toy_repo, "SELECT seq FROM experiments WHERE status IN "
                     "('proposed', 'running')")


def test_the_session_branch_checked_out_while_it_runs_is_not_moved_under_the_checkout(
        toy_repo: Path) -> None:
    use_script(toy_repo, SLOW)
    proc = start(toy_repo, "--tag", "bo", "--iterations", "5")
    kept = wait_for_keep(toy_repo, 2, proc)
    git(toy_repo, "checkout", "-q", "autoresearch/bo")
    code, said = finished(proc)
    assert code == 3, said
    # HEAD did not move under the user: no staged reversal of the keeps to commit by mistake.
    assert git(toy_repo, "rev-parse", "HEAD") == kept
    assert git(toy_repo, "symbolic-ref", "--short", "HEAD") == "autoresearch/bo"
    assert git(toy_repo, "status", "--porcelain") == ""
    assert "your checkout is on the session branch autoresearch/bo" in said
    assert "git switch -" in said and "run the same command to resume" in said
    assert "bo-0003, which was to be kept, is recorded interrupted" in said
    assert third(toy_repo)[0] == "interrupted"
    assert not git(toy_repo, "for-each-ref", "refs/autoresearch/bo/saved/")  # nothing to save
    # As the stop said: switch away, then the same command resumes.
    git(toy_repo, "checkout", "-q", "-")
    result = run_cli(toy_repo, "run", "--tag", "bo", "--iterations", "5")
    assert result.returncode == 0, result.stdout + result.stderr
    assert git(toy_repo, "merge-base", "--is-ancestor", kept, "autoresearch/bo") == ""


def test_a_linked_worktree_put_on_the_session_branch_and_committed_on_stops_it_saved(
        toy_repo: Path, tmp_path: Path) -> None:
    use_script(toy_repo, SLOW)
    proc = start(toy_repo, "--tag", "bw", "--iterations", "5")
    kept = wait_for_keep(toy_repo, 2, proc)
    linked = tmp_path / "linked"
    mine = commit_in_linked_worktree(toy_repo, linked, "autoresearch/bw")
    code, said = finished(proc)
    assert code == 3, said
    assert git(toy_repo, "rev-parse", "autoresearch/bw") == mine
    assert git(linked, "status", "--porcelain") == ""
    ref = f"refs/autoresearch/bw/saved/{mine[:12]}"
    assert git(toy_repo, "rev-parse", ref) == mine
    assert f"the worktree {linked} is on the session branch autoresearch/bw" in said
    assert f"saved as {ref}" in said and "switch -c my-bw" in said
    assert git(toy_repo, "merge-base", "--is-ancestor", kept, mine) == ""


def test_a_session_branch_reset_back_while_it_runs_stops_it_with_nothing_to_save(
        toy_repo: Path) -> None:
    use_script(toy_repo, SLOW)
    proc = start(toy_repo, "--tag", "br", "--iterations", "5")
    wait_for_keep(toy_repo, 2, proc)
    base = query(toy_repo, "SELECT base_commit FROM sessions")[0][0]
    git(toy_repo, "update-ref", "refs/heads/autoresearch/br", str(base))
    code, said = finished(proc)
    assert code == 3, said
    assert git(toy_repo, "rev-parse", "autoresearch/br") == base
    assert "It holds no commit the session did not make: nothing needed saving" in said
    assert not git(toy_repo, "for-each-ref", "refs/autoresearch/br/saved/")


def test_report_verify_does_not_reset_the_branch_under_a_worktree_on_it(toy_repo: Path,
                                                                        tmp_path: Path) -> None:
    # `report --verify` opens the session as a resume does (its recovery resets the branch to
    # the incumbent) without the start's refusal of a checkout on the branch.
    use_script(toy_repo, SLOW[:1])
    assert run_cli(toy_repo, "run", "--tag", "bv", "--iterations", "2").returncode == 0
    linked = tmp_path / "linked"
    mine = commit_in_linked_worktree(toy_repo, linked, "autoresearch/bv")
    result = run_cli(toy_repo, "report", "--tag", "bv", "--verify",
                     "--out", str(tmp_path / "report"))
    said = " ".join(result.stderr.split())
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"the worktree {linked} is on the session branch autoresearch/bv" in said
    assert git(toy_repo, "rev-parse", "autoresearch/bv") == mine
    assert git(linked, "status", "--porcelain") == ""


def test_the_branch_moves_only_from_where_the_session_last_set_it(tmp_path: Path) -> None:
    # The compare-and-swap itself, on a real repository: a move from a stale value is refused
    # and says what the ref holds; the recovery's reset refuses the same way.
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    first = git(repo, "rev-parse", "HEAD")
    second = git(repo, "commit-tree", "-p", first, "-m", "second", f"{first}^{{tree}}")
    third = git(repo, "commit-tree", "-p", second, "-m", "third", f"{first}^{{tree}}")
    ref = "refs/heads/autoresearch/cas"
    git(repo, "update-ref", ref, first)
    assert gitops.swap_ref(repo, ref, second, first) is None
    assert gitops.swap_ref(repo, ref, third, first) == second  # stale: left where it is
    assert git(repo, "rev-parse", ref) == second
    git(repo, "update-ref", "-d", ref)
    assert gitops.swap_ref(repo, ref, third, second) == ""  # gone: not made again
    assert not git(repo, "for-each-ref", ref)
    git(repo, "update-ref", ref, third)
    branch = SessionBranch(repo, StatePaths(repo, "cas"))
    with pytest.raises(PreconditionError, match="moved while the session was being resumed"):
        branch.reset(second, first)  # read at `second`; someone moved it to `third` since
    assert git(repo, "rev-parse", ref) == third and branch.at is None
    branch.reset(third, first)
    assert git(repo, "rev-parse", ref) == first and branch.at == first
