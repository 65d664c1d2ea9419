"""Is this file a ledger we may use? One place that answers, for every opener.

A ledger may be damaged (truncated, partly overwritten, replaced by another file), or written by
a newer autoresearch. Either way it is refused before anything is written to it, with what is
wrong, where, and how to recover: nothing here ever repairs a file by recreating it, because the
file is the user's research.

Three layers, cheapest first:

1. the file's header, read directly: the SQLite magic, a sane page size, and (when no WAL holds
   newer pages) a file at least as long as its header says;
2. SQLite's own view: the schema version (`PRAGMA user_version`) and `PRAGMA quick_check`;
3. every later SQLite error of a query, translated by `translate` into the same errors (a
   malformed page met mid-session, a full disk, a lock held too long).

What survives a damaged ledger, and is named in the message: each session's results.tsv and run
logs, its git branch and parked refs, and the backup `Ledger.close` writes when a session ends.

The backup is offered only as what the harness wrote. Any process of the user (a verify run, an
agent) can write `ledger-backup.db`, and its mtime says nothing, so when the harness writes the
backup it records the file's sha256 and the time in the ledger itself (`backup_record`), and a
running session keeps in memory the record it started with (a run cannot change that). The
recovery steps offer the backup only when its bytes still match that record; otherwise they say
it was changed by another program, or that no session wrote it, and not to restore it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from autoresearch.errors import (
    AutoresearchError,
    LedgerDamagedError,
    LedgerError,
    LedgerTamperedError,
    LedgerTooNewError,
)
from autoresearch.ledger.schema import tables_at

__all__ = [
    "BACKUP_NAME", "BackupRecord", "backup_path", "check_header", "check_opened",
    "note_backup_at_open", "read_backup_record", "recorded_sessions", "restored_from_backup",
    "translate", "write_backup",
]

SQLITE_MAGIC = b"SQLite format 3\x00"
HEADER_BYTES = 100
# Not "ledger.db.bak": a recovery that moves `ledger.db*` aside must not move the backup too.
BACKUP_NAME = "ledger-backup.db"
README_SECTION = "the README's \"When the ledger is damaged\""

# SQLite's primary result codes (the low byte of an extended code).
_SQLITE_ERROR, _SQLITE_PERM, _SQLITE_BUSY, _SQLITE_LOCKED = 1, 3, 5, 6
_SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_CORRUPT = 8, 10, 11
_SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 13, 14, 26


def backup_path(ledger: Path) -> Path:
    return ledger.with_name(BACKUP_NAME)


def tampered_mark(ledger: Path) -> Path:
    """Written when a session found its rows changed by another process (see ledger_watch)."""
    return ledger.with_name(ledger.name + ".tampered")


def refuse_tampered(ledger: Path) -> None:
    """A ledger a session found changed by another process is not written again until it is
    recovered (the recovery moves `ledger.db*` aside, this mark included)."""
    mark = tampered_mark(ledger)
    if not mark.is_file():
        return
    try:
        lines = mark.read_text(errors="replace").strip().splitlines()
        why = lines[0]
    except (OSError, IndexError):
        lines, why = [], "(the mark is unreadable)"
    # The record the session held when it stopped, not the one in this file, which the process
    # that changed it may have rewritten along with the backup.
    known = next((record_from_mark(line) for line in lines[1:]
                  if line.startswith(_MARK_PREFIX)), None)
    raise LedgerTamperedError(
        f"a session found this ledger changed by another process and stopped: {why}",
        where=str(ledger), fix="recover as from a damaged ledger: " + _recovery(ledger, known))


def recorded_sessions(ledger: Path) -> list[str]:
    """Tags of the sessions whose results.tsv survives beside the ledger (newest first)."""
    sessions = ledger.parent / "sessions"
    try:
        found = [p for p in sessions.glob("*/results.tsv") if p.is_file()]
    except OSError:
        return []
    found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return [p.parent.name for p in found]


def _recovery(ledger: Path, known: BackupKnowledge | None = None) -> str:
    """What survives, and the steps to go on, for the fix line of a damaged ledger's error.

    ``known`` is what the harness knows of the backup it wrote (a running session's record from
    when it started); without it the record is read from the ledger, as far as it can be.
    """
    repo, state = ledger.parent.parent, ledger.parent.name  # commands run from the repository
    tags = recorded_sessions(ledger)
    lines = ["nothing was written to it. What survives it:"]
    if tags:
        shown = ", ".join(tags[:3]) + (f" and {len(tags) - 3} more" if len(tags) > 3 else "")
        lines.append(f"- {state}/sessions/<tag>/results.tsv and logs/ (sessions {shown})")
    lines.append("- git: the branch autoresearch/<tag> (kept commits) and "
                 "refs/autoresearch/<tag>/discarded/* (the others)")
    backup = backup_path(ledger)
    offer = False
    if backup.is_file():
        recorded = read_backup_record_of(ledger)
        said, offer = describe_backup(backup, known if known is not None else recorded,
                                      later=recorded if known is not None else None)
        lines.append(f"- {state}/{backup.name}{said}")
    lines.append(f"To go on, in {repo}: mkdir -p {state}/damaged && mv {state}/{ledger.name}* "
                 f"{state}/damaged/")
    if offer:
        lines.append(f"then restore the backup (cp {state}/{backup.name} {state}/{ledger.name}; "
                     "first `git branch saved-<tag> autoresearch/<tag>` keeps commits kept "
                     "since) or start afresh with another --tag.")
    else:
        lines.append("then start afresh with another --tag.")
    lines.append(f"`sqlite3 <file> .recover` may salvage more; see {README_SECTION}.")
    return "\n".join(lines)


def recovery(ledger: Path, known: BackupKnowledge | None = None) -> str:
    """What survives the ledger and how to go on without it (the fix line of its errors)."""
    return _recovery(ledger, known)


# --- the backup's record: what the harness wrote, so that nothing else is offered as it -------

RECORD_TABLE = "backup_record"
# Outside the numbered migrations on purpose: a migration would raise the schema version, and an
# older autoresearch would then refuse the whole ledger as too new for one table it can ignore.
_CREATE_RECORD = (f"CREATE TABLE IF NOT EXISTS {RECORD_TABLE} (id INTEGER PRIMARY KEY CHECK "
                  "(id = 1), sha256 TEXT NOT NULL, written_at REAL NOT NULL, origin TEXT NOT NULL)")
# How the harness came to vouch for the backup: it wrote it as it closed the ledger; a ledger of
# an older autoresearch had one when this release first opened it; the ledger was restored from it.
Origin = Literal["closed", "older", "restored"]
_ORIGINS: tuple[Origin, ...] = ("closed", "older", "restored")
_MARK_PREFIX = "backup-record "


@dataclass(frozen=True)
class BackupRecord:
    sha256: str
    written_at: float
    origin: Origin


# Beside a record: the ledger records backups but none was written ("none"); the ledger is from
# an older autoresearch that recorded nothing ("unrecorded"); the ledger cannot be read.
BackupKnowledge = BackupRecord | Literal["none", "unrecorded", "unreadable"]


def file_sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def read_backup_record(conn: sqlite3.Connection) -> BackupRecord | Literal["none", "unrecorded"]:
    """The record of the backup in the ledger `conn` reads."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (RECORD_TABLE,)).fetchone():
        return "unrecorded"
    row = conn.execute(f"SELECT sha256, written_at, origin FROM {RECORD_TABLE}").fetchone()
    if row is None or row[2] not in _ORIGINS:
        return "none"
    return BackupRecord(str(row[0]), float(row[1]), row[2])


