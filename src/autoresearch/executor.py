"""Where candidates run. One seam, so a worker pool or a cluster can replace the inline executor.

An executor measures one commit once: it makes a worktree hold exactly that commit, runs the verify
command through the runner (budget, timeout, whole-tree kill, bounded log), parses the metrics and
classifies the run. It never decides anything and never writes the ledger.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from autoresearch import gitops
from autoresearch.config import Config
from autoresearch.fingerprint import comparable_key, environment_fingerprint
from autoresearch.metrics import parse_metrics
from autoresearch.runner import RunSpec, log_tail, run_command

RUN_STATUSES = ("ok", "crash", "timeout", "interrupted")


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

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class Executor(Protocol):
    """Runs the verify command on a commit and reports what happened."""

    def measure(self, commit: str, *, role: str, log_path: Path, run_id: str) -> Measurement: ...

    def log_tail(self, path: Path, max_bytes: int = 8192) -> str: ...


def run_id_prefix(repo_key: str, tag: str) -> str:
    """Every process of a session's runs carries an id starting with this (to find leftovers)."""
    return f"ar-{repo_key}-{tag}-"


def new_run_id(repo_key: str, tag: str) -> str:
    return run_id_prefix(repo_key, tag) + uuid.uuid4().hex[:12]


class InlineExecutor:
    """Runs in one worktree, in this process, one measurement at a time."""

    def __init__(self, config: Config, worktree: Path, stop: threading.Event | None = None) -> None:
        self.config = config
        self.worktree = worktree
        self.stop = stop

    def measure(self, commit: str, *, role: str, log_path: Path, run_id: str) -> Measurement:
        if gitops.read_head(self.worktree) != commit:
            gitops.checkout(self.worktree, commit)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        verify = self.config.verify
        spec = RunSpec(
            command=verify.expanded_command(),
            cwd=self.worktree,
            log_path=log_path,
            timeout_s=verify.timeout,
            budget_s=verify.budget_seconds,
            env=dict(verify.env),
            run_id=run_id,
            max_log_bytes=int(verify.max_log_mb * 1024 * 1024),
        )
        fingerprint = environment_fingerprint()
        started = time.time()
        outcome = run_command(spec, self.stop)
        status, reason, objective, metrics = classify(self.config, outcome.exit_code,
                                                      outcome.timed_out, outcome.interrupted,
                                                      log_path)
        return Measurement(
            commit=commit, role=role, status=status, reason=reason, objective=objective,
            metrics=metrics, exit_code=outcome.exit_code, duration_s=outcome.duration_s,
            started_at=started, log_path=log_path, fingerprint=fingerprint,
            fingerprint_key=comparable_key(fingerprint),
        )

    def log_tail(self, path: Path, max_bytes: int = 8192) -> str:
        return log_tail(path, max_bytes)


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
