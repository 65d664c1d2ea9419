"""Replace refs a run packs away from the control-file watch.

A `refs/replace/<id>` ref makes git read another object wherever `<id>` is named: the session
branch would show, check out and merge another scorer. The harness's own git ignores them
(`GIT_NO_REPLACE_OBJECTS`), and a loose one a run writes is put back with git's control files
(`control_files`); but `git pack-refs --all` moves it into `packed-refs`, a file every ref
update rewrites, which no snapshot can put back byte for byte. So after a run whose
`packed-refs` changed, the replace refs are listed again: those the session did not start with
are deleted, those it started with put back where they pointed (compare-and-swap, `git
update-ref`), and each is named.
"""

from __future__ import annotations

import threading
from pathlib import Path

from autoresearch.file_stamp import Stamp
from autoresearch.gitops.runner import git, run_git

PREFIX = "refs/replace/"


class ReplaceRefs:
    """The replace refs a session started with (name -> object); `undo_changes` undoes any
    other and any move of theirs."""

    def __init__(self, repo: Path) -> None:
        self._repo = repo
        common = git(repo, "rev-parse", "--path-format=absolute", "--git-common-dir").strip()
        self._packed = Path(common) / "packed-refs"
        self._lock = threading.Lock()
        self._known = self._listed()
        self._stamp = Stamp.of(self._packed, follow_links=False)

    def _listed(self) -> dict[str, str]:
        out = git(self._repo, "for-each-ref", "--format=%(refname) %(objectname)", PREFIX)
        return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)

    def undo_changes(self) -> list[str]:
        """After a run: the replace refs that appeared in `packed-refs`, deleted, and those of
        the session's start it repointed, put back (no git runs when the file did not change)."""
        with self._lock:
            stamp = Stamp.of(self._packed, follow_links=False)
            if stamp == self._stamp:
                return []
            undone = []
            for ref, now in self._listed().items():
                was = self._known.get(ref)
                if was == now:
                    continue
                args = ("-d", ref, now) if was is None else (ref, was, now)
                if run_git(self._repo, "update-ref", *args).returncode == 0:
                    undone.append(ref)
            self._stamp = Stamp.of(self._packed, follow_links=False)
            return undone