def read_backup_record_of(ledger: Path) -> BackupKnowledge:
    """The record, read from a ledger that is refused (damaged, or changed by another process):
    immutable, so that reading it writes nothing beside it (no -shm)."""
    try:
        conn = sqlite3.connect(f"file:{ledger}?immutable=1", uri=True)
    except sqlite3.Error:
        return "unreadable"
    try:
        return read_backup_record(conn)
    except sqlite3.Error:
        return "unreadable"
    finally:
        conn.close()


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


def describe_backup(backup: Path, known: BackupKnowledge,
                    later: BackupKnowledge | None = None) -> tuple[str, bool]:
    """How the recovery steps name the backup (the words after its path), and whether they
    offer to restore it: only a file whose bytes are what the harness recorded, or one an older
    autoresearch wrote and nobody can check. `later`: the ledger's record now, when `known` is
    what a running session held since it started (another session may have ended since)."""
    if known == "unrecorded":
        return (", written by an older autoresearch, which kept no checksum of it: it cannot be "
                "checked, so restore it only if no other program (a verify run, an agent) could "
                "have written it", True)
    if known == "unreadable":
        return (", whose record (in the damaged ledger) cannot be read: it cannot be checked, "
                "so restore it only if no other program (a verify run, an agent) could have "
                "written it", True)
    if known == "none":
        return (" was not written by a session of this ledger (none recorded a backup): "
                "another program wrote it. Do not restore it", False)
    try:
        matches = file_sha256(backup) == known.sha256
    except OSError:
        matches = False
    if not matches:
        if (isinstance(later, BackupRecord) and later.written_at > known.written_at
                and later.origin == "closed" and _file_matches(backup, later.sha256)):
            # Another session of this repository ending writes the backup and its record; the
            # program that changed the ledger could write both too: neither can be ruled out.
            return (f" was written at {_when(later.written_at)}, after this session started: "
                    "by another session of this repository as it ended (the ledger's record "
                    "says so), or by the program that changed the ledger, which can write that "
                    "record too. Restore it only if another session ended then", True)
        return (" was changed by another program since autoresearch wrote it "
                f"({_when(known.written_at)}): do not restore it", False)
    if known.origin == "restored":
        return f", the ledger as it was restored from it ({_when(known.written_at)})", True
    if known.origin == "older":
        return (", the ledger as an older autoresearch last wrote it (it kept no record of "
                f"when; unchanged since {_when(known.written_at)})", True)
    return f", the ledger as a session last ended ({_when(known.written_at)})", True


