"""Replace refs a run packs away from the control-file watch.

A `refs/replace/<id>` ref makes git read another object wherever `<id>` is named: the session
branch would show, check out and merge another scorer. The harness's own git ignores them
(`GIT_NO_REPLACE_OBJECTS`), and a loose one a run writes is put back with git's control files
(`control_files`); but `git pack-refs --all` moves it into `packed-refs`, a file every ref
update rewrites, which no snapshot can put back byte for byte. So after a run whose
`packed-refs` changed, the replace refs are listed again, and those the session did not start
with are deleted (compare-and-swap: `git update-ref -d REF OLD`) and named.
"""

from __future__ import annotations

import threading
from pathlib import Path

from autoresearch.gitops.runner import git, run_git

PREFIX = "refs/replace/"


def _stamp(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = path.lstat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


class ReplaceRefs:
    """The replace refs a session started with; `remove_new` takes away any other."""

    def __init__(self, repo: Path) -> None:
        self._repo = repo
        common = git(repo, "rev-parse", "--path-format=absolute", "--git-common-dir").strip()
        self._packed = Path(common) / "packed-refs"
        self._lock = threading.Lock()
        self._known = set(self._listed())
        self._stamp = _stamp(self._packed)

    def _listed(self) -> dict[str, str]:
        out = git(self._repo, "for-each-ref", "--format=%(refname) %(objectname)", PREFIX)
        return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)

    def remove_new(self) -> list[str]:
        """After a run: the replace refs that appeared in `packed-refs`, deleted (no git runs
        when the file did not change)."""
        with self._lock:
            stamp = _stamp(self._packed)
            if stamp == self._stamp:
                return []
            removed = []
            for ref, old in self._listed().items():
                if ref not in self._known and run_git(
                        self._repo, "update-ref", "-d", ref, old).returncode == 0:
                    removed.append(ref)
            self._stamp = _stamp(self._packed)
            return removed
