"""`check` with several workers: the verify command run in every slot at once, as `run --workers N`
runs it, so that a command that collides with itself is found before the session, not after it;
and the check's temporary worktrees, which a killed check cannot remove (the next one does).

Runs of one command at once collide on whatever they share outside their worktrees: a fixed port
(the second cannot bind it), a lock file, a scratch or output path, a GPU they all take. Alone the
command passes; together one of them fails, and in a session that shows up as crashes blamed on
candidates. The dry run is made once alone first (so a plain failure is told apart), then, only
when that passed, once per slot at the same time, each in its own worktree with its slot's share
and its AUTORESEARCH_SLOT. A failure only together is a problem `check` reports, with the fix.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from autoresearch import gitops, shared_paths
from autoresearch.config import Config
from autoresearch.executor import Measurement, RunRequest, make_executor
from autoresearch.process_tree import owned_prefix, owner_gone
from autoresearch.runner import log_tail
from autoresearch.slots import SLOT_ENV, Resources
from autoresearch.state import keep_in_state, path_for_user


def run_together(root: Path, config: Config, shares: Sequence[Resources], alone: Measurement,
                 console: Console) -> list[str]:
    """Run the verify command at HEAD in len(shares) worktrees at once; the problems found."""
    n = len(shares)
    # Numbered as a session's slots are (SlotPool): AUTORESEARCH_SLOT 1…N.
    shares = [replace(share, slot=i + 1) for i, share in enumerate(shares)]
    shared = shared_paths.collect(root, config)  # the single dry run has checked it already
    head = gitops.rev_parse(root, "HEAD")
    console.print(f"… running it in {n} slots at once, as `run --workers {n}` does (a command "
                  "that shares a port, a lock or a path between its runs fails here)")
    with check_tempdir() as tmp:
        worktrees = [Path(tmp) / f"slot-{i + 1}" for i in range(n)]
        stop = threading.Event()
        executor = make_executor(config, stop=stop, workers=n, shared=shared)
        made: list[Path] = []
        try:
            for worktree in worktrees:
                gitops.ensure_detached_worktree(root, worktree, head)
                made.append(worktree)
                shared.link(worktree)
            futures = [executor.submit(RunRequest(
                commit=head, worktree=worktree, role="check",
                log_path=Path(tmp) / f"{worktree.name}.log",
                run_id=f"ar-check-{Path(tmp).name}-{i + 1}", seed=i, resources=share))
                for i, (worktree, share) in enumerate(zip(worktrees, shares, strict=True))]
            try:
                done = [f.result() for f in futures]
            except BaseException:
                stop.set()  # Ctrl-C: every run ends now, none is left behind
                raise
            finally:
                executor.close()
            return _verdict(root, config.metric.name, done, shares, alone, console)
        finally:
            for worktree in made:
                gitops.remove_worktree(root, worktree)


def _verdict(root: Path, metric: str, done: Sequence[Measurement], shares: Sequence[Resources],
             alone: Measurement, console: Console) -> list[str]:
    n = len(done)
    failed = [(share.slot, m) for share, m in zip(shares, done, strict=True) if m.status != "ok"]
    if not failed:
        slowest = max(m.duration_s for m in done)
        # The objective alone and together: runs that share the machine's memory bandwidth or a
        # time budget can measure worse together, which is what a parallel session compares.
        values = ", ".join(_number(m.objective) for m in done)
        console.print(f"[green]✓[/] {n} runs at once all passed, the slowest in {slowest:.1f} s "
                      f"(alone: {alone.duration_s:.1f} s); {escape(metric)} "
                      f"{_number(alone.objective)} alone, {values} at once")
        return []
    which = "; ".join(f"slot-{slot} {m.status}: {m.reason}" for slot, m in failed)
    console.print(f"[red]✗[/] alone the verify command passed, but with {n} runs at once "
                  f"{len(failed)} failed: {escape(which)}")
    slot, first = failed[0]
    if first.log_path.exists():
        console.print(f"    slot-{slot}'s output ends:")
        console.print(escape(log_tail(first.log_path, 1200)), style="dim")
        console.print("    the whole output: "
                      f"{path_for_user(keep_in_state(root, first.log_path, 'check-slot.log'), root)}")
    console.print(
        "[yellow]→[/] its runs share something outside their worktrees: a fixed port, a lock "
        "file, a scratch or output path. Give each run its own, derived from "
        f"{SLOT_ENV} (1…{n}, set in every run's environment; e.g. port 8000 + "
        f"${SLOT_ENV}), or run with fewer workers (\\[run] workers, run --workers)")
    return [f"the verify command fails when {n} runs of it run at once ({which}); "
            f"give each run its own port or path from {SLOT_ENV}, or use fewer workers"]


# --- the check's temporary worktrees -----------------------------------------------------------

_PREFIX = "autoresearch-check-"


@contextlib.contextmanager
def check_tempdir() -> Iterator[str]:
    """A temporary directory for the check's worktrees, named after this process, so that a
    later check can tell those of a check that died without cleaning up (kill -9, a closed
    terminal: git keeps a worktree registered until it is removed) and sweep them."""
    with tempfile.TemporaryDirectory(prefix=owned_prefix(_PREFIX)) as tmp:
        yield tmp


def sweep_stale_worktrees(root: Path) -> int:
    """Remove the registered worktrees of checks whose process is gone; how many."""
    removed = 0
    tmp = Path(tempfile.gettempdir()).resolve()
    for path in gitops.worktree_paths(root):
        holder = path.parent
        if holder.parent.resolve() != tmp or not owner_gone(holder.name, _PREFIX):
            continue
        gitops.remove_worktree(root, path)
        shutil.rmtree(holder, ignore_errors=True)
        removed += 1
    return removed


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.6g}"
