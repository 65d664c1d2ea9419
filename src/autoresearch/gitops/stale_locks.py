"""The lock files git leaves when it is killed mid-step, in what only one session uses.

git takes `index.lock` (a checkout, a commit), `HEAD.lock` and `<ref>.lock` (a ref update) and
removes them as it finishes or is stopped by SIGTERM; a SIGKILL of the session's process group,
a crash or a power cut leaves them, and every later git step there fails with "Unable to create
'….lock': File exists". In the session's own slots and refs, only the session's processes take
them, and a resume holds the session's lock and has killed what the dead one left: a lock found
there then is stale, and removed (the user's checkout and shared files such as `packed-refs`
are not touched: another program may hold those).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from autoresearch.gitops.runner import run_git

_SLOT_LOCKS = ("index.lock", "HEAD.lock", "ORIG_HEAD.lock")


def _git_dir(worktree: Path, which: str = "--git-dir") -> Path | None:
    if not worktree.is_dir():
        return None
    done = run_git(worktree, "rev-parse", "--path-format=absolute", which)
    out = done.stdout.decode("utf-8", "surrogateescape").strip()
    return Path(out) if done.returncode == 0 and out else None


def remove_stale_locks(repo: Path, slots: Iterable[Path], branch: str,
                       refs_prefix: str) -> list[Path]:
    """Remove the locks left in each slot's own git dir, on the session branch
    (`refs/heads/<branch>`) and under the session's refs (`refs_prefix`); returns them."""
    # The refs live in the common git dir, whichever checkout of the repository `repo` is (a
    # session run from a linked worktree of the user's has its own git dir there).
    common = _git_dir(repo, "--git-common-dir")
    mine = _git_dir(repo)
    found: list[Path] = []
    for slot in slots:
        own = _git_dir(slot)
        if own is not None and own not in (common, mine):  # never the user's checkout's index
            found += [own / name for name in _SLOT_LOCKS if (own / name).is_file()]
    if common is not None:
        branch_lock = common / f"refs/heads/{branch}.lock"
        if branch_lock.is_file():
            found.append(branch_lock)
        refs = common / refs_prefix
        if refs.is_dir():
            found += sorted(p for p in refs.rglob("*.lock") if p.is_file())
    for lock in found:
        lock.unlink(missing_ok=True)
    return found
