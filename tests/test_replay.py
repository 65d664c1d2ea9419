"""A winner measured against an older incumbent is replayed onto the new one: a change to lines
next to the keep's (knobs one per line, the usual layout) stacks; a change to the same lines, or
an insertion whose place cannot be told, is still a conflict.

Real git in a temp repository; the last test is a real parallel session through the CLI.
"""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

import pytest

from autoresearch import gitops
from autoresearch.gitops.commits import cherry_pick, commit_change
from autoresearch.gitops.history import blob_at
from tests.conftest import edit_config, git, make_repo, run_cli, use_script

PARAMS = "LR = 0.3\nMOM = 0.5\nWARM = 10\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"params.py": PARAMS, "other.py": "A = 1\n"})


def commit_on(repo: Path, parent: str, files: dict[str, str], message: str) -> str:
    """A commit of `files` on `parent`, made in a scratch worktree; its sha."""
    worktree = repo.parent / f"wt-{message.replace(' ', '-')}"
    gitops.ensure_detached_worktree(repo, worktree, parent)
    for name, text in files.items():
        (worktree / name).write_text(text)
    return commit_change(worktree, message).sha


def replay(repo: Path, commit: str, onto: str) -> str | None:
    slot = repo.parent / "slot"
    gitops.ensure_detached_worktree(repo, slot, onto)
    picked = cherry_pick(slot, commit, onto)
    assert git(slot, "status", "--porcelain") == ""
    if picked is None:
        assert git(slot, "rev-parse", "HEAD") == onto  # left exactly at the incumbent
        return None
    return picked.sha


