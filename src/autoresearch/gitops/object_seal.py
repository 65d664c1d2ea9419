"""git's stored copies of the protected files, held to what their object ids say.

A run (or an agent) is the same user as the harness, and git's object files are only
read-only by mode: overwriting the loose object of `score.py`'s blob with another scorer leaves
every commit naming the same id, while each checkout after it writes the other scorer, and git
does not check an object's content against its id when it reads it. The protected fence
compares the worktree's files with the session's hashes, so a session in progress would blame
the next candidate whose checkout wrote the forged file; a new session would take the forged
file as its reference. (A `refs/replace/` ref to the same end is ignored by every git call of
the harness, `GIT_NO_REPLACE_OBJECTS`, and is put back as a change to git's files.)

So the objects holding the protected files are read once, their content hashed as git names
objects and compared with their ids, and kept (when small) to write back. After each run their
files are stamped again (`lstat`, no git): a change there, or in the set of packs, reads them
again; an object that no longer holds what its id says is written back from the kept copy
and named, or, when no copy was kept, the session stops.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Collection
from pathlib import Path

from autoresearch.errors import PreconditionError
from autoresearch.file_stamp import Stamp
from autoresearch.gitops.runner import GitError, git, run_git

KEEP_BYTES = 16 * 1024 * 1024  # the protected content kept in memory to write back, at most


class ObjectsDamaged(PreconditionError):
    """A protected file's stored object does not hold what its id says, and cannot be mended."""


def object_id(data: bytes, algorithm: str) -> str:
    """The id git gives a blob of `data`."""
    return hashlib.new(algorithm, b"blob %d\0" % len(data) + data).hexdigest()


class ObjectSeal:
    """The blobs of the protected files in one commit (path -> object id), verified on creation
    and by `mend` after each run."""

    def __init__(self, repo: Path, commit: str, paths: Collection[str]) -> None:
        common = git(repo, "rev-parse", "--path-format=absolute", "--git-common-dir").strip()
        self._objects = Path(common) / "objects"
        self._algorithm = git(repo, "rev-parse", "--show-object-format").strip() or "sha1"
        self._repo = repo
        self._lock = threading.Lock()
        self.blobs = _blob_ids(repo, commit, paths)
        found = _read(repo, set(self.blobs.values()))
        bad = sorted(p for p, oid in self.blobs.items()
                     if oid not in found or object_id(found[oid], self._algorithm) != oid)
        if bad:
            raise ObjectsDamaged(
                f"git's stored copy of the protected file{'s' if len(bad) > 1 else ''} "
                f"{', '.join(bad)} does not hold what its object id says: something rewrote "
                f"{self._objects} (a run or an agent of an earlier session, or a damaged disk), "
                "and every checkout would write the other content", where=str(self._objects),
                fix="`git fsck` names the damaged objects; put the right file back from a clone "
                    "or a backup (remove the damaged object file, then `git hash-object -w "
                    "FILE`), or start from a fresh clone")
        kept, total = {}, 0
        for oid in set(self.blobs.values()):
            if total + len(found[oid]) <= KEEP_BYTES:
                kept[oid], total = found[oid], total + len(found[oid])
        self._kept: dict[str, bytes] = kept
        self._stamps = self._stamp()

    def _stamp(self) -> tuple[object, ...]:
        """What the objects' files look like: the loose ones', and every file of the packs' and
        info directories (a pack, its index, a multi-pack index), by `lstat` (no git). The
        ctime is in it: a process can set a file's size and mtime back after rewriting it in
        place, never its ctime."""
        loose = [Stamp.of(self._objects / oid[:2] / oid[2:], follow_links=False)
                 for oid in sorted(set(self.blobs.values()))]
        listed: list[tuple[str, Stamp | None]] = []
        for directory in (self._objects / "pack", self._objects / "info"):
            try:
                names = sorted(os.listdir(directory))
            except OSError:
                continue
            listed += [(name, Stamp.of(directory / name, follow_links=False)) for name in names]
        return (*loose, *listed)

    def mend(self) -> list[str]:
        """After a run: the protected files whose stored object had been rewritten, each
        written back (an empty list when nothing changed). Raises ObjectsDamaged when one
        cannot be written back (not kept, or in a pack)."""
        with self._lock:
            stamps = self._stamp()
            if stamps == self._stamps:
                return []
            oids = set(self.blobs.values())
            found = _read(self._repo, oids)
            bad = {oid for oid in oids
                   if oid not in found or object_id(found[oid], self._algorithm) != oid}
            paths = sorted(p for p, oid in self.blobs.items() if oid in bad)
            for oid in sorted(bad):
                self._write_back(oid, [p for p, o in self.blobs.items() if o == oid],
                                 packed=oid in found)
            self._stamps = self._stamp()
            return paths

    def _write_back(self, oid: str, paths: list[str], *, packed: bool) -> None:
        """Write the kept copy of `oid` as its loose object (the forged loose file removed
        first: git writes no object it already has). A forged copy inside a pack cannot be
        mended so: git reads packs before loose objects."""
        loose = self._objects / oid[:2] / oid[2:]
        good = self._kept.get(oid)
        is_loose = loose.is_file() or loose.is_symlink()
        if good is None or (packed and not is_loose):
            raise ObjectsDamaged(
                f"git's stored copy of the protected file {', '.join(paths)} was rewritten "
                f"during a run ({oid}), and cannot be put back from here",
                where=str(self._objects),
                fix="`git fsck` names the damaged objects; put the right file back from a clone "
                    "or a backup, then resume with the same command")
        if is_loose:
            loose.unlink()
        written = _git_bytes(self._repo, "hash-object", "-w", "--stdin", data=good)
        if written.decode().strip() != oid:  # cannot be: the kept copy hashed to it
            raise ObjectsDamaged(f"writing back {oid} gave {written.decode().strip()}",
                                 where=str(self._objects), fix="run `git fsck`")


def _git_bytes(repo: Path, *args: str, data: bytes | None = None) -> bytes:
    done = run_git(repo, *args, input_bytes=data)
    if done.returncode != 0:
        raise GitError(list(args), done.returncode, done.stderr.decode("utf-8", "replace"))
    return done.stdout


def _blob_ids(repo: Path, commit: str, paths: Collection[str]) -> dict[str, str]:
    """path -> object id of each of `paths` that is a file in `commit`."""
    if not paths:
        return {}
    listed = _git_bytes(repo, "ls-tree", "-r", "-z", "--full-tree", commit)
    wanted = set(paths)
    out: dict[str, str] = {}
    for entry in listed.split(b"\0"):
        meta, _, name = entry.partition(b"\t")
        fields = meta.split()
        path = os.fsdecode(name)
        if len(fields) == 3 and fields[1] == b"blob" and path in wanted:
            out[path] = fields[2].decode("ascii")
    return out


def _read(repo: Path, oids: Collection[str]) -> dict[str, bytes]:
    """The content of each object in `oids` that git has (one `git cat-file --batch` call)."""
    if not oids:
        return {}
    wanted = sorted(oids)
    raw = _git_bytes(repo, "cat-file", "--batch",
                     data="".join(f"{oid}\n" for oid in wanted).encode())
    out: dict[str, bytes] = {}
    pos = 0
    for oid in wanted:
        end = raw.index(b"\n", pos)
        header = raw[pos:end].split()
        pos = end + 1
        if len(header) == 3 and header[2].isdigit():
            size = int(header[2])
            out[oid] = raw[pos:pos + size]
            pos += size + 1
    return out

