"""finalize on real repositories: independent branches from the base that add up to the session."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from autoresearch.finalize import FinalizeError, finalize
from autoresearch.finalize.groups import SourceCommit, group_commits
from autoresearch.finalize.verify import remeasure
from autoresearch.ledger import Ledger
from tests.conftest import cli_env
from tests.views.conftest import TOY_CONFIG, autoresearch, copy_repo, init_repo, run_toy_session
from tests.views.ledger_factory import GIT_ENV, BuiltSession, Planned, build_session, git


def _apply_all(repo: Path, base: str, branches: list[str], scratch: Path) -> str:
    """The tree of base + every branch's own diff, applied as patches (independent of finalize)."""
    wt = scratch / "apply-check"
    git(repo, "worktree", "add", "-q", "--detach", str(wt), base)
    try:
        for branch in branches:
            patch = subprocess.run(["git", "-C", str(repo), "diff", "--binary", base, branch],
                                   capture_output=True, check=True).stdout
            subprocess.run(["git", "-C", str(wt), "apply", "--index", "-"], input=patch,
                           check=True, env={**os.environ, **GIT_ENV})
        return git(wt, "write-tree")
    finally:
        git(repo, "worktree", "remove", "--force", str(wt))


def _changed(repo: Path, base: str, branch: str) -> set[str]:
    return set(git(repo, "diff", "--name-only", base, branch).split())


def _check_branches(repo: Path, base: str, tip: str, branches: list[str], scratch: Path) -> None:
    files = [_changed(repo, base, b) for b in branches]
    for i, a in enumerate(files):
        for b in files[i + 1:]:
            assert not a & b, "two branches touch the same file"
    for b in branches:
        # Each branch starts at the base and is linear.
        assert git(repo, "merge-base", base, b) == base
        assert git(repo, "rev-list", "--merges", f"{base}..{b}") == ""
    assert _apply_all(repo, base, branches, scratch) == git(repo, "rev-parse", f"{tip}^{{tree}}")


def test_grouping_follows_shared_files() -> None:
    def c(name: str, *files: str) -> SourceCommit:
        return SourceCommit(name, None, name, list(files))

    commits = [c("1", "a"), c("2", "b"), c("3", "a", "c"), c("4", "d"), c("5", "c", "e"),
               c("6", "b")]
    groups = [[x.sha for x in g] for g in group_commits(commits)]
    assert groups == [["1", "3", "5"], ["2", "6"], ["4"]]
    # A late commit joining two earlier groups merges them, keeping first-commit order.
    joined = group_commits([c("1", "a"), c("2", "b"), c("3", "c"), c("4", "b", "a")])
    assert [[x.sha for x in g] for g in joined] == [["1", "2", "4"], ["3"]]


def test_synthetic_session(demo: BuiltSession, tmp_path: Path) -> None:
    repo, base = demo.repo, demo.session.base_commit
    before = {ref: git(repo, "rev-parse", ref) for ref in ("main", "HEAD")}
    tip = git(repo, "rev-parse", demo.session.branch)
    result = finalize(repo, demo.tag)
    assert result.reproduced and result.warnings == []
    names = [g.branch for g in result.groups]
    assert names == ["autoresearch-final/demo/01-raise-learning-rate+cosine-learning-rate",
                     # Named for both of its changes, not only the first one.
                     "autoresearch-final/demo/02-shuffle-data-every+dropout-0-1-larger",
                     "autoresearch-final/demo/03-document-the-defaults"]
    assert [g.files for g in result.groups] == [["train.py"], ["data.py", "model.py"],
                                                ["README.md"]]
    # Commits keep their experiment, author and message, plus where they came from.
    log = git(repo, "log", "--format=%an|%s|%b", f"{base}..{names[1]}")
    assert "Test Author|dropout 0.1 with a larger batch|" in log
    assert "Experiment-Id: demo-0005" in log and "Autoresearch-Source: " in log
    _check_branches(repo, base, tip, names, tmp_path)
    # Nothing else moved: no checkout, no merge, no remote.
    assert {ref: git(repo, "rev-parse", ref) for ref in ("main", "HEAD")} == before
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "for-each-ref", "refs/remotes") == ""
    assert git(repo, "rev-parse", demo.session.branch) == tip

    # Re-running recreates identical commits; a branch moved by hand is not overwritten.
    again = finalize(repo, demo.tag)
    assert [g.tip for g in again.groups] == [g.tip for g in result.groups]
    assert all(g.existed for g in again.groups)
    git(repo, "branch", "-f", names[0], base)
    with pytest.raises(FinalizeError, match="already exist"):
        finalize(repo, demo.tag)
    assert finalize(repo, demo.tag, force=True).groups[0].tip == result.groups[0].tip

    # A branch an earlier finalize wrote that this one did not (the session kept more since, and
    # the groups were renamed) is named as stale, never deleted.
    old = "autoresearch-final/demo/01-raise-learning-rate"
    git(repo, "branch", old, names[0])
    later = finalize(repo, demo.tag)
    assert len(later.warnings) == 1 and old in later.warnings[0]
    assert f"git branch -D {old}" in later.warnings[0]
    assert not any(name in later.warnings[0] for name in names)
    assert git(repo, "rev-parse", old) == git(repo, "rev-parse", names[0])


