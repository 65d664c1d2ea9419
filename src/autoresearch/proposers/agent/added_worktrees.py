"""A worktree registered while an agent ran, and what the guard may do with it.

Adding one is a violation (an agent that checks a branch out in a worktree of its own can commit
onto it), but the harness cannot tell whose it is: the user may have run `git worktree add
../x autoresearch/<tag>` from another terminal at the same moment, to commit from, and started
working in it. So it is removed only when nothing would be lost: no change to a tracked file, no
untracked or ignored file but regenerable caches (`untracked.is_cache`, deleted with it), and
its HEAD's commits held by a ref (saved under refs/autoresearch/<tag>/saved/ first when none
does). One that holds work is left in place, not even unlocked, and the user is told where it
is, why it stayed, and how to remove it if it is not theirs; a branch checked out in it is then
treated as any branch checked out in another worktree (`gitstate`: not moved under it).

Removing goes through `git worktree remove` without --force, so git looks again itself: a file
written between this module's look and the removal keeps the worktree.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.checkout_sync import save_commits
from autoresearch.gitops.runner import run_git
from autoresearch.gitops.status import porcelain_entries
from autoresearch.proposers.agent import sessions
from autoresearch.proposers.agent.untracked import is_cache

_SHOWN = 5  # work paths named in a message


@dataclass(frozen=True)
class Contents:
    """What a worktree's directory holds besides its HEAD's commit."""

    work: list[str]  # changed tracked files, untracked and ignored files that are not caches
    caches: list[str]  # regenerable files, deleted with it
    unreadable: str | None = None  # why git cannot say what it holds: it is kept whole

    @property
    def holds_work(self) -> bool:
        return bool(self.work) or self.unreadable is not None


@dataclass(frozen=True)
class Settled:
    """What became of one added worktree."""

    removed: bool
    notes: list[str] = field(default_factory=list)  # what to tell the user
    saved: str | None = None  # the commit its HEAD held, saved before it was removed


def _git_out(path: Path, *args: str) -> str | None:
    done = run_git(path, *args)
    return done.stdout.decode("utf-8", "surrogateescape") if done.returncode == 0 else None


def look_into(path: str) -> Contents:
    """The worktree's uncommitted work and its caches. A directory git cannot read
    as that worktree (its `.git` link gone or pointing elsewhere: `git status` there would
    answer for another repository) counts as holding work: nothing in it is known to be safe."""
    where = Path(path)
    top = _git_out(where, "rev-parse", "--show-toplevel")
    if top is None or os.path.realpath(top.strip()) != os.path.realpath(path):
        return Contents(work=[], caches=[], unreadable="its .git link is gone or points elsewhere")
    listed = _git_out(where, "status", "--porcelain=v1", "-z", "--untracked-files=all",
                      "--ignored=traditional")
    if listed is None:
        return Contents(work=[], caches=[], unreadable="git status failed there")
    work: list[str] = []
    caches: list[str] = []
    for code, name, _ in porcelain_entries(listed.split("\0")):
        if code in ("??", "!!") and is_cache(name):
            caches.append(name)
        else:
            work.append(name)
    return Contents(work=work, caches=caches)


def _held_by_a_ref(cwd: Path, commit: str) -> bool:
    """Whether every commit `commit` reaches is reachable from some ref (a branch, a tag, a
    session's ref): then removing the worktree whose HEAD it is loses none of them."""
    # Not --all: it counts every worktree's HEAD, this one's among them. Not the stash either:
    # the guard may drop the entries the run added.
    counted = run_git(cwd, "rev-list", "--count", commit, "--not", "--exclude=refs/stash",
                      "--glob=refs/*")
    # A failure (an object missing) proves nothing held: save.
    return counted.returncode == 0 and counted.stdout.decode().strip() == "0"


@dataclass(frozen=True)
class Listed:
    """What git's worktree list says of one worktree (its directory may be gone)."""

    head: str | None  # its HEAD's commit (None: none, or not listed)
    locked: bool


def listed(cwd: Path, path: str) -> Listed:
    out = run_git(cwd, "worktree", "list", "--porcelain", "-z").stdout
    for record in out.split(b"\0\0"):
        fields = [f.decode("utf-8", "surrogateescape") for f in record.split(b"\0") if f]
        here = next((f[len("worktree "):] for f in fields if f.startswith("worktree ")), None)
        if here is not None and os.path.realpath(here) == path:
            head = next((f[len("HEAD "):] for f in fields if f.startswith("HEAD ")), None)
            return Listed(head=head if head and head.strip("0") else None,
                          locked=any(f == "locked" or f.startswith("locked ") for f in fields))
    return Listed(head=None, locked=False)


def _left_in_place(path: str, branch: str | None, contents: Contents, locked: bool) -> str:
    shown = ", ".join(contents.work[:_SHOWN])
    more = len(contents.work) - _SHOWN
    held = (f"git cannot tell what it holds ({contents.unreadable})" if contents.unreadable
            else f"it holds work that is not committed ({shown}"
                 f"{f' and {more} more' if more > 0 else ''})")
    force = "--force --force" if locked else "--force"
    checked_out = f" (with {branch} checked out)" if branch else ""
    return (f"the worktree added at {path}{checked_out} was left in place: {held}, maybe "
            "yours (the harness cannot tell who added it, and removing it would delete that "
            f"work); if it is not yours, look at it (git -C {shlex.quote(path)} status) and "
            f"remove it: git worktree remove {force} {shlex.quote(path)}")


def _gone(cwd: Path, path: str) -> bool:
    if path in sessions.worktrees(cwd) and not os.path.lexists(path):
        run_git(cwd, "worktree", "prune")  # its directory was deleted, its entry left behind
    return path not in sessions.worktrees(cwd)


def settle(cwd: Path, path: str, branch: str | None, tag: str) -> Settled:
    """Remove the worktree at `path` (added during the run) if nothing in it would be lost,
    else leave it as it is; `cwd` is the session's worktree, `tag` its session's."""
    entry = listed(cwd, path)
    contents = look_into(path) if os.path.lexists(path) else Contents(work=[], caches=[])
    if contents.holds_work:
        return Settled(removed=False,
                       notes=[_left_in_place(path, branch, contents, entry.locked)])
    notes: list[str] = []
    saved: str | None = None
    if entry.head is not None and not _held_by_a_ref(cwd, entry.head):
        ref = save_commits(cwd, tag, entry.head)
        saved = entry.head
        notes.append(f"the worktree added at {path} held commits no ref holds (its HEAD "
                     f"{entry.head[:10]}): saved as {ref} before it was removed (git log {ref})")
    if entry.locked:
        # A lock keeps `git worktree prune` off a worktree on a removable disk: this one holds
        # nothing, and the run's lock must not keep what it added.
        run_git(cwd, "worktree", "unlock", path)
    if not os.path.lexists(path):
        # Its directory was deleted already: only its entry is left, which named its HEAD.
        return Settled(removed=_gone(cwd, path), notes=notes, saved=saved)
    for cache in contents.caches:
        (Path(path) / cache).unlink(missing_ok=True)
    removing = run_git(cwd, "worktree", "remove", path)
    if _gone(cwd, path):
        return Settled(removed=True, notes=notes, saved=saved)
    said = removing.stderr.decode("utf-8", "replace").strip().splitlines()
    why = said[-1] if said else "git gave no reason"
    notes.append(f"the worktree added at {path} could not be removed ({why}), so it was left in "
                 "place; if it is not yours, look at it "
                 f"(git -C {shlex.quote(path)} status) and remove it: git worktree remove --force "
                 f"{shlex.quote(path)}")
    return Settled(removed=False, notes=notes, saved=saved)
