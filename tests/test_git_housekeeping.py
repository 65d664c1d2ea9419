"""Git housekeeping at a session's end: the refs its experiments left packed, the objects left to
`git gc --auto`, and nothing the session needs lost.

Each discarded experiment keeps its commit under a ref of its own
(`refs/autoresearch/<tag>/discarded/<id>`): after thousands of experiments, thousands of ref
files. When a session ends, `git pack-refs --all` moves them into `packed-refs`, and
`git gc --auto` packs the loose objects once the user's gc.auto threshold is crossed (see
gitops/housekeeping.py). Both through the real CLI, on a real repository.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autoresearch.gitops import housekeeping
from autoresearch.gitops.runner import run_git
from tests.conftest import (
    CONFIG,
    SCORE_PY,
    cli_env,
    edit_config,
    run_cli,
    use_script,
)
from tests.support.git_repo import git, make_repo

pytestmark = pytest.mark.slow

TAG = "t"
# Every candidate moves X further from 7 than the baseline's 3.0: each one is discarded.
WORSE: list[dict[str, object]] = [{"hypothesis": f"try X = {3.0 - i / 100:.2f}",
                                   "edits": {"target.py": f"X = {3.0 - i / 100:.2f}\n"}}
                                  for i in range(1, 100)]


def repo_with_script(tmp_path: Path, script: list[dict[str, object]] = WORSE) -> Path:
    repo = make_repo(tmp_path / "repo", {"target.py": "X = 3.0\n", "score.py": SCORE_PY,
                                         "autoresearch.toml": CONFIG})
    # One run per experiment and no headline check: the cheapest session that decides.
    edit_config(repo, "repeats = 2", 'repeats = 1\nconfirm_runs = 0\npolicy = "classic"\n'
                                     "headline_pairs = 0")
    use_script(repo, script)
    return repo


def run(repo: Path, n: int) -> subprocess.CompletedProcess[str]:
    result = run_cli(repo, "run", "--tag", TAG, "--iterations", str(n))
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def start(repo: Path, tag: str, n: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "autoresearch", "run", "--repo", str(repo), "--tag", tag,
         "--iterations", str(n)],
        cwd=repo, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        stdin=subprocess.DEVNULL,
        # Ctrl-C as at a terminal, also when the tests run in a background job (SIGINT ignored).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def discarded(repo: Path, tag: str = TAG) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)",
              f"refs/autoresearch/{tag}/discarded/")
    return dict(line.split() for line in out.splitlines())


def loose_ref_files(repo: Path) -> list[Path]:
    return [p for p in (repo / ".git" / "refs" / "autoresearch").rglob("*") if p.is_file()]


def loose_objects(repo: Path) -> int:
    counts = dict(line.split(": ") for line in git(repo, "count-objects", "-v").splitlines())
    return int(counts["count"])


def assert_sound(repo: Path, refs: dict[str, str]) -> None:
    """fsck is clean and every discarded experiment's commit is still there, diff and all."""
    fsck = subprocess.run(["git", "fsck", "--full", "--strict", "--no-progress"], cwd=repo,
                          capture_output=True, text=True)
    said = fsck.stdout + fsck.stderr
    assert fsck.returncode == 0, said
    assert not any(word in said for word in ("missing", "broken", "error", "corrupt")), said
    for ref, sha in refs.items():
        assert git(repo, "rev-parse", "--verify", ref) == sha
        shown = git(repo, "show", "--format=%H %s", ref)
        assert shown.startswith(sha) and "+X = " in shown, shown


def experiments(repo: Path) -> list[tuple[str, str]]:
    db = repo / ".autoresearch" / "ledger.db"
    if not db.exists():  # not yet (sqlite3 would create it)
        return []
    with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=10) as conn:
        try:
            return conn.execute("SELECT id, status FROM experiments ORDER BY seq").fetchall()
        except sqlite3.OperationalError:  # its tables are being made
            return []


def results_rows(repo: Path) -> int:
    tsv = repo / ".autoresearch" / "sessions" / TAG / "results.tsv"
    return len(tsv.read_text().splitlines()) - 1  # its header