def _file_matches(path: Path, sha256: str) -> bool:
    try:
        return file_sha256(path) == sha256
    except OSError:
        return False


def record_to_mark(known: BackupKnowledge) -> str:
    """The record as one line of the tampered mark (read back by `record_from_mark`)."""
    if isinstance(known, BackupRecord):
        return f"{_MARK_PREFIX}{known.origin} {known.sha256} {known.written_at!r}"
    return _MARK_PREFIX + known


def record_from_mark(line: str) -> BackupKnowledge:
    words = line[len(_MARK_PREFIX):].split()
    if len(words) == 1 and words[0] in ("none", "unrecorded"):
        return "none" if words[0] == "none" else "unrecorded"
    try:
        origin, sha, stamp = words
        if origin in _ORIGINS:
            return BackupRecord(sha, float(stamp), origin)
    except ValueError:
        pass
    return "unreadable"


def _record(conn: sqlite3.Connection, sha256: str, origin: Origin) -> BackupRecord:
    stamp = time.time()
    conn.execute(_CREATE_RECORD)
    conn.execute(f"INSERT OR REPLACE INTO {RECORD_TABLE} (id, sha256, written_at, origin) "
                 "VALUES (1, ?, ?, ?)", (sha256, stamp, origin))
    return BackupRecord(sha256, stamp, origin)


def restored_from_backup(ledger: Path) -> bool:
    """Is ledger.db, before this open writes anything, a byte-for-byte copy of the backup (the
    recovery steps' `cp`)? Cheap unless the sizes agree."""
    backup = backup_path(ledger)
    try:
        if _wal_has_frames(ledger) or ledger.stat().st_size != backup.stat().st_size:
            return False
        return _same_bytes(ledger, backup)
    except OSError:
        return False


