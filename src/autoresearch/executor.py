"""Where candidates run: one seam, so a worker pool or a cluster can replace the inline executor.

An executor owns the places candidates run in. The session asks it for a `Slot` (a worktree
leased to one experiment at a time): the loop applies and commits the candidate in the slot's
worktree, and the executor makes that worktree hold a given commit (`reset`), runs the verify
command on it (`measure`) and runs command guards in it (`run_guard`). It never decides
anything and never writes the ledger.

The inline executor has one slot, the session worktree `.autoresearch/worktrees/<tag>`, and runs
everything in this process, one measurement at a time. A pool executor would hand each concurrent
candidate its own worktree under `.autoresearch/worktrees/<tag>/…` and lease them from several
threads; the ledger already allocates experiment numbers atomically for that (see
`Ledger.create_experiment`).

Slots must never nest: for a pool, `.autoresearch/worktrees/<tag>` is a plain directory of
worktrees, not one itself. A session that ran inline already has a worktree there; a pool given
that session must not put its slots inside it (the outer worktree would list them as untracked
files, `git status` there reports `?? w1/`, so every agent proposal would be refused).
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from autoresearch import gitops, resources, shared_paths
from autoresearch.config import Config
from autoresearch.fingerprint import comparable_key, environment_fingerprint
from autoresearch.metrics import parse_metrics
from autoresearch.runner import RunOutcome, RunSpec, log_tail, run_command

RUN_STATUSES = ("ok", "crash", "timeout", "interrupted")


@dataclass(frozen=True)
class Slot:
    """One place a candidate is applied, committed and run: a worktree leased to one experiment.

    `name` is recorded as the experiment's `worker`.
    """

    name: str
    worktree: Path


@dataclass(frozen=True)
class Measurement:
    commit: str
    role: str
    status: str  # ok | crash | timeout | interrupted
    reason: str
    objective: float | None
    metrics: dict[str, float]
    exit_code: int | None
    duration_s: float
    started_at: float
    log_path: Path
    fingerprint: dict[str, Any] = field(default_factory=dict)
    fingerprint_key: str = ""
    command_s: float = 0.0  # the command's own wall time (see RunOutcome.command_s)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class Executor(Protocol):
    """Where candidates run; every worktree the loop touches comes from `lease`."""

    def prepare(self, root: Path, tip: str) -> None:
        """Make every slot exist and hold exactly `tip` (on open, after any recovery)."""

    def lease(self) -> AbstractContextManager[Slot]:
        """A slot for one experiment, held until the context exits (blocks while none is free)."""

    def reset(self, slot: Slot, commit: str) -> None:
        """Make the slot's worktree exactly `commit`: tracked files restored, untracked removed."""

    def measure(self, commit: str, *, role: str, log_path: Path, run_id: str,
                slot: Slot | None = None) -> Measurement:
        """Run the verify command once on `commit` in `slot` (None: the executor's only slot)."""

    def run_guard(self, slot: Slot, command: str, *, log_path: Path, timeout_s: float,
                  run_id: str) -> RunOutcome:
        """Run a guard command in the slot's worktree (it holds the candidate)."""

    def log_tail(self, path: Path, max_bytes: int = 8192) -> str: ...

    def close(self) -> None:
        """Release the slots' resources (worktrees stay: they hold the session's state)."""


def run_id_prefix(repo_key: str, tag: str) -> str:
    """Every process of a session's runs carries an id starting with this (to find leftovers)."""
    return f"ar-{repo_key}-{tag}-"


def new_run_id(repo_key: str, tag: str) -> str:
    return run_id_prefix(repo_key, tag) + uuid.uuid4().hex[:12]


