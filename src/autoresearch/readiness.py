"""Can a session start here? The repository's state and the proposer's readiness, checked before
anything is recorded (`run`) and reported (`check`)."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Protocol, runtime_checkable

from autoresearch import gitops, shared_paths
from autoresearch.config import ALWAYS_PROTECTED, CONFIG_NAME, Config
from autoresearch.errors import ConfigError, PreconditionError
from autoresearch.gitops.status import dirty_tracked_files
from autoresearch.globs import select
from autoresearch.guardrails import is_protected, protected_among
from autoresearch.proposers.base import Proposer


def check_preconditions(root: Path, config: Config) -> list[str]:
    """Refuse a repository a session can't safely start from; returns the scope's files."""
    if gitops.current_branch(root) is None:
        raise PreconditionError(
            "HEAD is detached", where=str(root),
            fix="check out a branch first: git switch -c my-research",
        )
    if gitops.head_commit(root) is None:
        raise PreconditionError(
            "the repository has no commit yet", where=str(root),
            fix="commit your files first: git add -A && git commit -m init",
        )
    dirty = dirty_tracked_files(root)
    if dirty:
        shown = ", ".join(dirty[:5]) + (" …" if len(dirty) > 5 else "")
        raise PreconditionError(
            f"the working tree has uncommitted changes to tracked files: {shown}",
            where=str(root),
            fix="commit or stash them (git stash) so every experiment starts from a known commit",
        )
    files = select(gitops.tracked_files(root), config.scope)
    if not files:
        raise PreconditionError(
            f"the scope {config.scope} matches no committed file",
            where=f"{root / CONFIG_NAME} → scope",
            fix="fix the globs, or commit the files the proposer should edit",
        )
    # load_config refuses globs that obviously overlap; which files match both depends on the
    # repository, so this is checked here, and it is the same config error.
    overlap = protected_among(files, config.all_protected)
    if overlap:
        # The contract and the brief are protected whatever the config says: only the scope
        # can leave them out.
        always = [f for f in overlap if select([f], ALWAYS_PROTECTED)]
        listed = [f for f in overlap if f not in always]
        raise ConfigError(
            f"protected files are inside the scope: {', '.join(overlap)}",
            where=f"{root / CONFIG_NAME} → scope" + " / protected" * bool(listed),
            fix="narrow the scope so it leaves them out (a file can't be both)"
            + (f", or drop {', '.join(listed)} from protected" if listed else "")
            + (f"; {', '.join(always)} {'is' if len(always) == 1 else 'are'} always protected"
               if always else ""),
        )
    # [verify] share names untracked, ignored files that exist: refused here, before anything
    # is recorded, rather than in the first run.
    shared_paths.collect(root, config)
    return files


def protected_matching_nothing(root: Path, config: Config) -> list[str]:
    """A warning for each `protected` glob that matches no committed file: most likely a typo
    that leaves the evaluation unguarded. Not an error: a glob may name a file that does not
    exist yet (a results file, a test added later), which it then protects."""
    tracked = gitops.tracked_files(root)
    warnings = []
    for i, pattern in enumerate(config.protected):
        if any(is_protected(path, [pattern]) for path in tracked):
            continue
        near = difflib.get_close_matches(pattern, tracked, n=1, cutoff=0.6)
        warnings.append(
            f"protected {pattern!r} matches no committed file, so it protects nothing yet"
            + (f" (did you mean {near[0]!r}?)" if near else "")
            + f"\n  where: {CONFIG_NAME} → protected[{i}]\n  fix:   "
            + (f"write {near[0]!r} if that is the file to guard; " if near else
               "correct the glob if it names a committed file; ")
            + "a glob for a file not created yet protects it once it exists")
    return warnings


@runtime_checkable
class ChecksReadiness(Protocol):
    """A proposer that can tell, before the baseline runs, whether it can work (tune: knobs)."""

    def check_ready(self, worktree: Path) -> str:
        """A one-line description of what it found; raises ConfigError saying how to fix it."""
        ...


def proposer_readiness(proposer: Proposer, worktree: Path) -> str | None:
    """The proposer's readiness line, or None when it has no such check (it is always ready)."""
    if isinstance(proposer, ChecksReadiness):
        return proposer.check_ready(worktree)
    return None


def guards_unmeasured(config: Config, incumbent_metrics: dict[str, float]) -> list[str]:
    """On resume: metric guards whose metric the incumbent's runs never recorded (a guard added
    after they ran). If the command does not print it, every candidate fails that guard and each
    improvement is discarded; the baseline check cannot say, since it has already passed."""
    return [f"guards[{i}] bounds {g.metric!r}, which the incumbent's runs did not record (added "
            "since?): if the verify command does not print it, every candidate will fail this "
            "guard; `autoresearch check` runs the command and says"
            for i, g in enumerate(config.guards)
            if g.metric is not None and g.metric not in incumbent_metrics]