def test_a_sessions_end_packs_its_discarded_refs_and_loses_nothing(tmp_path: Path) -> None:
    repo = repo_with_script(tmp_path)
    run(repo, 8)

    refs = discarded(repo)
    assert len(refs) == 7, refs  # every candidate after the baseline was discarded
    # No ref file of the session's is left loose: they are all in packed-refs.
    assert loose_ref_files(repo) == []
    packed = (repo / ".git" / "packed-refs").read_text()
    assert all(f"{sha} {ref}" in packed for ref, sha in refs.items())
    assert_sound(repo, refs)
    # The session's worktree is still on the incumbent, and its results are whole.
    worktree = repo / ".autoresearch" / "worktrees" / TAG
    assert git(worktree, "rev-parse", "HEAD") == git(repo, "rev-parse", f"autoresearch/{TAG}")
    statuses = experiments(repo)
    assert len(statuses) == 8 and [s for _, s in statuses].count("discard") == 7, statuses
    assert results_rows(repo) == 8
    status = run_cli(repo, "status", "--tag", TAG)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "discard" in status.stdout


def test_a_session_stopped_by_ctrl_c_packs_its_refs_too(tmp_path: Path) -> None:
    slow: dict[str, object] = {"hypothesis": "try X = 1.0 slowly", "edits": {"target.py": "X = 1.0\nSLEEP = 3\n"}}
    repo = repo_with_script(tmp_path, [*WORSE[:4], slow, *WORSE[4:]])
    proc = start(repo, TAG, 10)
    deadline = time.monotonic() + 60
    while ("t-0006", "running") not in experiments(repo):
        assert time.monotonic() < deadline and proc.poll() is None, "t-0006 never ran"
        time.sleep(0.05)
    time.sleep(0.5)  # inside its 3 s run
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "housekeeping" not in out  # it worked, quickly: nothing to say

    assert ("t-0006", "interrupted") in experiments(repo)
    refs = discarded(repo)
    assert len(refs) >= 5, refs  # t-0002 .. t-0005 and the interrupted t-0006
    assert loose_ref_files(repo) == []
    assert_sound(repo, refs)
    run(repo, 7)  # the interrupted one is not counted: it is proposed again
    assert [s for _, s in experiments(repo)].count("interrupted") == 1
    assert len(experiments(repo)) == 8 and results_rows(repo) == 8
    assert_sound(repo, discarded(repo))


def test_a_session_ending_while_another_runs_disturbs_nothing(tmp_path: Path) -> None:
    """Session b ends (and packs every ref of the repository) while session a works in its
    worktree: a goes on to its end, and both sessions' refs, commits and results are whole."""
    repo = repo_with_script(tmp_path)
    a = start(repo, "a", 90)
    deadline = time.monotonic() + 60
    while len(experiments(repo)) < 3:
        assert time.monotonic() < deadline and a.poll() is None, "session a never ran"
        time.sleep(0.05)
    b = run_cli(repo, "run", "--tag", "b", "--iterations", "6")
    assert b.returncode == 0, b.stdout + b.stderr
    assert a.poll() is None, "session a ended before b: nothing was tested\n" + b.stdout
    out, _ = a.communicate(timeout=300)
    assert a.returncode == 0, out

    assert loose_ref_files(repo) == []
    for tag, n in (("a", 90), ("b", 6)):
        refs = discarded(repo, tag)
        assert len(refs) == n - 1, (tag, refs)
        assert_sound(repo, refs)
        ran = [s for e, s in experiments(repo) if e.startswith(f"{tag}-")]
        assert len(ran) == n and ran.count("discard") == n - 1, (tag, ran)
        worktree = repo / ".autoresearch" / "worktrees" / tag
        assert git(worktree, "rev-parse", "HEAD") == git(repo, "rev-parse", f"autoresearch/{tag}")


