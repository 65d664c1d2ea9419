"""Which refs and worktrees of the repository belong to another, live session.

The sessions of one repository share its refs: `refs/heads/autoresearch/<tag>` (the keeps) and
`refs/autoresearch/<tag>/...` (parked and saved candidates). While an agent runs, another
session's process may move its own refs and make its own worktrees: the guard must neither take
that for the agent's doing nor undo it. A finished session's refs, though, are the record of its
results (what `report` shows, what a merge takes), and nothing but an agent moves them while this
one runs. So a ref or worktree counts as another session's only while that session is live, that
is while its process holds its lock (`state.SessionLock`, an flock the kernel drops when the
holder dies: every process an agent started is killed before the guard looks, so an agent cannot
keep a lock held to pass for a live session).

The tag of a ref is matched exactly: `refs/heads/autoresearch/c-x` is session `c-x`'s, never
session `c`'s.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from autoresearch.config import STATE_DIR
from autoresearch.gitops.runner import git, run_git
from autoresearch.process_tree import owner_gone
from autoresearch.state import TAG_PATTERN, SessionLock, StatePaths, root_of_worktree

SESSION_REF_PREFIXES = ("refs/heads/autoresearch/", "refs/autoresearch/")
# `gitops.create_bundle`'s ref, made and deleted around one `git bundle` by any session's process
# (a remote run's candidate): never a record, and never the agent's business either way.
_BUNDLE_REF = re.compile(r"^refs/autoresearch/bundle/[0-9a-f]{32}$")
# The temporary directories `autoresearch check` makes its worktrees in (`check_together`): owned
# by a process (`process_tree.owned_prefix`), so a live check's can be told from an agent's.
CHECK_TEMPDIR_PREFIX = "autoresearch-check-"

Worktrees = Mapping[str, str | None]  # real path -> the branch checked out there (None: detached)


def session_of_ref(name: str) -> str | None:
    """The tag of the session whose namespace `name` is in, or None (not a session ref)."""
    for prefix in SESSION_REF_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):].split("/", 1)[0]
    return None


def is_transient_harness_ref(name: str) -> bool:
    return _BUNDLE_REF.match(name) is not None


def state_root(cwd: Path) -> Path:
    """The repository whose `.autoresearch/` holds the session locks: the root the session
    worktree `cwd` belongs to, or, for any other worktree, the main one of its repository."""
    root = root_of_worktree(cwd)
    if root is not None:
        return root
    common = git(cwd, "rev-parse", "--path-format=absolute", "--git-common-dir").strip()
    return Path(common).parent


def worktrees(cwd: Path) -> dict[str, str | None]:
    """Every worktree git has registered for the repository, by real path."""
    out = run_git(cwd, "worktree", "list", "--porcelain", "-z").stdout
    found: dict[str, str | None] = {}
    path: str | None = None
    for field in out.split(b"\0"):
        text = field.decode("utf-8", "surrogateescape")
        if text.startswith("worktree "):
            path = os.path.realpath(text[len("worktree "):])
            found[path] = None
        elif text.startswith("branch ") and path is not None:
            found[path] = text[len("branch "):]
    return found


def _slot_tag(path: str, root: Path) -> str | None:
    """The tag whose slots directory (`.autoresearch/worktrees/<tag>/`) holds `path`, if any."""
    slots = os.path.realpath(root / STATE_DIR / "worktrees")
    relative = os.path.relpath(path, slots)
    if relative.startswith(os.pardir) or relative == os.curdir:
        return None
    return relative.split(os.sep, 1)[0]


def candidate_tags(refs: Iterable[str], trees: Iterable[str], root: Path) -> set[str]:
    """The session tags these refs and worktrees could belong to (valid tags only)."""
    tags = {session_of_ref(name) for name in refs} | {_slot_tag(path, root) for path in trees}
    return {tag for tag in tags if tag is not None and TAG_PATTERN.match(tag)}


def live_sessions(root: Path, tags: Iterable[str]) -> frozenset[str]:
    """The tags among `tags` whose session process is running now (it holds its lock).

    The lock must be the session's own file: a symlink or a hard link to another lock (this
    session's, which its process holds while the agent runs) would make a finished session look
    live and its refs exempt. And its holder is never this process, which holds only its own."""
    return frozenset(tag for tag in set(tags) if _held_by_another(StatePaths(root, tag).lock))


def _held_by_another(lock: Path) -> bool:
    try:
        st = os.lstat(lock)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        return False  # the harness writes a plain file, linked once
    holder = SessionLock(lock).live_holder()
    return holder is not None and holder != os.getpid()


def is_harness_worktree(path: str, branch: str | None, root: Path,
                        sessions: frozenset[str]) -> bool:
    """Whether a worktree that appeared during the run is one the harness made meanwhile: it is
    detached (the harness never checks a branch out) and it is a slot of one of `sessions` (this
    one and the live ones: a sibling slot made again, a session starting) or the worktree of an
    `autoresearch check` that is still running."""
    if branch is not None:
        return False
    if _slot_tag(path, root) in sessions:
        return True
    holder = Path(path).parent
    return (holder.parent == Path(os.path.realpath(tempfile.gettempdir()))
            and holder.name.startswith(CHECK_TEMPDIR_PREFIX)
            and not owner_gone(holder.name, CHECK_TEMPDIR_PREFIX))
