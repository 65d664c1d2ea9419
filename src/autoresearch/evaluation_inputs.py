"""Files outside the repository that the evaluation reads: `[verify] inputs`.

Protected globs name files of the repository; an evaluation that reads `/data/test.txt` reads a
file nothing watched, so an agent (or a run) of the same user could change it between the
baseline and a candidate and have a worse change kept (tamper finding #4). Listing it,
`inputs = ["/data/test.txt", "~/datasets/eval/"]` (absolute paths, `~` allowed; a directory
covers every file below it), makes it part of what the session holds fixed:

- when the session is created, every file is hashed and the hashes recorded in the ledger (an
  `inputs` event); a resume hashes them again and refuses to go on if one differs;
- each process stamps them (size, modification and change time, inode: a write cannot leave the
  change time alone) and compares the stamps before and after every run. Any difference, a
  file written, replaced, removed or added to a listed directory, stops the session (exit 3):
  results measured before and after would not be comparable, and the file is not ours to
  restore.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from autoresearch.errors import PreconditionError
from autoresearch.file_stamp import Stamp
from autoresearch.stop_signals import SessionStopped

__all__ = ["EvaluationInputs", "input_path_problem"]


def input_path_problem(text: str) -> str | None:
    """Why a `[verify] inputs` entry cannot name a file outside the repository (None: it can)."""
    if not text.strip():
        return "an empty path"
    if not Path(text.strip()).expanduser().is_absolute():
        return ("must be an absolute path (or start with ~): files of the repository are "
                "fenced with protected")
    return None


@dataclass(frozen=True)
class _Input:
    path: Path
    stamp: Stamp | None


def files_named(entries: Iterable[Path]) -> list[Path]:
    """The files `[verify] inputs` entries name, sorted: a file itself, a directory every file
    below it."""
    found: set[Path] = set()
    for entry in entries:
        if entry.is_dir():
            for dirpath, _dirs, names in os.walk(entry):
                found.update(Path(dirpath) / name for name in names)
        else:
            found.add(entry)
    return sorted(found)


class EvaluationInputs:
    """The listed inputs as this process found them, and the check that they stay so."""

    def __init__(self, entries: Sequence[Path] = (), files: Sequence[_Input] = ()) -> None:
        self.entries = list(entries)
        self.files = list(files)

    def __bool__(self) -> bool:
        return bool(self.entries)

    @classmethod
    def collect(cls, root: Path, paths: Sequence[str]) -> EvaluationInputs:
        """Stamp every file the entries name; refuse a missing entry or one in the repository."""
        entries = []
        for text in paths:
            entry = Path(text.strip()).expanduser()
            where = f"[verify] inputs → {text}"
            if not entry.exists():
                raise PreconditionError(f"the evaluation input {entry} does not exist",
                                        where=where, fix="prepare it first, or remove the entry")
            resolved = entry.resolve()
            if resolved == root.resolve() or root.resolve() in resolved.parents:
                raise PreconditionError(
                    f"the evaluation input {entry} is inside the repository", where=where,
                    fix="fence files of the repository with protected (or [verify] share for "
                        "git-ignored ones) and list only outside files here")
            entries.append(entry)
        inputs = cls(entries)
        inputs.files = [_Input(path, Stamp.of(path)) for path in inputs._listing()]
        return inputs

    def _listing(self) -> list[Path]:
        return files_named(self.entries)

    def changed(self) -> list[str]:
        """The inputs written, replaced, removed or added since this process stamped them."""
        before = {f.path: f.stamp for f in self.files}
        now = self._listing()
        changes = [f"{p} (added)" for p in now if p not in before]
        changes += [f"{p} ({'removed' if Stamp.of(p) is None else 'written'})"
                    for p, stamp in before.items() if Stamp.of(p) != stamp]
        return changes

    def check_unchanged(self) -> None:
        """Stop the session (exit 3) if an input changed: see the module's docstring."""
        changed = self.changed() if self.entries else []
        if changed:
            shown = ", ".join(changed[:5]) + (" …" if len(changed) > 5 else "")
            raise SessionStopped(
                f"an evaluation input ([verify] inputs) changed while the session used it: "
                f"{shown}. Results measured before and after would not be comparable. Find "
                "what wrote it (the verify command, the proposer, another program), restore it, "
                "then run the same command to resume.", exit_code=3)

    def digests(self) -> dict[str, str]:
        """sha256 of every input file's content (recorded when the session is created)."""
        out = {}
        for f in self.files:
            try:
                with open(f.path, "rb") as handle:
                    out[str(f.path)] = hashlib.file_digest(handle, "sha256").hexdigest()
            except OSError:
                out[str(f.path)] = "<unreadable>"
        return out

    def check_same_as(self, recorded: Mapping[str, str]) -> None:
        """Refuse to resume on inputs whose content differs from the session's start."""
        now = self.digests()
        differ = sorted(p for p in set(now) | set(recorded) if now.get(p) != recorded.get(p))
        if differ:
            shown = ", ".join(differ[:5]) + (" …" if len(differ) > 5 else "")
            raise PreconditionError(
                f"the evaluation inputs differ from when the session started: {shown}",
                where="[verify] inputs",
                fix="restore them as they were (results measured on other inputs are not "
                    "comparable), or start a new session with another --tag")