class InlineExecutor:
    """One slot, the given worktree, in this process, one measurement at a time."""

    def __init__(self, config: Config, worktree: Path, stop: threading.Event | None = None,
                 name: str = "inline", threads_pin: Path | None = None) -> None:
        self.config = config
        self.worktree = worktree
        self.stop = stop
        self.slot = Slot(name, worktree)
        self._free = threading.Lock()
        self._threads_pin = threads_pin  # where a session keeps its "auto" thread count
        self._threads: resources.ThreadPlan | None = None
        self._shared: shared_paths.SharedData | None = None

    @property
    def threads(self) -> resources.ThreadPlan:
        """The thread count every run gets ([run] threads; [verify] env overrides it)."""
        if self._threads is None:
            self._threads = resources.effective(
                resources.session_threads(self.config.run, self._threads_pin),
                self.config.verify.env)
        return self._threads

    def shared(self, worktree: Path) -> shared_paths.SharedData:
        """The checkout's `[verify] share` files, resolved and stamped once (see shared_paths)."""
        if self._shared is None:
            self._shared = shared_paths.for_worktree(self.config, worktree)
        return self._shared

    def prepare(self, root: Path, tip: str) -> None:
        gitops.ensure_detached_worktree(root, self.worktree, tip)
        self.shared(self.worktree).link(self.worktree)  # [verify] share: ignored data, linked in

    @contextmanager
    def _leased(self) -> Iterator[Slot]:
        with self._free:
            yield self.slot

    def lease(self) -> AbstractContextManager[Slot]:
        return self._leased()

    def reset(self, slot: Slot, commit: str) -> None:
        gitops.checkout(slot.worktree, commit)
        self.shared(slot.worktree).link(slot.worktree)  # [verify] share: re-linked after a reset

    def measure(self, commit: str, *, role: str, log_path: Path, run_id: str,
                slot: Slot | None = None) -> Measurement:
        worktree = (slot or self.slot).worktree
        if gitops.read_head(worktree) != commit:
            gitops.checkout(worktree, commit)
        # [verify] share: the links in place, the data unchanged (else the session stops, exit 3).
        self.shared(worktree).ready(worktree)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        verify = self.config.verify
        spec = RunSpec(
            command=verify.expanded_command(),
            cwd=worktree,
            log_path=log_path,
            timeout_s=verify.timeout,
            budget_s=verify.budget_seconds,
            env=resources.run_env(self.threads, verify.env),  # [run] threads, then [verify] env
            run_id=run_id,
            max_log_bytes=int(verify.max_log_mb * 1024 * 1024),
        )
        # Where the run happens is what the fingerprint describes: here, this process.
        fingerprint = environment_fingerprint()
        started = time.time()
        outcome = run_command(spec, self.stop)
        self.shared(worktree).check_unchanged()  # [verify] share: the run left the data alone
        status, reason, objective, metrics = classify(self.config, outcome.exit_code,
                                                      outcome.timed_out, outcome.interrupted,
                                                      log_path)
        return Measurement(
            commit=commit, role=role, status=status, reason=reason, objective=objective,
            metrics=metrics, exit_code=outcome.exit_code, duration_s=outcome.duration_s,
            started_at=started, log_path=log_path, fingerprint=fingerprint,
            fingerprint_key=comparable_key(fingerprint), command_s=outcome.command_s,
        )

    def run_guard(self, slot: Slot, command: str, *, log_path: Path, timeout_s: float,
                  run_id: str) -> RunOutcome:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        return run_command(RunSpec(command=command, cwd=slot.worktree, log_path=log_path,
                                   timeout_s=timeout_s, budget_s=timeout_s, run_id=run_id),
                           self.stop)

    def log_tail(self, path: Path, max_bytes: int = 8192) -> str:
        return log_tail(path, max_bytes)

    def close(self) -> None:
        """Nothing to release: the worktree is the session's and stays."""


def classify(
    config: Config, exit_code: int | None, timed_out: bool, interrupted: bool, log_path: Path
) -> tuple[str, str, float | None, dict[str, float]]:
    """Turn a finished process into (status, reason, objective, metrics)."""
    metric = config.metric
    try:
        text = log_path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        text = ""
    metrics = parse_metrics(text, metric.format, metric.patterns or None)
    wanted = set(config.recorded_metrics())
    kept = {k: v for k, v in metrics.items() if k in wanted}
    if interrupted:
        return "interrupted", "interrupted by the user", None, kept
    if timed_out:
        return "timeout", f"killed after the {config.verify.timeout:g} s timeout", None, kept
    if exit_code != 0:
        return "crash", f"exit code {exit_code}", None, kept
    value = metrics.get(metric.name)
    if value is None:
        return "crash", f"exit 0 but no {metric.name} in the output ({metric.format} format)", None, kept
    if not math.isfinite(value):
        return "crash", f"{metric.name} is {value} (not finite)", None, kept
    return "ok", "", value, kept