def _same_bytes(a: Path, b: Path) -> bool:
    # Not filecmp.cmp: it caches verdicts by (size, mtime), which a copy made within the same
    # second may share with a different file.
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            chunk = fa.read(1 << 20)
            if chunk != fb.read(1 << 20):
                return False
            if not chunk:
                return True


def note_backup_at_open(conn: sqlite3.Connection, ledger: Path, *, existed: bool,
                        restored: bool) -> None:
    """When a writer opens the ledger: start recording backups, and vouch for the one beside it
    where the harness can. A ledger restored from the backup holds the backup's content, so the
    backup is what the ledger was as it was restored. A ledger an older autoresearch wrote has
    no record: its backup is taken as that release left it (nothing better is known) and
    recorded, so that a later change to it is seen. A new ledger vouches for no file already
    there."""
    backup = backup_path(ledger)
    if restored:
        _record(conn, file_sha256(backup), "restored")
        return
    unrecorded = read_backup_record(conn) == "unrecorded"
    conn.execute(_CREATE_RECORD)
    if unrecorded and existed and backup.is_file():
        _record(conn, file_sha256(backup), "older")


def damaged(ledger: Path, why: str) -> LedgerDamagedError:
    return LedgerDamagedError(f"the ledger is damaged: {why}", where=str(ledger),
                              fix=_recovery(ledger))


def too_new(ledger: Path, version: int, known: int) -> LedgerTooNewError:
    return LedgerTooNewError(
        f"the ledger has schema version {version}, newer than this autoresearch understands "
        f"({known}): it was written by a newer release",
        where=str(ledger),
        fix="upgrade autoresearch (pip install -U autoresearch) and run the command again; "
            "nothing was read or changed",
    )


def _describe_start(head: bytes) -> str:
    """What a file that is not SQLite looks like, for the message."""
    text = head[:32].decode("utf-8", errors="replace")
    if all(c.isprintable() or c in "\r\n\t" for c in text) and text.strip():
        return f"it starts with the text {text.strip()!r}"
    return f"it starts with the bytes {head[:16].hex(' ')}"


def _wal_has_frames(ledger: Path) -> bool:
    wal = ledger.with_name(ledger.name + "-wal")
    try:
        return wal.stat().st_size > 32  # a WAL header alone holds no page
    except OSError:
        return False


def check_header(ledger: Path) -> None:
    """Refuse a file that is visibly not a whole SQLite database (cheap: reads 100 bytes).

    A missing or empty file passes: it is a new ledger (whether an empty one is acceptable is
    decided after opening, by `check_opened`).
    """
    try:
        size = ledger.stat().st_size
        if ledger.is_dir():
            raise damaged(ledger, "it is a directory, not a file")
        if size == 0:
            return
        with ledger.open("rb") as fh:
            head = fh.read(HEADER_BYTES)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise LedgerError(f"cannot read the ledger: {exc.strerror}", where=str(ledger),
                          fix="check the file's permissions") from None
    if len(head) < len(SQLITE_MAGIC) and SQLITE_MAGIC.startswith(head):
        raise damaged(ledger, f"it is truncated to {size} bytes")
    if not head.startswith(SQLITE_MAGIC):
        raise damaged(ledger, f"it is not an SQLite database ({_describe_start(head)})")
    if len(head) < HEADER_BYTES:
        raise damaged(ledger, f"it is truncated to {size} bytes (an SQLite header alone is "
                      f"{HEADER_BYTES})")
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise damaged(ledger, f"its header is overwritten (page size {page_size})")
    pages = int.from_bytes(head[28:32], "big")
    # The in-header size is valid when the two change counters agree (SQLite's own rule). While
    # a WAL holds frames, a checkpoint may have been cut short after writing page 1: then the
    # WAL, not the file's length, is the truth, and SQLite's own check below judges the file.
    header_size_valid = head[24:28] == head[92:96] and pages > 0
    if header_size_valid and size < pages * page_size and not _wal_has_frames(ledger):
        raise damaged(ledger, f"it is truncated: {size:,} bytes where its header says "
                      f"{pages * page_size:,}")


