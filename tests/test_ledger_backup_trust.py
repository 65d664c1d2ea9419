"""The recovery steps offer ledger-backup.db only as what the harness wrote
(autoresearch/ledger/integrity.py, the backup's record).

A verify run of the same user can write a forged backup (every metric +100, its mtime set back)
and then change the ledger, so that the session stops and the user is told to restore "the
ledger as a session last ended". The harness records the backup's sha256 and time when it writes
it, and a running session keeps that record in memory: a backup that does not match it, or that
no session wrote, is named as such and not offered; the time shown is the recorded one.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import textwrap
import time
from contextlib import closing
from pathlib import Path

import pytest

from autoresearch.ledger import Ledger
from autoresearch.ledger.integrity import (
    BackupRecord,
    backup_path,
    describe_backup,
    record_from_mark,
    record_to_mark,
    recovery,
)
from tests.conftest import CONFIG, SCORE_PY, make_repo, run_cli, use_script

HONEST = {"hypothesis": "X to 5", "edits": {"target.py": "X = 5.0\n"}}

# A candidate whose run (score.py imports target.py) does what the adversarial tester's did:
# copy the ledger with every metric +100 over ledger-backup.db, date it an hour back, then change
# one of the session's rows so that the session stops and prints the recovery steps.
FORGER = textwrap.dedent("""
    import hashlib, os, pathlib, sqlite3, subprocess, time
    X = 6.0
    top = subprocess.run(["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
                         capture_output=True, text=True).stdout.strip()
    state = pathlib.Path(top).parent / ".autoresearch"
    ledger, backup, tmp = (state / "ledger.db", state / "ledger-backup.db",
                           state / ".forge.db")
    if {forge_backup}:
        src, dst = sqlite3.connect(ledger, timeout=10), sqlite3.connect(tmp)
        src.backup(dst)
        src.close()
        dst.execute("UPDATE metrics SET value = value + 100")
        dst.commit()
        dst.close()
        os.replace(tmp, backup)
    old = {mtime}
    os.utime(backup, (old, old))
    c = sqlite3.connect(ledger, timeout=10)
    if {rewrite_record}:  # a smarter forger makes the ledger's record vouch for its file
        sha = hashlib.sha256(backup.read_bytes()).hexdigest()
        c.execute("UPDATE backup_record SET sha256 = ?, written_at = ?", (sha, old))
    c.execute("UPDATE experiments SET hypothesis = hypothesis || ' ' WHERE seq = 1")
    c.commit()
    if {rewrite_record}:  # into ledger.db itself, where a reader ignoring the WAL finds it too
        c.execute("PRAGMA wal_checkpoint(PASSIVE)")
    c.close()
""")

# 2001-09-09: a date no recorded time can be confused with.
LONG_AGO = 1_000_000_000.0


def forger(*, forge_backup: bool = True, rewrite_record: bool = False,
           mtime: str = "time.time() - 3600") -> dict[str, object]:
    code = FORGER.format(forge_backup=forge_backup, rewrite_record=rewrite_record, mtime=mtime)
    return {"hypothesis": "X to 6", "edits": {"target.py": code}}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"target.py": "X = 3.0\n", "score.py": SCORE_PY,
                                         "autoresearch.toml": CONFIG})


def state(repo: Path) -> Path:
    return repo / ".autoresearch"


def said(result: object) -> str:
    return " ".join(getattr(result, "stderr", "").split())


def recorded_time(repo: Path) -> str:
    """The time the harness recorded for the backup, as the recovery steps print it."""
    with closing(sqlite3.connect(state(repo) / "ledger.db")) as conn:
        (stamp,) = conn.execute("SELECT written_at FROM backup_record").fetchone()
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


def baseline_scores(db: Path) -> list[float]:
    with closing(sqlite3.connect(db)) as conn:
        return [v for (v,) in conn.execute(
            "SELECT m.value FROM metrics m JOIN runs r ON r.id = m.run_id JOIN experiments e "
            "ON e.id = r.experiment_id WHERE e.kind = 'baseline' AND m.name = 'score'")]


RESTORE = "cp .autoresearch/ledger-backup.db .autoresearch/ledger.db"


def test_a_backup_forged_before_any_session_ended_is_not_offered(repo: Path) -> None:
    use_script(repo, [forger()])
    stopped = run_cli(repo, "run", "--tag", "t", "--iterations", "2")
    assert stopped.returncode == 3, stopped.stdout + stopped.stderr
    message = said(stopped)
    # The attack took place: the file beside the ledger holds the forged numbers.
    assert baseline_scores(backup_path(state(repo) / "ledger.db")) == [116.0, 116.0]
    assert (".autoresearch/ledger-backup.db was not written by a session of this ledger (none "
            "recorded a backup): another program wrote it. Do not restore it") in message
    assert RESTORE not in message and "as a session last ended" not in message
    assert "then start afresh with another --tag" in message
    # A resume is refused with the same verdict: it comes from the stopped session, not from
    # the file the forger wrote.
    again = run_cli(repo, "run", "--tag", "t", "--iterations", "2")
    assert again.returncode == 3, again.stdout + again.stderr
    assert "a session found this ledger changed by another process" in said(again)
    assert "was not written by a session of this ledger" in said(again)
    assert RESTORE not in said(again)


@pytest.mark.parametrize("rewrite_record", [False, True], ids=["file", "file-and-record"])
def test_a_backup_forged_after_a_session_ended_is_named_as_changed(repo: Path,
                                                                   rewrite_record: bool) -> None:
    use_script(repo, [HONEST, forger(rewrite_record=rewrite_record)])
    ended = run_cli(repo, "run", "--tag", "t", "--iterations", "2")
    assert ended.returncode == 0, ended.stdout + ended.stderr
    written = recorded_time(repo)
    stopped = run_cli(repo, "run", "--tag", "t", "--iterations", "3")
    assert stopped.returncode == 3, stopped.stdout + stopped.stderr
    assert baseline_scores(backup_path(state(repo) / "ledger.db")) == [116.0, 116.0]
    expected = (".autoresearch/ledger-backup.db was changed by another program since "
                f"autoresearch wrote it ({written}): do not restore it")
    assert expected in said(stopped), said(stopped)
    assert RESTORE not in said(stopped)
    again = run_cli(repo, "run", "--tag", "t", "--iterations", "3")
    assert again.returncode == 3, again.stdout + again.stderr
    assert expected in said(again) and RESTORE not in said(again), said(again)


def test_a_backup_whose_mtime_alone_changed_is_offered_with_the_recorded_time(repo: Path
                                                                              ) -> None:
    use_script(repo, [HONEST, forger(forge_backup=False, mtime=repr(LONG_AGO))])
    assert run_cli(repo, "run", "--tag", "t", "--iterations", "2").returncode == 0
    written = recorded_time(repo)
    stopped = run_cli(repo, "run", "--tag", "t", "--iterations", "3")
    assert stopped.returncode == 3, stopped.stdout + stopped.stderr
    assert backup_path(state(repo) / "ledger.db").stat().st_mtime == LONG_AGO
    assert (f".autoresearch/ledger-backup.db, the ledger as a session last ended ({written})"
            in said(stopped)), said(stopped)
    assert RESTORE in said(stopped)


def test_a_restored_backup_is_offered_again_when_the_resumed_session_is_stopped(
        repo: Path) -> None:
    use_script(repo, [HONEST, forger(forge_backup=False)])
    assert run_cli(repo, "run", "--tag", "t", "--iterations", "2").returncode == 0
    ledger = state(repo) / "ledger.db"
    ledger.write_bytes(b"not a ledger any more" * 100)
    refused = run_cli(repo, "status")
    assert refused.returncode == 3 and RESTORE in said(refused), said(refused)
    # Its record is in the file that was overwritten: the backup is offered, unchecked.
    assert "whose record (in the damaged ledger) cannot be read" in said(refused)
    damaged = state(repo) / "damaged"
    damaged.mkdir()
    for path in state(repo).glob("ledger.db*"):  # the printed steps
        path.rename(damaged / path.name)
    shutil.copyfile(backup_path(ledger), ledger)
    restored_at = time.time()
    stopped = run_cli(repo, "run", "--tag", "t", "--iterations", "3")
    assert stopped.returncode == 3, stopped.stdout + stopped.stderr
    message = said(stopped)
    assert ".autoresearch/ledger-backup.db, the ledger as it was restored from it (" in message
    assert time.strftime("%Y-%m-%d", time.localtime(restored_at)) in message
    assert RESTORE in message


def close_new_ledger(path: Path) -> None:
    """A writer opens a new ledger and closes it, which writes the backup and its record."""
    Ledger(path).close()


def test_a_restored_ledger_records_its_backup_and_the_next_close_a_new_one(tmp_path: Path
                                                                           ) -> None:
    ledger = tmp_path / ".autoresearch" / "ledger.db"
    close_new_ledger(ledger)
    backup = backup_path(ledger)
    for leftover in ledger.parent.glob("ledger.db*"):
        leftover.unlink()
    shutil.copyfile(backup, ledger)
    sha = hashlib.sha256(backup.read_bytes()).hexdigest()
    opened = Ledger(ledger)
    record = opened.backup_record()
    assert isinstance(record, BackupRecord)
    assert (record.sha256, record.origin) == (sha, "restored")
    opened.close()  # writes a new backup, and records it
    with closing(sqlite3.connect(ledger)) as conn:
        now = conn.execute("SELECT sha256, origin FROM backup_record").fetchone()
    assert now == (hashlib.sha256(backup.read_bytes()).hexdigest(), "closed")
    assert now[0] != sha


def test_a_ledger_of_an_older_autoresearch_is_said_plainly_and_then_recorded(tmp_path: Path
                                                                            ) -> None:
    ledger = tmp_path / ".autoresearch" / "ledger.db"
    close_new_ledger(ledger)
    with closing(sqlite3.connect(ledger)) as conn:  # as an older release left it: no record
        conn.execute("DROP TABLE backup_record")
        conn.commit()
    text = " ".join(recovery(ledger).split())
    assert ("ledger-backup.db, written by an older autoresearch, which kept no checksum of it: "
            "it cannot be checked") in text
    assert RESTORE in text
    # The first writer of this release vouches for the file it found, and sees a change to it.
    backup = backup_path(ledger)
    opened = Ledger(ledger)
    record = opened.backup_record()
    assert isinstance(record, BackupRecord) and record.origin == "older"
    assert record.sha256 == hashlib.sha256(backup.read_bytes()).hexdigest()
    words, offered = describe_backup(backup, record)
    assert offered and "the ledger as an older autoresearch last wrote it" in words
    backup.write_bytes(backup.read_bytes() + b"\0")
    words, offered = describe_backup(backup, record)
    assert not offered and "was changed by another program since autoresearch wrote it" in words
    opened.close()


def test_a_new_ledger_vouches_for_no_backup_already_there(tmp_path: Path) -> None:
    ledger = tmp_path / ".autoresearch" / "ledger.db"
    ledger.parent.mkdir()
    backup_path(ledger).write_bytes(b"planted before any session")
    opened = Ledger(ledger)
    try:
        assert opened.backup_record() == "none"
    finally:
        opened.refuse(RuntimeError("keep the planted file: no close-time backup"))
        opened.close()
    text = " ".join(recovery(ledger).split())
    assert "was not written by a session of this ledger" in text and RESTORE not in text


def test_the_record_travels_through_the_tampered_mark_unchanged() -> None:
    record = BackupRecord("ab" * 32, 1_765_000_000.125, "restored")
    for known in (record, "none", "unrecorded"):
        assert record_from_mark(record_to_mark(known)) == known
    assert record_from_mark("backup-record closed not-enough") == "unreadable"


def test_a_backup_another_session_wrote_since_this_one_started_is_offered_with_the_doubt(
        tmp_path: Path) -> None:
    # Two sessions of one repository: the other ends (writes the backup and its record) while
    # this one runs; this one is then stopped by a change to the ledger. Its held record is
    # older: the newer file is neither vouched for nor "changed by another program".
    backup = tmp_path / "ledger-backup.db"
    backup.write_bytes(b"the other session's backup")
    sha = hashlib.sha256(backup.read_bytes()).hexdigest()
    held = BackupRecord("0" * 64, LONG_AGO, "closed")
    newer = BackupRecord(sha, LONG_AGO + 60, "closed")
    said, offer = describe_backup(backup, held, later=newer)
    assert "after this session started: by another session of this repository" in said, said
    assert "or by the program that changed the ledger" in said and offer
    # A record no newer than the one held, or for other bytes, is no other session's ending.
    for other in (BackupRecord(sha, LONG_AGO - 60, "closed"),
                  BackupRecord("1" * 64, LONG_AGO + 60, "closed")):
        said, offer = describe_backup(backup, held, later=other)
        assert "do not restore it" in said and not offer, said
