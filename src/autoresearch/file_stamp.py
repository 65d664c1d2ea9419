"""A file's stamp: what any write to it changes, to tell cheaply whether it was written since."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Stamp:
    """What a write to a file cannot leave alone (no process can set the change time)."""

    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    mode: int  # a chmod changes the ctime too; kept to say "mode changed"

    @classmethod
    def of(cls, path: Path, *, follow_links: bool = True) -> Stamp | None:
        """The stamp of `path` (of the file a link points at, unless `follow_links` is false),
        or None when there is nothing there to stamp."""
        try:
            st = path.stat() if follow_links else path.lstat()
        except OSError:
            return None
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode)