def check_opened(conn: sqlite3.Connection, ledger: Path, known_version: int, *,
                 existed: bool) -> int:
    """After connecting: the schema version (refused when newer) and SQLite's quick_check of
    every page. Returns the file's schema version (0: an empty ledger).

    An empty file that existed before this open, where sessions were recorded, is refused: the
    ledger was truncated or replaced, and a new schema must not be written over it.
    """
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > known_version:
        raise too_new(ledger, version, known_version)
    if version == 0:
        tables = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
        if tables:
            raise damaged(ledger, f"it is an SQLite database with {tables} table(s) but no "
                          "autoresearch schema (another program's file?)")
        sessions = recorded_sessions(ledger) if existed else []
        if sessions:
            raise damaged(ledger, "it is empty, while sessions were recorded here ("
                          + ", ".join(sessions[:3]) + ")")
        return 0
    present = {name for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = sorted(tables_at(version) - present)
    if missing:
        raise damaged(ledger, f"a part of its schema is missing (no table {', '.join(missing)})")
    problems = [row[0] for row in conn.execute("PRAGMA quick_check(3)")]
    if problems != ["ok"]:
        raise damaged(ledger, "SQLite's integrity check fails: " + "; ".join(problems))
    return int(version)


def translate(exc: sqlite3.Error, ledger: Path) -> AutoresearchError | None:
    """The user-facing error for an SQLite error on the ledger, or None for a programming error
    (which must surface as itself)."""
    code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
    message = str(exc)
    if code == _SQLITE_FULL:
        from autoresearch.diskfull import disk_full_at

        return disk_full_at(ledger)
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return damaged(ledger, f"SQLite says: {message}")
    if code == _SQLITE_IOERR:
        from autoresearch.diskfull import NEARLY_FULL_BYTES, disk_full_at, free_bytes

        free = free_bytes(ledger)
        if free is not None and free < NEARLY_FULL_BYTES:
            return disk_full_at(ledger)
        return LedgerError(f"an I/O error on the ledger: {message}", where=str(ledger),
                           fix="check the disk (dmesg, the filesystem's health), then run the "
                               "command again")
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return AutoresearchError(
            f"the ledger stayed locked by another process ({message})", where=str(ledger),
            fix="wait for the other autoresearch command to finish, then run this one again")
    if code in (_SQLITE_READONLY, _SQLITE_CANTOPEN, _SQLITE_PERM):
        return LedgerError(f"cannot open or write the ledger: {message}", where=str(ledger),
                           fix=f"check that {ledger.parent} and the files in it are writable "
                               "by you (and that it is not on a read-only filesystem)")
    if code == _SQLITE_ERROR and message.startswith(("no such table", "no such column")):
        return damaged(ledger, f"a part of its schema is missing ({message})")
    return None


def write_backup(conn: sqlite3.Connection, ledger: Path) -> BackupRecord | None:
    """Copy the ledger to `ledger-backup.db` beside it, atomically, if it passes quick_check,
    and record the copy's sha256 and the time in the ledger (`backup_record`).

    The record is written before the copy replaces the old backup: if recording fails (a full
    disk), the old backup stays, and with it the record that vouches for it.
    Best effort: a full disk or a damaged ledger leaves the previous backup as it was (a backup
    of a damaged file would only replace a good one). Returns the record of the backup written.
    """
    target = backup_path(ledger)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        if [row[0] for row in conn.execute("PRAGMA quick_check(1)")] != ["ok"]:
            return None
        copy = sqlite3.connect(tmp)
        try:
            conn.backup(copy)
            # A plain rollback-journal file: the backup is one self-contained file.
            copy.execute("PRAGMA journal_mode=DELETE")
        finally:
            copy.close()
        record = _record(conn, file_sha256(tmp), "closed")
        os.replace(tmp, target)
        return record
    except (sqlite3.Error, OSError):
        return None
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-journal")):
            with contextlib.suppress(OSError):
                leftover.unlink()