def test_gc_auto_packs_the_objects_when_the_user_threshold_is_crossed(tmp_path: Path) -> None:
    repo = repo_with_script(tmp_path)
    # Keep git's own automatic gc (each `git commit` runs one) out of it: whatever gets packed
    # here is the session end's doing.
    git(repo, "config", "maintenance.auto", "false")
    run(repo, 6)
    before = loose_objects(repo)
    refs = discarded(repo)
    assert before > 10 and len(refs) == 5, (before, refs)

    # gc.auto estimates the loose objects from one of 256 directories, so a low gc.auto alone
    # may or may not trigger on a few dozen; more packs than gc.autoPackLimit always does.
    git(repo, "config", "gc.auto", "10")
    git(repo, "config", "gc.autoPackLimit", "1")
    git(repo, "repack", "-d", "-q")  # the session's objects so far, in a pack of their own
    note = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=repo, input="a note\n",
                          capture_output=True, text=True, check=True).stdout.strip()
    git(repo, "tag", "a-note-of-the-users", note)  # a loose object (HEAD stays where it is)
    git(repo, "repack", "-d", "-q")  # a second pack: gc --auto has work to do
    assert loose_objects(repo) == 0
    packs_before = len(list((repo / ".git" / "objects" / "pack").glob("*.pack")))
    assert packs_before >= 2
    run(repo, 8)  # two more experiments: loose objects again, then the end's gc

    refs = discarded(repo)
    assert len(refs) == 7
    assert loose_objects(repo) == 0, git(repo, "count-objects", "-v")
    assert len(list((repo / ".git" / "objects" / "pack").glob("*.pack"))) == 1
    assert loose_ref_files(repo) == []
    assert_sound(repo, refs)
    # The session resumes on the packed repository and records one more experiment.
    run(repo, 9)
    assert len(experiments(repo)) == 9 and results_rows(repo) == 9
    assert_sound(repo, discarded(repo))


def test_gc_auto_0_is_respected(tmp_path: Path) -> None:
    repo = repo_with_script(tmp_path)
    git(repo, "config", "maintenance.auto", "false")
    git(repo, "config", "gc.auto", "0")
    git(repo, "config", "gc.autoPackLimit", "1")
    git(repo, "repack", "-d", "-q")
    git(repo, "tag", "a-note", git(repo, "hash-object", "-w", "autoresearch.toml"))
    git(repo, "repack", "-d", "-q")
    run(repo, 4)
    assert loose_objects(repo) > 0  # gc.auto = 0: no gc, however many packs
    assert loose_ref_files(repo) == []  # the refs are packed all the same
    assert_sound(repo, discarded(repo))


def test_gc_pack_refs_false_is_respected(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a": "a\n"})
    git(repo, "update-ref", "refs/autoresearch/t/discarded/e1", "HEAD")
    git(repo, "config", "gc.packRefs", "false")
    assert housekeeping.tidy(repo) is None
    assert len(loose_ref_files(repo)) == 1
    git(repo, "config", "gc.packRefs", "true")
    assert housekeeping.tidy(repo) is None
    assert loose_ref_files(repo) == []
    assert git(repo, "rev-parse", "refs/autoresearch/t/discarded/e1") == git(repo, "rev-parse",
                                                                              "HEAD")


def test_housekeeping_that_takes_too_long_is_stopped_and_said(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a": "a\n"})
    # A git command that runs a child (as gc runs repack): the whole group is stopped in time.
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_git(repo, "-c", f"alias.slow=!{sys.executable} -c 'import time; time.sleep(60)'",
                "slow", timeout=0.5)
    assert time.monotonic() - started < 10
    # A repository git cannot work in: one line, no exception.
    (repo / ".git" / "packed-refs.lock").write_text("")
    git(repo, "update-ref", "refs/autoresearch/t/discarded/e1", "HEAD")
    said = housekeeping.tidy(repo, timeout_s=30)
    assert said is not None and "pack-refs" in said and "\n" not in said
    assert "packed-refs.lock" in said, said  # the file to remove is named, not only "the file"
    assert git(repo, "rev-parse", "refs/autoresearch/t/discarded/e1")