def test_nothing_kept_is_an_error(tmp_path: Path) -> None:
    built = build_session(tmp_path / "repo", plan=[
        Planned("worse", "discard", [10.5], {"README.md": "x\n"})])
    with pytest.raises(FinalizeError, match="kept no change") as refused:
        finalize(built.repo, built.tag)
    assert refused.value.fix == ("there is nothing to split into branches yet: run more "
                                 "experiments (autoresearch run), then finalize")


def test_real_toy_session(real_repo: Path, tmp_path: Path) -> None:
    repo = copy_repo(real_repo, tmp_path / "copy")
    proc = autoresearch(repo, "finalize", "--prefix", "review/")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    branches = git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/review/").split()
    assert len(branches) == 1  # every kept change touches target.py: one group
    ledger = Ledger(repo / ".autoresearch" / "ledger.db", readonly=True)
    session = ledger.session("t")
    assert session is not None
    base = session.base_commit
    _check_branches(repo, base, "autoresearch/t", branches, tmp_path)
    assert "together they reproduce" in proc.stdout


@pytest.mark.slow
def test_real_multi_file_session_with_verify(multi_repo: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    repo = copy_repo(multi_repo, tmp_path / "copy")
    proc = autoresearch(repo, "finalize", "--tag", "m", "--verify", "--repeats", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "each change's own effect" in proc.stdout and "never" not in proc.stderr
    result = finalize(repo, "m")
    names = [g.branch for g in result.groups]
    assert [g.files for g in result.groups] == [["a.py", "b.py"], ["c.py"]]
    _check_branches(repo, result.base_commit, result.session_tip, names, tmp_path)

    # Re-measured in this process: in the environment the CLI's session ran in (PYTHONPATH is
    # part of the evaluation's fingerprint).
    monkeypatch.setenv("PYTHONPATH", cli_env()["PYTHONPATH"])
    verification = remeasure(repo, result, repeats=2)
    base = verification.base
    assert base.mean == pytest.approx(13.0, abs=0.2) and verification.base_sigma is not None
    by_name = {e.name: e for e in verification.effects}
    # a.py+b.py alone: (3-3)² + (1·1-2)² = 1; c.py alone changes nothing without B; both: 0.
    assert by_name[names[0]].improvement == pytest.approx(12.0, abs=0.2)
    assert by_name[names[1]].improvement == pytest.approx(0.0, abs=0.2)
    assert by_name["all changes (autoresearch/m)"].improvement == pytest.approx(13.0, abs=0.2)
    assert "finalize" not in git(repo, "worktree", "list")  # the measuring worktree is gone


def _with_verify_command(repo: Path, command: str) -> None:
    """The checkout's config (the one --verify reads) with another verify command."""
    config = repo / "autoresearch.toml"
    lines = config.read_text().splitlines()
    config.write_text("\n".join(f"command = {json.dumps(command)}" if line.startswith("command =") else line
                                for line in lines) + "\n")


def test_verify_stops_at_once_when_the_verify_command_now_fails(real_repo: Path,
                                                                 tmp_path: Path) -> None:
    """A verify command that fails everywhere stops --verify after its first round with the
    failure and the log, exit 1: not every round to its end, then the old runs shown as new."""
    repo = copy_repo(real_repo, tmp_path / "copy")
    assert autoresearch(repo, "finalize").returncode == 0
    branches = git(repo, "for-each-ref", "refs/heads/autoresearch-final/")
    _with_verify_command(repo, "python -c 'import sys; sys.exit(3)'")
    proc = autoresearch(repo, "finalize", "--verify", "--repeats", "6")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "--verify stopped: the verify command failed on every target" in proc.stderr
    assert "exit code 3" in proc.stderr and "Traceback" not in proc.stderr
    logs = sorted(p.name for p in (repo / ".autoresearch" / "finalize" / "t" / "logs").iterdir())
    # The first round only, each failed run made once more (one failure may be chance).
    assert logs and all(name.endswith(("-0.log", "-0-again.log")) for name in logs), logs
    assert len([name for name in logs if name.endswith("-0-again.log")]) * 2 == len(logs)
    assert logs[0] in proc.stderr  # where: the log to read (the base's second failure)
    assert "each change's own effect" not in proc.stdout
    assert git(repo, "for-each-ref", "refs/heads/autoresearch-final/") == branches
    assert "finalize" not in git(repo, "worktree", "list")


def test_sigterm_during_verify_kills_the_run_and_removes_its_worktree(real_repo: Path,
                                                                      tmp_path: Path) -> None:
    import signal
    import sys
    import time

    from tests.views.conftest import cli_env

    repo = copy_repo(real_repo, tmp_path / "copy")
    pid_file = tmp_path / "run.pid"
    _with_verify_command(repo, f"python -c \"import os, time; open('{pid_file}', 'w')"
                         ".write(str(os.getpid())); time.sleep(60)\"")
    proc = subprocess.Popen([sys.executable, "-m", "autoresearch", "finalize", "--verify",
                             "--repeats", "6"], cwd=repo, env=cli_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    run_pid = int(pid_file.read_text())
    branches = git(repo, "for-each-ref", "refs/heads/autoresearch-final/")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, out + err
    assert "interrupted during --verify" in err and "Traceback" not in err
    assert not Path(f"/proc/{run_pid}").exists() or "zombie" in Path(
        f"/proc/{run_pid}/status").read_text()  # the run did not outlive finalize
    assert "finalize" not in git(repo, "worktree", "list")
    assert git(repo, "for-each-ref", "refs/heads/autoresearch-final/") == branches


def test_a_rewritten_session_branch_gets_the_command_that_restores_it(real_repo: Path,
                                                                      tmp_path: Path) -> None:
    import re
    import shlex

    repo = copy_repo(real_repo, tmp_path / "copy")
    git(repo, "checkout", "-q", "--orphan", "elsewhere")
    git(repo, "commit", "-q", "--allow-empty", "-m", "unrelated")
    git(repo, "branch", "-f", "autoresearch/t", "elsewhere")
    proc = autoresearch(repo, "finalize")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "does not descend from its base" in proc.stderr
    command = re.search(r"`(git branch -f [^`]+)`", proc.stderr.replace("\n", " "))
    assert command, proc.stderr
    git(repo, *shlex.split(command.group(1))[1:])  # the fix, as printed
    assert autoresearch(repo, "finalize").returncode == 0


def test_a_commit_made_by_hand_on_the_session_branch_is_named(real_repo: Path,
                                                              tmp_path: Path) -> None:
    repo = copy_repo(real_repo, tmp_path / "copy")
    git(repo, "checkout", "-q", "--detach", "autoresearch/t")
    (repo / "notes.txt").write_text("mine\n")
    git(repo, "add", "notes.txt")
    git(repo, "commit", "-qm", "my own note")
    git(repo, "branch", "-f", "autoresearch/t", "HEAD")
    result = finalize(repo, "t")
    hand = git(repo, "rev-parse", "HEAD")[:12]
    assert any(w.startswith(f"{hand} (my own note) is on autoresearch/t but no experiment")
               for w in result.warnings), result.warnings
    assert not any("tune" in w and "no experiment" in w for w in result.warnings)


@pytest.mark.parametrize("prefix", ["-x/", "a..b/", "x/@{-1}/", "with space/"])
def test_a_prefix_that_makes_no_branch_name_is_refused_naming_the_flag(
        real_repo: Path, tmp_path: Path, prefix: str) -> None:
    repo = copy_repo(real_repo, tmp_path / "copy")
    before = git(repo, "for-each-ref")
    with pytest.raises(FinalizeError) as caught:
        finalize(repo, "t", prefix=prefix)
    assert caught.value.where == "--prefix" and "leading '-'" in str(caught.value.fix)
    assert git(repo, "for-each-ref") == before  # no branch written


def _worktrees(repo: Path) -> list[str]:
    listing = git(repo, "worktree", "list", "--porcelain")
    return [line.split(" ", 1)[1] for line in listing.splitlines()
            if line.startswith("worktree ") and ".autoresearch" in line]


def test_finalize_removes_the_finished_sessions_worktree_slots(tmp_path: Path) -> None:
    """A finalized session's checkouts (one, or one per worker) are removed, not left on disk;
    a later run makes them again; a session still running keeps them."""
    from autoresearch.state import SessionLock, StatePaths

    # Each run's thread count set, not "auto" (the free cores, shared by the workers): the runs
    # of the resume with two workers get the count the session's runs had.
    init_repo(tmp_path / "repo", {"target.py": "X = 3.0  # knob: float(0, 10)\n",
                                  "autoresearch.toml": TOY_CONFIG + "\n[run]\nthreads = 1\n",
                                  "program.md": "Make score small.\n"})
    repo = run_toy_session(tmp_path / "repo", iterations=8, tag="w")
    slots = repo / ".autoresearch" / "worktrees" / "w"
    assert (slots / ".git").exists() and _worktrees(repo)

    proc = autoresearch(repo, "finalize", "--tag", "w")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "removed the session's 1 worktree slot(s)" in " ".join(proc.stdout.split())
    assert not slots.exists() and _worktrees(repo) == []

    # Resumed with two workers: two slots made again; finalize removes both.
    proc = autoresearch(repo, "run", "--iterations", "10", "--tag", "w", "--workers", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(_worktrees(repo)) == 2
    proc = autoresearch(repo, "finalize", "--tag", "w", "--force")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "removed the session's 2 worktree slot(s)" in " ".join(proc.stdout.split())
    assert not slots.exists() and _worktrees(repo) == []

    # While the session's process holds its lock, its slots stay.
    proc = autoresearch(repo, "run", "--iterations", "11", "--tag", "w")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lock = SessionLock(StatePaths(repo, "w").lock)
    lock.acquire()
    try:
        proc = autoresearch(repo, "finalize", "--tag", "w", "--force")
    finally:
        lock.release()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "is running" in proc.stdout and (slots / ".git").exists()


def test_verify_links_the_share_and_holds_the_inputs_as_the_session_did(real_repo: Path,
                                                                       tmp_path: Path) -> None:
    """--verify measures as the session's runs were measured: `[verify] share` linked into its
    worktree (a project whose data git ignores ran in the session and must run here), and
    `[verify] inputs` refused when they differ from what the session recorded."""
    repo = copy_repo(real_repo, tmp_path / "copy")
    (repo / "data").mkdir()
    (repo / "data" / "offset.txt").write_text("0\n")
    with (repo / ".git" / "info" / "exclude").open("a") as exclude:
        exclude.write("data/\n")
    _with_verify_command(repo, "python -c \"import target; offset = float(open('data/offset.txt')"
                         ".read()); print('score:', (target.X-7)**2 + offset)\"")
    config = repo / "autoresearch.toml"
    config.write_text(config.read_text().replace("budget_seconds = 5",
                                                 'budget_seconds = 5\nshare = ["data/"]'))
    proc = autoresearch(repo, "finalize", "--verify", "--repeats", "6")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "each change's own effect" in proc.stdout
    made = list((repo / ".autoresearch" / "finalize" / "t" / "logs").iterdir())
    assert made and all("score:" in log.read_text() for log in made)  # each read the data

    # Inputs outside the repository, recorded by the session as they were then, now changed.
    outside = tmp_path / "eval.txt"
    outside.write_text("the held-out set\n")
    config.write_text(config.read_text().replace('share = ["data/"]',
                                                 f'share = ["data/"]\ninputs = ["{outside}"]'))
    ledger = Ledger(repo / ".autoresearch" / "ledger.db")
    try:
        session = ledger.session("t")
        assert session is not None
        ledger.add_event(session.id, "inputs", "hashed", data={str(outside): "0" * 64})
    finally:
        ledger.close()
    proc = autoresearch(repo, "finalize", "--verify", "--repeats", "9", "--force")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "the evaluation inputs differ from when the session started" in proc.stderr
    assert "each change's own effect" not in proc.stdout


def test_verify_on_another_machine_is_refused_with_where_to_measure(real_repo: Path,
                                                                    tmp_path: Path) -> None:
    """The recorded runs it reuses and the runs it makes are set side by side: they must come
    from one environment. `report --verify` says the same."""
    import sqlite3

    repo = copy_repo(real_repo, tmp_path / "copy")
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        (key,) = conn.execute("SELECT fingerprint_key FROM sessions").fetchone()
        conn.execute("UPDATE fingerprints SET key = 'other', json = "
                     "json_set(json, '$.cpu_count', 64) WHERE key = ?", (key,))
        conn.execute("UPDATE sessions SET fingerprint_key = 'other'")
    proc = autoresearch(repo, "finalize", "--verify", "--repeats", "6")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    said = " ".join(proc.stderr.split())
    assert "not be comparable" in said and "cpu_count" in said, said
    assert "--executor ray and --ray-address its `run` had" in said
    assert "each change's own effect" not in proc.stdout
    assert not (repo / ".autoresearch" / "finalize" / "t" / "logs").exists()  # nothing ran
    reported = autoresearch(repo, "report", "--verify")
    assert reported.returncode == 3, reported.stdout + reported.stderr
    assert "--executor ray and --ray-address its `run` had" in " ".join(reported.stderr.split())
