"""Whether an agent run changed the user's own checkout, outside the worktree it was given.

The session's worktree lives inside the user's repository, so an agent with a shell can reach the
checkout it was started from (`../../..`, or an absolute path). The harness promises never to
touch that checkout, so it notes the checkout's state right before the agent starts (HEAD, and
every path `git status` lists with its size and modification time) and compares right after.

The change is reported, never undone: the harness cannot tell an agent's edit from the user's own
work made at the same moment, and it must not throw the user's work away.

The files the harness itself writes to are not the agent's change: its stdout and stderr sent to a
file in the checkout (`autoresearch run > night.log 2>&1`, `nohup`'s nohup.out) grow while the
agent runs. Such a path is recognised by the file it is (device and inode, as `fstat` gives them
for the harness's descriptors 1 and 2), not by its name, and is stamped as the harness's output
whatever its size: the same file there before and after is no change, while that file deleted or
replaced, or another path made to point at it, still is. With the output on a pipe
(`autoresearch run | tee night.log`), the files the pipeline's programs write are the harness's
output the same way (`pipe_files`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from autoresearch.gitops.runner import git
from autoresearch.gitops.status import porcelain_entries
from autoresearch.proposers.agent.pipe_files import files_behind_own_pipes

# (size, mtime_ns); OWN_OUTPUT: the file the harness's own output goes to; None: listed by git
# status but gone.
Stamp = tuple[int, int] | str | None
OWN_OUTPUT = "the harness's own output"


def own_output_files() -> frozenset[tuple[int, int]]:
    """(st_dev, st_ino) of what this process's stdout and stderr are written to. Descriptors 1
    and 2, not `sys.stdout`: the shell's redirection is what names the file (a terminal there
    matches no file of the checkout; a pipe, the files its readers write)."""
    files: set[tuple[int, int]] = set(files_behind_own_pipes())
    for fd in (1, 2):
        try:
            st = os.fstat(fd)
        except OSError:  # closed (started with >&-)
            continue
        files.add((st.st_dev, st.st_ino))
    return frozenset(files)


def user_checkout(worktree: Path) -> Path | None:
    """The main working tree of the repository `worktree` belongs to (None for a bare one)."""
    common = Path(git(worktree, "rev-parse", "--path-format=absolute", "--git-common-dir").strip())
    if common.name != ".git" or not common.is_dir():
        return None
    root = common.parent
    return None if root.resolve() == worktree.resolve() else root


def _state(root: Path, skip: tuple[str, ...]) -> tuple[str, dict[str, Stamp]]:
    head = git(root, "rev-parse", "--verify", "-q", "HEAD", check=False).strip()
    branch = git(root, "symbolic-ref", "-q", "HEAD", check=False).strip()
    listed = git(root, "status", "--porcelain=v1", "-z", "--untracked-files=all")
    own = own_output_files()
    stamps: dict[str, Stamp] = {}
    for _, path, _ in porcelain_entries(listed.split("\0")):
        if path.startswith(skip):
            continue
        try:
            st = (root / path).stat()
        except OSError:
            stamps[path] = None
            continue
        own_file = (st.st_dev, st.st_ino) in own
        stamps[path] = OWN_OUTPUT if own_file else (st.st_size, st.st_mtime_ns)
    return f"{branch} {head}", stamps


@dataclass(frozen=True)
class CheckoutSnapshot:
    root: Path | None
    head: str
    stamps: dict[str, Stamp]
    # The harness's own state directory and the agent's worktree, if they show up at all.
    skip: tuple[str, ...] = (".autoresearch/",)

    @classmethod
    def take(cls, worktree: Path) -> CheckoutSnapshot:
        root = user_checkout(worktree)
        if root is None:
            return cls(None, "", {})
        skip: tuple[str, ...] = (".autoresearch/",)
        if worktree.resolve().is_relative_to(root.resolve()):
            skip += (worktree.resolve().relative_to(root.resolve()).as_posix() + "/",)
        head, stamps = _state(root, skip)
        return cls(root, head, stamps, skip)

    def changes(self) -> list[str]:
        """What changed in the checkout since `take`: paths, and HEAD if it moved."""
        if self.root is None:
            return []
        head, stamps = _state(self.root, self.skip)
        changed = sorted(p for p in self.stamps.keys() | stamps.keys()
                         if self.stamps.get(p, ()) != stamps.get(p, ()))
        if head != self.head:
            changed.insert(0, "HEAD (a commit or a branch switch)")
        return changed
