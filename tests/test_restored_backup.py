"""A ledger restored from a backup older than the last experiments (README, "When the ledger is
damaged"): the experiments it lost keep their ids, parked commits, logs and results.tsv rows,
and new experiments are numbered past them. A parked commit's ref is never overwritten.
Real git repositories and the real CLI."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from tests.conftest import edit_config, git, run_cli, use_script

# Against (X - 7)²: t-0002 keeps 5.0; t-0003..t-0005 are discarded and t-0006 kept after the
# backup; once it is restored, the next three are a discard, a discard and a keep.
ITEMS = [{"hypothesis": f"try {x}", "edits": {"target.py": f"X = {x}\n"}}
         for x in (5.0, 1.0, 2.0, 0.5, 6.5, 3.5, 1.5, 6.9)]


def session_dir(repo: Path) -> Path:
    return repo / ".autoresearch" / "sessions" / "t"


def parked(repo: Path) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)",
              "refs/autoresearch/t/discarded/")
    return dict(line.split(" ", 1) for line in out.splitlines())


def logs(repo: Path) -> dict[str, bytes]:
    root = session_dir(repo) / "logs"
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*.log")}


def rows(repo: Path) -> list[list[str]]:
    return [line.split("\t") for line in
            (session_dir(repo) / "results.tsv").read_text().splitlines()[1:]]


def restore(repo: Path, backup: Path) -> None:
    """The README's steps: the ledger moved aside, a backup copied in."""
    state = repo / ".autoresearch"
    (state / "damaged").mkdir()
    for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm"):
        if (state / name).exists():
            (state / name).rename(state / "damaged" / name)
    shutil.copyfile(backup, state / "ledger.db")


def test_experiments_an_older_backup_lacks_keep_their_ids_refs_logs_and_rows(
        toy_repo: Path, tmp_path: Path) -> None:
    use_script(toy_repo, ITEMS)
    assert run_cli(toy_repo, "run", "--tag", "t", "--iterations", "3").returncode == 0
    backup = tmp_path / "ledger-backup-after-3.db"
    shutil.copyfile(toy_repo / ".autoresearch" / "ledger-backup.db", backup)
    later = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "6")
    assert later.returncode == 0, later.stdout + later.stderr
    lost_refs, lost_logs = parked(toy_repo), logs(toy_repo)
    lost_rows = {r[-1]: r for r in rows(toy_repo) if r[-1] in ("t-0004", "t-0005", "t-0006")}
    assert "refs/autoresearch/t/discarded/t-0004" in lost_refs and len(lost_rows) == 3

    restore(toy_repo, backup)
    resumed = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "6")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    said = " ".join(resumed.stdout.split())
    assert "new experiments are numbered from t-0007" in said

    with sqlite3.connect(toy_repo / ".autoresearch" / "ledger.db") as conn:
        ids = [i for (i,) in conn.execute("SELECT id FROM experiments ORDER BY seq")]
        why = conn.execute("SELECT message FROM events WHERE kind = 'recovery' AND message"
                           " LIKE '%numbered from t-0007%'").fetchall()
    assert ids == ["t-0001", "t-0002", "t-0003", "t-0007", "t-0008", "t-0009"]
    assert len(why) == 1 and "does not record 3 experiment(s)" in why[0][0]
    # The lost experiments' parked commits, logs and rows are all still there, unchanged.
    now_refs, now_logs = parked(toy_repo), logs(toy_repo)
    assert {ref: now_refs.get(ref) for ref in lost_refs} == lost_refs
    assert {name: now_logs.get(name) for name in lost_logs} == lost_logs
    table = rows(toy_repo)
    assert [r[-1] for r in table] == [f"t-{n:04d}" for n in range(1, 10)]
    for row in table[3:6]:
        was = lost_rows[row[-1]]
        assert row[4] == "[not in the ledger] " + was[4]
        assert row[:4] + row[5:] == was[:4] + was[5:]


def test_a_parked_ref_holding_another_commit_is_never_overwritten(toy_repo: Path) -> None:
    # Something points t-0002's parked ref at another commit while t-0002 runs (the verify
    # command does it here): the discard must not overwrite it.
    edit_config(toy_repo, 'command = "{python} score.py"',
                'command = "{python} score.py && git update-ref '
                'refs/autoresearch/t/discarded/t-0002 HEAD~1"')
    use_script(toy_repo, [{"hypothesis": "worse", "edits": {"target.py": "X = 1.0\n"}}])
    other = git(toy_repo, "rev-parse", "HEAD")  # the candidate's parent: the session's base
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "2")
    said = " ".join(result.stderr.split())
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"refs/autoresearch/t/discarded/t-0002 already holds commit {other[:10]}" in said
    assert "refusing to overwrite it" in said and "fix:" in said
    assert git(toy_repo, "rev-parse", "refs/autoresearch/t/discarded/t-0002") == other
