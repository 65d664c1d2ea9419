"""Git housekeeping after a session: what its experiments leave in the user's repository, tidied.

Each experiment is a commit (three new loose objects or so) and each discarded one a ref of its
own (`refs/autoresearch/<tag>/discarded/<id>`), a file under `.git/refs/`. After thousands of
experiments, thousands of ref files slow every ref listing, and the loose objects bring git's
automatic gc (gc.auto, 6700 by default) close: the user's next `git commit` would stop to run it.

`tidy` packs the refs (`git pack-refs --all`: the refs keep their values, only the files go into
`packed-refs`) and runs `git gc --auto`, which does nothing below the user's gc.auto threshold
and nothing at all with `gc.auto = 0`. Neither removes anything reachable: gc keeps every object
reachable from a ref, a reflog, a worktree's HEAD or index, and the discarded refs keep the
discarded commits reachable; unreachable objects go only once older than gc.pruneExpire (two
weeks by default), so what a concurrent session has just written is kept too. Both are safe
while other processes use the repository (a second session of another tag, its worktrees): git
locks what it rewrites, and no ref changes value. Per-worktree state (each worktree's HEAD) is
not packed.

Housekeeping is best effort and bounded in time: a failure or a timeout is reported in one line
and nothing else happens (the refs and objects stay as they were: still valid).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from autoresearch.gitops.runner import git, run_git

TIDY_TIMEOUT_S = 120.0  # for the whole of `tidy`; git is stopped when it is up
PACK_REFS_TIMEOUT_S = 30.0

_FALSE = ("false", "no", "off", "0")


def pack_refs(root: Path, timeout_s: float = PACK_REFS_TIMEOUT_S) -> str | None:
    """`git pack-refs --all` in `root`'s repository, unless the user set gc.packRefs = false;
    None when done (or not wanted), else one line saying why not."""
    if git(root, "config", "--get", "gc.packRefs", check=False).strip().lower() in _FALSE:
        return None
    return _step(root, ("pack-refs", "--all"), "git pack-refs", timeout_s)


def tidy(root: Path, timeout_s: float = TIDY_TIMEOUT_S) -> str | None:
    """Pack the refs, then `git gc --auto --quiet` (in the foreground: gc.autoDetach would
    leave it running, unbounded, after the session), within `timeout_s` in all. None when
    done; else one line saying what was not done and why."""
    deadline = time.monotonic() + timeout_s
    problem = pack_refs(root, timeout_s)
    left = deadline - time.monotonic()
    if left <= 0:
        return problem or f"git gc --auto was not run: git pack-refs took all {timeout_s:.0f} s"
    gc = _step(root, ("-c", "gc.autoDetach=false", "gc", "--auto", "--quiet"), "git gc --auto",
               max(left, 1.0))
    return "; ".join(p for p in (problem, gc) if p) or None


def _step(root: Path, args: tuple[str, ...], name: str, timeout_s: float) -> str | None:
    try:
        done = run_git(root, *args, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return f"{name} was stopped after {timeout_s:.0f} s (it is safe to run it again later)"
    except OSError as err:
        return f"{name} could not be started: {err}"
    if done.returncode != 0:
        said = (done.stderr or done.stdout).decode("utf-8", "replace").strip().splitlines()
        # git's last line alone ("remove the file manually to continue.") names no file: the
        # line that does ("fatal: Unable to create '…/packed-refs.lock': File exists.") is kept.
        named = [line for line in said if ".lock'" in line][-1:]
        shown = [*named, *said[-1:]] if named and named[-1] != said[-1] else said[-1:]
        return f"{name} failed ({done.returncode})" + (f": {' '.join(shown)}" if shown else "")
    return None