def test_changes_to_the_lines_beside_a_keep_are_replayed_onto_it(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD")
    keep = commit_on(repo, base, {"params.py": "LR = 0.3\nMOM = 0.9\nWARM = 10\n"}, "MOM up")
    stale = commit_on(repo, base, {"params.py": "LR = 0.1\nMOM = 0.5\nWARM = 40\n"},
                      "LR down WARM up")
    picked = replay(repo, stale, keep)
    assert picked is not None
    assert git(repo, "show", f"{picked}:params.py") == "LR = 0.1\nMOM = 0.9\nWARM = 40"
    assert git(repo, "rev-parse", f"{picked}^") == keep
    assert git(repo, "log", "-1", "--format=%s|%an", picked) == git(
        repo, "log", "-1", "--format=%s|%an", stale)


def test_a_change_to_the_same_line_as_the_keep_is_still_a_conflict(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD")
    keep = commit_on(repo, base, {"params.py": "LR = 0.3\nMOM = 0.9\nWARM = 10\n"}, "MOM up")
    stale = commit_on(repo, base, {"params.py": "LR = 0.3\nMOM = 0.7\nWARM = 40\n"},
                      "MOM and WARM")
    assert replay(repo, stale, keep) is None


def test_an_insertion_beside_the_keep_is_not_replayed_without_context(repo: Path) -> None:
    # Without context an inserted line has only its line number to go by: not trusted.
    base = git(repo, "rev-parse", "HEAD")
    keep = commit_on(repo, base, {"params.py": "LR = 0.3\nMOM = 0.9\nWARM = 10\n"}, "MOM up")
    stale = commit_on(repo, base, {"params.py": "LR = 0.3\nMOM = 0.5\nDECAY = 1\nWARM = 10\n"},
                      "add DECAY")
    assert replay(repo, stale, keep) is None


def test_a_change_that_also_removes_a_file_is_not_replayed_without_context(repo: Path) -> None:
    # Only line replacements in files both sides have: a file made, removed or renamed is left
    # to git's own merge.
    base = git(repo, "rev-parse", "HEAD")
    keep = commit_on(repo, base, {"params.py": "LR = 0.3\nMOM = 0.9\nWARM = 10\n"}, "MOM up")
    worktree = repo.parent / "wt-remove"
    gitops.ensure_detached_worktree(repo, worktree, base)
    (worktree / "params.py").write_text("LR = 0.1\nMOM = 0.5\nWARM = 10\n")
    (worktree / "other.py").unlink()
    stale = commit_change(worktree, "LR down, other.py gone").sha
    assert replay(repo, stale, keep) is None


def test_a_change_to_one_of_two_identical_lines_is_made_on_that_one(repo: Path) -> None:
    # `x = 1` twice: the winner changed the second. The keep inserted lines above both, so the
    # second is now further down and the first nearer its old place: a search for the old line
    # near its old number (git apply without context) changed the first.
    base_text = "x = 1\ny = 1\nx = 1\nz = 1\n"
    base = commit_on(repo, git(repo, "rev-parse", "HEAD"), {"params.py": base_text}, "twice")
    keep = commit_on(repo, base, {"params.py": "x = 1\nw = 1\nw = 1\nw = 1\ny = 5\nx = 1\n"
                                               "z = 1\n"}, "w lines and y")
    stale = commit_on(repo, base, {"params.py": base_text.replace("1\nz", "3\nz")}, "second x")
    picked = replay(repo, stale, keep)
    assert picked is not None
    assert git(repo, "show", f"{picked}:params.py") == (
        "x = 1\nw = 1\nw = 1\nw = 1\ny = 5\nx = 3\nz = 1")


def test_a_change_to_a_line_the_keep_changed_is_a_conflict_whatever_its_twin(repo: Path) -> None:
    # The keep changed the first `x = 1`; the winner changed it too: the second `x = 1`, still
    # there, is not the line it changed.
    base_text = "x = 1\ny = 1\nx = 1\nz = 1\n"
    base = commit_on(repo, git(repo, "rev-parse", "HEAD"), {"params.py": base_text}, "twice")
    keep = commit_on(repo, base, {"params.py": "x = 5\ny = 5\nx = 1\nz = 1\n"}, "first x")
    stale = commit_on(repo, base, {"params.py": "x = 3\ny = 1\nx = 1\nz = 1\n"}, "first x too")
    assert replay(repo, stale, keep) is None


def test_lines_inserted_between_the_changed_ones_are_a_conflict(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD")
    keep = commit_on(repo, base, {"params.py": "LR = 0.3\nMOM = 0.5\nNEW = 1\nWARM = 10\n"},
                     "a line between")
    stale = commit_on(repo, base, {"params.py": "LR = 0.3\nMOM = 0.7\nWARM = 40\n"},
                      "MOM and WARM, one hunk")
    assert replay(repo, stale, keep) is None


def test_line_ends_and_a_missing_final_newline_are_kept(repo: Path) -> None:
    base_text = "A = 1\r\nB = 2\r\nC = 3"
    base = commit_on(repo, git(repo, "rev-parse", "HEAD"), {"params.py": base_text}, "crlf")
    keep = commit_on(repo, base, {"params.py": "A = 1\r\nB = 9\r\nC = 3"}, "B")
    stale = commit_on(repo, base, {"params.py": "A = 4\r\nB = 2\r\nC = 6"}, "A and C")
    picked = replay(repo, stale, keep)
    assert picked is not None
    assert blob_at(repo, picked, "params.py") == b"A = 4\r\nB = 9\r\nC = 6"


SCORE = textwrap.dedent(
    """
    import time
    import params
    # Slot 2's change (WARM 40) finishes after slot 1's keep (MOM 0.9): it is judged stale.
    time.sleep(2.5 if params.WARM == 40 else 1.0 if params.MOM == 0.9 else 0)
    print(f"score: {(params.LR - 0.1) ** 2 + (params.MOM - 0.9) ** 2 + (params.WARM - 40) ** 2}")
    """
)
CONFIG = textwrap.dedent(
    """
    scope = ["params.py"]
    protected = ["score.py"]
    [verify]
    command = "{python} score.py"
    budget_seconds = 5
    timeout_seconds = 20
    [metric]
    name = "score"
    direction = "minimize"
    [decision]
    repeats = 2
    deterministic = true
    """
)


def test_parallel_wins_on_neighbouring_knob_lines_stack(tmp_path: Path) -> None:
    # Slot 1 keeps MOM first; slot 2's LR and WARM change, slower, sits on the lines around it.
    repo = make_repo(tmp_path / "session", {"params.py": PARAMS,
                                            "score.py": SCORE, "autoresearch.toml": CONFIG})
    use_script(repo, [
        {"hypothesis": "MOM up", "edits": {"params.py": "LR = 0.3\nMOM = 0.9\nWARM = 10\n"}},
        {"hypothesis": "LR down, WARM up", "edits": {
            "params.py": "LR = 0.1\nMOM = 0.5\nWARM = 40\n"}},
    ])
    result = run_cli(repo, "run", "--tag", "t", "--iterations", "3", "--workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    statuses = git(repo, "log", "--format=%s", "autoresearch/t~2..autoresearch/t").splitlines()
    assert statuses == ["LR down, WARM up", "MOM up"], result.stdout
    assert git(repo, "show", "autoresearch/t:params.py") == "LR = 0.1\nMOM = 0.9\nWARM = 40"
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        ((reason,),) = conn.execute("SELECT decision_reason FROM experiments WHERE seq = 3")
    assert "replayed onto t-0002" in reason, reason


KNOBS = "X = 3.0  # knob: float(0, 10)\nY = 1.0  # knob: float(0, 10)\n"
KNOB_SCORE = textwrap.dedent(
    """
    import time
    import knobs
    # Slot 2's change (Y 3) finishes after slot 1's keep (X 6): it is judged stale.
    time.sleep(2.5 if knobs.Y == 3.0 else 1.0 if knobs.X == 6.0 else 0)
    print(f"score: {(knobs.X - 7) ** 2 + (knobs.Y - 3) ** 2}")
    """
)


def tune_session(tmp_path: Path, items: list[dict[str, object]]) -> Path:
    config = CONFIG.replace('scope = ["params.py"]', 'scope = ["knobs.py"]')
    repo = make_repo(tmp_path / "knobs", {"knobs.py": KNOBS, "score.py": KNOB_SCORE,
                                          "autoresearch.toml": config})
    use_script(repo, items)
    edit_config(repo, "tests.support.scripted_proposer:ScriptedProposer",
                "tests.support.scripted_tune:ScriptedTune")
    git(repo, "commit", "-qam", "the scripted tune proposer")
    return repo


def test_a_tune_winner_that_set_the_keeps_knob_too_is_replayed_with_its_values(
        tmp_path: Path) -> None:
    # Both set X (one line: git's merge and the line-for-line replay both conflict); tune's
    # replay sets the winner's knobs, X 7 and Y 3, on the incumbent that holds X 6.
    repo = tune_session(tmp_path, [
        {"hypothesis": "tune: X 3.0 → 6.0", "edits": {"knobs.py": KNOBS.replace("3.0", "6.0")}},
        {"hypothesis": "tune: X 3.0 → 7.0, Y 1.0 → 3.0", "edits": {
            "knobs.py": KNOBS.replace("3.0", "7.0").replace("1.0", "3.0")}},
    ])
    result = run_cli(repo, "run", "--tag", "t", "--iterations", "3", "--workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert git(repo, "show", "autoresearch/t:knobs.py") == KNOBS.replace("3.0", "7.0").replace(
        "1.0", "3.0").rstrip("\n")
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        rows = conn.execute(
            "SELECT status, decision_reason, hypothesis FROM experiments ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == ["keep", "keep", "keep"], rows
    assert "replayed onto t-0002" in rows[2][1], rows
    # What it was measured as, from the keep's X 6.0, not from the X 3.0 it was first made on.
    assert rows[2][2] == "tune: X 6.0 → 7.0, Y 1.0 → 3.0", rows
    assert git(repo, "log", "-1", "--format=%s", "autoresearch/t") == rows[2][2]


def test_a_tune_winner_with_an_edit_beside_its_knobs_is_still_a_conflict(
        tmp_path: Path) -> None:
    # More than knob values (a comment line changed too): tune cannot say what it meant there.
    repo = tune_session(tmp_path, [
        {"hypothesis": "tune: X 3.0 → 6.0", "edits": {"knobs.py": KNOBS.replace("3.0", "6.0")}},
        {"hypothesis": "X 7, Y 3 and a note", "edits": {
            "knobs.py": "# tuned\n" + KNOBS.replace("3.0", "7.0").replace("1.0", "3.0")}},
    ])
    result = run_cli(repo, "run", "--tag", "t", "--iterations", "3", "--workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        rows = conn.execute("SELECT status, decision_reason FROM experiments ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == ["keep", "keep", "discard"], rows
    assert "conflicts with that keep" in rows[2][1], rows
