"""What a killed session leaves in git, read back by the resume: the lock files of a git step
cut short (a SIGKILL of the process group, a crash) in the session's own slot and refs, which
failed every resume with git's "File exists"; and the interrupted experiments, which the resume
marks in the ledger and now in results.tsv at once, not only after the next experiment ends."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.conftest import git, run_cli, use_script
from tests.test_resume import killed_during, query


@pytest.mark.parametrize("where", ["checkout", "linked worktree"])
def test_locks_a_killed_git_step_left_in_the_sessions_slot_and_refs_are_removed_on_resume(
        toy_repo: Path, tmp_path: Path, where: str) -> None:
    use_script(toy_repo, [{"hypothesis": f"X to {x}", "edits": {"target.py": f"X = {x}\n"}}
                          for x in (5.0, 6.0, 6.5)])
    # Run from a linked worktree of the user's, the refs are in the common git dir still.
    checkout = toy_repo if where == "checkout" else tmp_path / "mine"
    if where != "checkout":
        git(toy_repo, "worktree", "add", "-q", "-b", "mine", str(checkout))
    first = run_cli(checkout, "run", "--tag", "t", "--iterations", "1")
    assert first.returncode == 0, first.stdout + first.stderr
    slot_git = Path(git(checkout / ".autoresearch" / "worktrees" / "t", "rev-parse",
                        "--path-format=absolute", "--git-dir"))
    locks = [slot_git / "index.lock", toy_repo / ".git/refs/heads/autoresearch/t.lock",
             toy_repo / ".git/refs/autoresearch/t/discarded/t-0002.lock"]
    for lock in locks:
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.write_text("")
    user_lock = Path(git(checkout, "rev-parse", "--path-format=absolute", "--git-dir")) \
        / "index.lock"  # the user's checkout: not the session's
    user_lock.write_text("")
    result = run_cli(checkout, "run", "--tag", "t", "--iterations", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(resuming after 1 experiment)" in result.stdout, result.stdout
    statuses = [r[0] for r in query(checkout, "SELECT status FROM experiments ORDER BY seq")]
    assert statuses == ["keep", "keep", "keep"], result.stdout
    assert not any(lock.exists() for lock in locks)
    assert user_lock.exists()
    events = [str(r[0]) for r in query(checkout, "SELECT message FROM events "
                                                 "WHERE kind = 'recovery'")]
    assert any("removed the git locks a killed process left" in e and "index.lock" in e
               for e in events), events


def test_results_tsv_shows_the_interrupted_experiment_as_soon_as_the_resume_marks_it(
        toy_repo: Path) -> None:
    killed_during(toy_repo, 3, iterations=5)
    # Resumed with nothing more to do (-n counts the 2 decided): only the recovery writes.
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    tsv = toy_repo / ".autoresearch" / "sessions" / "t" / "results.tsv"
    with tsv.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert [r["status"] for r in rows] == ["keep", "keep", "interrupted"], rows
