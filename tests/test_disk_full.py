"""A full disk mid-session: one clear error, consistent state, and a clean resume once space is
freed. On a real, small filesystem (a tmpfs mounted for the test; root only)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CONFIG, SCORE_PY, git, make_repo, run_cli, use_script

# Each run logs ~100 kB, so a session fills the little space left within a few experiments.
NOISY_SCORE = SCORE_PY + "print('#' * 100_000)\n"
ITEMS = [{"hypothesis": f"try {x}", "edits": {"target.py": f"X = {x}\n"}}
         for x in (5.0, 1.0, 6.5, 2.0, 6.9, 3.5, 7.5, 4.0, 6.8, 0.5, 7.1, 6.95, 8.0, 2.5)]
EXPERIMENTS = 12


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs mounted for the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    mount = tmp_path / "fs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path, leave: int) -> Path:
    filler = mount / "filler"
    with filler.open("wb") as fh:
        fh.write(b"\0" * max(0, shutil.disk_usage(mount).free - leave))
    return filler


def rows(repo: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        return conn.execute(sql).fetchall()


@pytest.mark.slow
# How much space is left decides where the disk fills up: the baseline's runs, a candidate's
# log, a git object or ref, the ledger's WAL.
# With two workers, two experiments are in flight when the disk fills up, in two slots.
@pytest.mark.parametrize(("workers", "leave"), [(1, 150_000), (1, 400_000), (1, 700_000),
                                                (1, 1_500_000), (2, 400_000), (2, 1_500_000)])
def test_disk_full_mid_session_is_one_clear_error_and_resumes(small_fs: Path, workers: int,
                                                              leave: int) -> None:
    repo = make_repo(small_fs / "repo", {"target.py": "X = 3.0\n", "score.py": NOISY_SCORE,
                                         "autoresearch.toml": CONFIG})
    use_script(repo, ITEMS)
    filler = fill(small_fs, leave)
    run = ("run", "--tag", "t", "--iterations", str(EXPERIMENTS), "--workers", str(workers))

    full = run_cli(repo, *run)
    assert full.returncode == 3, full.stdout + full.stderr
    assert "Traceback" not in full.stderr, full.stderr
    message = " ".join(full.stderr.split())
    assert f"disk full at {small_fs}" in message, message
    assert f"on {small_fs})" in message  # the filesystem that is full
    assert "fix: free some space" in message and "run the same command again" in message
    # What was recorded is intact and readable; the session stopped early.
    done = rows(repo, "SELECT seq, status FROM experiments ORDER BY seq")
    assert len(done) < EXPERIMENTS, done
    assert not (repo / ".autoresearch" / "sessions" / "t" / "lock").exists()

    filler.unlink()
    resumed = run_cli(repo, *run)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr

    # Consistent: every experiment decided (the one cut short marked interrupted), the branch at
    # the ledger's incumbent, every parked commit reachable, results.tsv agreeing with the ledger.
    final = rows(repo, "SELECT seq, status, commit_sha, kind, id FROM experiments ORDER BY seq")
    assert [r[0] for r in final] == list(range(1, len(final) + 1))
    assert sum(1 for r in final if r[1] != "interrupted") == EXPERIMENTS
    assert not [r for r in final if r[1] in ("proposed", "running")]
    kept = rows(repo, "SELECT commit_sha FROM experiments WHERE status = 'keep' "
                "ORDER BY finished_at DESC, seq DESC LIMIT 1")
    assert git(repo, "rev-parse", "autoresearch/t") == kept[0][0]
    for seq, status, commit, kind, _ in final:
        if commit and status not in ("keep",) and kind != "baseline":
            ref = f"refs/autoresearch/t/discarded/t-{seq:04d}"
            assert git(repo, "rev-parse", ref) == commit, (seq, status)
    tsv = (repo / ".autoresearch" / "sessions" / "t" / "results.tsv").read_text().splitlines()
    # (rows in the order experiments were decided: with two workers, not always seq order)
    header = tsv[0].split("\t")
    shown = {cells[header.index("experiment")]: cells[header.index("status")]
             for cells in (line.split("\t") for line in tsv[1:])}
    assert len(shown) == len(tsv) - 1 and shown == {r[4]: r[1] for r in final}
    # Objects a commit cut short by the full disk wrote but never linked are dangling, not
    # damage; anything missing or broken is still reported (and fails `git`).
    assert git(repo, "fsck", "--no-progress", "--no-dangling") == ""
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux's /proc")
def test_a_write_refused_on_a_pseudo_filesystem_is_not_called_a_full_disk(toy_repo: Path) -> None:
    # /proc reports 0 bytes free of 0: "less than 1 MB free" must not make any refused write
    # there a full disk, and the refusal is still one clear error, not a traceback.
    use_script(toy_repo, [{"hypothesis": "x", "edits": {"target.py": "X = 5.0\n"}}])
    assert run_cli(toy_repo, "run", "--tag", "t", "--iterations", "2").returncode == 0
    result = run_cli(toy_repo, "report", "--out", "/proc/autoresearch-nope")
    assert result.returncode != 0
    assert "disk full" not in result.stderr and "Traceback" not in result.stderr
    said = " ".join(result.stderr.split())
    assert "cannot use /proc/autoresearch-nope" in said and "fix:" in said


@pytest.mark.slow
def test_a_disk_filled_by_a_runs_ignored_output_is_freed_by_the_resume(small_fs: Path,
                                                                     tmp_path: Path) -> None:
    # One run writes a checkpoint (ignored by git) until the disk is full; the resume must not
    # fail on it again and again: the slots are cleaned before anything is written.
    fired = tmp_path / "fired"
    score = SCORE_PY + (
        "import pathlib\n"
        f"fired = pathlib.Path({str(fired)!r})\n"
        "if not fired.exists():\n"
        "    fired.touch()\n"
        "    try:\n"
        "        with open('ckpt.bin', 'wb') as fh:\n"
        "            fh.write(b'\\0' * 40_000_000)\n"
        "    except OSError:\n"
        "        pass\n")
    repo = make_repo(small_fs / "repo", {"target.py": "X = 3.0\n", "score.py": score,
                                         "autoresearch.toml": CONFIG, ".gitignore": "ckpt.bin\n"})
    use_script(repo, ITEMS)
    run = ("run", "--tag", "t", "--iterations", "4")
    full = run_cli(repo, *run)
    assert full.returncode == 3 and "disk full" in full.stderr, full.stdout + full.stderr
    resumed = run_cli(repo, *run)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    final = rows(repo, "SELECT status FROM experiments ORDER BY seq")
    assert sum(1 for (status,) in final if status != "interrupted") == 4, final
