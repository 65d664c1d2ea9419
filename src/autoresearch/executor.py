"""Where runs happen: the seam between the engine, which decides what to run, and the machine.

The engine asks for one run at a time, `submit(request) -> Future[Measurement]`, and goes on with
other work while it runs. A `RunRequest` is data: the commit to measure, where it is checked out
(the slot's worktree), its role, its seed, the slot's resources and the protected files' hashes.
A `Measurement` comes back as data: status, metrics, timings, the environment fingerprint, and
which protected files the run changed. An executor never decides anything, never writes the
ledger and never moves a ref.

`LocalExecutor` runs each request in the slot's own worktree on this machine, one thread per
slot waiting on the verify command (`runner.run_command`: budget, timeout, whole process tree
killed). A remote backend is another executor, not another loop: `ray_executor.RayExecutor`
ships the commit as a bundle (`gitops.create_bundle`, `gitops.fetch_bundle` on the other side)
to an actor on a Ray node, checks it out there and returns the same Measurement.

`{seed}` in the verify command and `AUTORESEARCH_SEED` in its environment carry the run's seed
(see `trial.run_seed`); the slot's resources become thread variables, CUDA_VISIBLE_DEVICES and an
optional CPU affinity (see `slots.Resources`).
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

from autoresearch import gitops, guardrails, worktree_seal
from autoresearch.bounded_log import dropped_from, without_marker
from autoresearch.config import CONFIG_NAME, Config
from autoresearch.errors import ConfigError
from autoresearch.evaluation_inputs import EvaluationInputs
from autoresearch.fingerprint import RUN_THREADS_FIELD, comparable_key, environment_fingerprint
from autoresearch.gitops.control_files import Watched, control_files_fence
from autoresearch.gitops.object_seal import ObjectsDamaged, ObjectSeal
from autoresearch.gitops.replace_refs import ReplaceRefs
from autoresearch.metric_discovery import required_unit
from autoresearch.metrics import parse_metrics
from autoresearch.runner import RunSpec, run_command
from autoresearch.shared_paths import SharedData
from autoresearch.slots import Resources
from autoresearch.stop_signals import SessionStopped, describe_interrupt

RUN_STATUSES = ("ok", "crash", "timeout", "interrupted")
SEED_ENV = "AUTORESEARCH_SEED"


@dataclass(frozen=True)
class RunRequest:
    """One run to make: the verify command (or a guard's command) on a commit."""

    commit: str
    worktree: Path  # where the commit is checked out: the slot that prepared it
    role: str  # candidate | incumbent | control | headline | headline-baseline | guard | check
    log_path: Path
    run_id: str
    seed: int | None = None
    resources: Resources = field(default_factory=Resources)
    # Protected file -> sha256: the run must leave them as they are (checked after it).
    protected: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    command: str | None = None  # a guard's command instead of the verify command
    timeout_s: float | None = None  # a guard's own timeout
    index: int = 0  # the run's number among its experiment's runs of this role and attempt

    @property
    def is_guard(self) -> bool:
        return self.command is not None


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
    seed: int | None = None
    tampered: tuple[str, ...] = ()  # protected files the run changed (restored since)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class Executor(Protocol):
    """Where runs happen. `submit` may be called from one thread only (the scheduler's).

    An executor a plugin provides registers under the `autoresearch.executors` entry-point
    group (as ours do: pyproject.toml) and is built as `cls(config, stop, workers, shared,
    inputs)`; `[run] executor` names it. It may say where runs happen (`describe() -> str`,
    shown at the start of `run` and in `check`) and warn (`warning: str | None`)."""

    def submit(self, request: RunRequest) -> Future[Measurement]:
        """Start the run; the future resolves to its Measurement (never raises for a failed run)."""

    def run(self, request: RunRequest) -> Measurement:
        """Make the run and wait for it (`check` and `finalize --verify` use this)."""

    def close(self) -> None:
        """Release workers; runs still going are stopped by the session's stop event first."""


EXECUTORS = "autoresearch.executors"  # the entry-point group


def elsewhere(executor: object) -> tuple[str, str | None] | None:
    """Where an executor that runs off this machine says runs happen, and its warning (None for
    runs here: this machine's threads and cores are then what `run` and `check` show)."""
    describe = getattr(executor, "describe", None)
    if isinstance(executor, LocalExecutor) or not callable(describe):
        return None
    warning = getattr(executor, "warning", None)
    return str(describe()), warning if isinstance(warning, str) else None


# Ends the tag in a run id. Tags cannot contain it (state.TAG_PATTERN, as git refs cannot), so
# one tag's prefix is never a prefix of another's: with '-', the session `exp` would take the
# runs of a live session `exp-long` for its own leftovers and kill them when it starts.
_TAG_END = ":"


def run_id_prefix(repo_key: str, tag: str) -> str:
    """Every process of a session's runs carries an id starting with this (to find leftovers):
    ``ar-<repo key>-<tag>:``."""
    return f"ar-{repo_key}-{tag}{_TAG_END}"


def worktree_lost(request: RunRequest) -> SessionStopped:
    """The session stops (exit 3) when the worktree a run uses is deleted under it: the run
    measured nothing that can be trusted, and whatever deleted it may do so again."""
    if request.role == "check":
        whose, then = "the check's worktree", "Find what deleted it, then run check again."
    else:
        whose = f"the worktree of slot {request.resources.slot}"
        then = ("The run does not count; nothing recorded is lost. Run the same command to "
                "resume: the slot is made again.")
    return SessionStopped(
        f"{whose} ({request.worktree}) was deleted while its {request.role} run went on: "
        "another program, or the verify command itself, removed it (autoresearch makes and "
        f"removes its worktrees itself). {then}", exit_code=3)


_T = TypeVar("_T")


def _stopping(step: Callable[[], _T]) -> _T:
    """`step()`, with protected objects that cannot be trusted or mended stopping the session
    (exit 3): no run measured there can be trusted."""
    try:
        return step()
    except ObjectsDamaged as exc:
        raise SessionStopped(f"{exc.what}. The run does not count; nothing recorded is lost. "
                             f"Fix: {exc.fix}", exit_code=3) from None


def new_run_id(repo_key: str, tag: str) -> str:
    return run_id_prefix(repo_key, tag) + uuid.uuid4().hex[:12]


class LocalExecutor:
    """Runs on this machine, in the slot's worktree; up to `workers` runs at once.

    `stop` (the session's stop event) ends every run at once, recorded as interrupted.
    """

    def __init__(self, config: Config, stop: threading.Event | None = None,
                 workers: int = 1, shared: SharedData | None = None,
                 inputs: EvaluationInputs | None = None) -> None:
        self.config = config
        self.stop = stop
        # [verify] share: links in place and the data unchanged before a run, unchanged after
        # (else SessionStopped, exit 3: the data the measurements depend on moved); [verify]
        # inputs, the evaluation's files outside the repository, the same way.
        self.shared = shared or SharedData()
        self.inputs = inputs or EvaluationInputs()
        self.workers = max(1, workers)
        self._pool: ThreadPoolExecutor | None = None  # started by the first submit
        self._watched: dict[Path, Watched] = {}  # git's files of each worktree (found once)
        self._watched_lock = threading.Lock()
        self._object_seal: ObjectSeal | None = None  # the protected files' git objects
        self._replace_refs: ReplaceRefs | None = None  # the replace refs a session starts with

    def submit(self, request: RunRequest) -> Future[Measurement]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.workers,
                                            thread_name_prefix="autoresearch-run")
        return self._pool.submit(self.run, request)

    def run(self, request: RunRequest) -> Measurement:
        """Make the run in the calling thread (`check` and `finalize` use this directly)."""
        if not request.worktree.is_dir():
            raise worktree_lost(request)
        objects = self._objects_of(request)  # sealed before this run's checkout reads them
        replace_refs = self._replace_refs_of(request)
        if gitops.read_head(request.worktree) != request.commit:
            gitops.checkout(request.worktree, request.commit)
        else:
            # Every run starts from the commit's files alone, not only every trial: an earlier
            # run of the same commit (or a process next door) could have left a `__pycache__`
            # whose .pyc claims to be a protected module's, and Python would run it.
            gitops.remove_untracked(request.worktree)
        request.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.shared.ready(request.worktree)  # the shared links, made again
        self.inputs.check_unchanged()
        spec = self._spec(request)
        # Where the run happens is what the fingerprint describes: here, this process, and the
        # interpreter the verify command runs (a guard's command is not the measurement).
        fingerprint = environment_fingerprint(command=self.config.verify.expanded_command(),
                                              verify_env=self.config.verify.env)
        # The threads the run got (outside the comparable key: the session compares it with its
        # own once its baseline passed, resume_contract.same_threads).
        # OMP_NUM_THREADS: every thread plan sets it (resources.thread_env).
        threads = threads_given(spec.env)
        if threads:
            fingerprint[RUN_THREADS_FIELD] = threads
        started = time.time()
        # The protected files are fenced for the run (read-only, hashed and stamped before and
        # after): a run that writes one is caught even if it puts the content back. The rest of
        # the commit is sealed the same way: what is measured must be what is committed.
        # Git's own files (its config, attributes, hooks, the worktree's link) too: a filter or
        # hook planted there would run inside the harness's next checkout. Innermost, so that
        # they are put back before anything runs git again.
        with worktree_seal.sealed_worktree(request.worktree, request.commit,
                                           skip=request.protected) as seal, \
                guardrails.protected_fence(request.worktree, request.protected) as fence, \
                control_files_fence(self._git_files(request.worktree)) as git_files:
            outcome = run_command(spec, self.stop)
        if git_files.worktree_lost or not request.worktree.is_dir():
            # Not the candidate's doing to blame on it (its files "deleted"), nor a change to
            # git's files to refuse a sibling slot's run for.
            raise worktree_lost(request)
        # Before any checkout here reads them: the protected files' objects hold what they did.
        rewritten = self._mend_objects(objects)
        changes = [*git_files.changes, *(f"the replace ref {ref} was added or moved (undone)"
                                         for ref in replace_refs.undo_changes())]
        tampered = tuple(fence.changes)
        if tampered or seal.broken:  # put the commit back before anything else runs here
            # Written again whatever git's stat cache says: a run can rewrite a file in place
            # and set its size and mtime back, which a plain forced checkout trusts.
            gitops.checkout(request.worktree, request.commit, rewrite=[*fence.paths, *seal.paths])
        self.shared.check_unchanged()
        self.inputs.check_unchanged()
        if request.is_guard:
            status = ("interrupted" if outcome.interrupted else "timeout" if outcome.timed_out
                      else "ok" if outcome.exit_code == 0 else "crash")
            reason = "" if status == "ok" else f"exit {outcome.exit_code}"
            objective, metrics = None, dict[str, float]()
        else:
            status, reason, objective, metrics = classify(
                self.config, outcome.exit_code, outcome.timed_out, outcome.interrupted,
                request.log_path, spec.timeout_s)
        if changes and status != "interrupted":
            status, objective = "crash", None
            reason = (f"the run changed git's own files: {'; '.join(changes)} (put "
                      "back); the run does not count. A verify command must not write the "
                      "repository's git files or the user's git configuration")
        elif rewritten and status != "interrupted":
            status, objective = "crash", None
            reason = (f"the run changed git's stored copy of the protected file"
                      f"{'s' if len(rewritten) > 1 else ''} {', '.join(rewritten)} (put back): "
                      "every checkout would have written another evaluation; the run does not "
                      "count. A verify command must not write the repository's git objects")
        elif seal.broken and status != "interrupted":
            # Whatever it printed measured files nobody committed: not a measurement at all.
            status, objective = "crash", None
            reason = (f"{seal.describe()} (restored); what ran was not the commit measured, so "
                      "the run does not count. A verify command must not write tracked files, "
                      "and no other process may write the worktree while it runs")
        return Measurement(
            commit=request.commit, role=request.role, status=status, reason=reason,
            objective=objective, metrics=metrics, exit_code=outcome.exit_code,
            duration_s=outcome.duration_s, started_at=started, log_path=request.log_path,
            fingerprint=fingerprint, fingerprint_key=comparable_key(fingerprint),
            command_s=outcome.command_s, seed=request.seed, tampered=tampered,
        )

    def _objects_of(self, request: RunRequest) -> ObjectSeal | None:
        """The seal of the protected files' git objects, made by the first run that has
        protected files (it stops the session if they were rewritten already)."""
        if not request.protected:
            return None
        with self._watched_lock:
            if self._object_seal is None:
                self._object_seal = _stopping(
                    lambda: ObjectSeal(request.worktree, request.commit, request.protected))
            return self._object_seal

    def _replace_refs_of(self, request: RunRequest) -> ReplaceRefs:
        with self._watched_lock:
            if self._replace_refs is None:
                self._replace_refs = ReplaceRefs(request.worktree)
            return self._replace_refs

    @staticmethod
    def _mend_objects(objects: ObjectSeal | None) -> list[str]:
        """The protected files whose git object the run rewrote, each written back; the
        session stops when one cannot be."""
        return [] if objects is None else _stopping(objects.mend)

    def _git_files(self, worktree: Path) -> Watched:
        with self._watched_lock:
            if worktree not in self._watched:
                self._watched[worktree] = Watched.find(worktree)
            return self._watched[worktree]

    def _spec(self, request: RunRequest) -> RunSpec:
        verify = self.config.verify
        env = local_run_env(request.resources, verify.env)
        command = verify.expanded_command()
        if request.is_guard:
            assert request.command is not None
            command = request.command.replace("{python}", sys.executable)
        if request.seed is not None:
            env[SEED_ENV] = str(request.seed)
            command = command.replace("{seed}", str(request.seed))
        timeout = request.timeout_s or verify.timeout
        return RunSpec(
            command=command, cwd=request.worktree, log_path=request.log_path,
            timeout_s=timeout, budget_s=timeout if request.is_guard else verify.budget_seconds,
            env=env, run_id=request.run_id, max_log_bytes=int(verify.max_log_mb * 1024 * 1024),
            cpus=request.resources.cpus,
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def threads_given(run_env: Mapping[str, str]) -> str | None:
    """The thread count a run on this machine gets, from the environment it is given on top of
    this process's. OMP_NUM_THREADS: every thread plan sets it (resources.thread_env)."""
    return {**os.environ, **run_env}.get("OMP_NUM_THREADS") or None


def local_run_env(resources: Resources, verify_env: Mapping[str, str]) -> dict[str, str]:
    """What a slot's run is given on top of this process's environment (the user's [verify]
    env wins over the slot's share)."""
    return {**resources.env(), **verify_env}


def make_executor(config: Config, stop: threading.Event | None = None, workers: int = 1,
                  shared: SharedData | None = None,
                  inputs: EvaluationInputs | None = None) -> Executor:
    """The executor `[run] executor` names: this machine's, or one registered under the
    `autoresearch.executors` entry points (`ray`: ray_executor.py, imported only then, since
    Ray is an optional dependency; or a plugin's)."""
    name = config.run.executor
    if name == "local":
        return LocalExecutor(config, stop, workers, shared, inputs)
    found = {ep.name: ep for ep in entry_points(group=EXECUTORS)}
    if name not in found:
        raise ConfigError(
            f"no executor named {name!r} is installed",
            where=f"[run] executor in {CONFIG_NAME} (or --executor)",
            fix=f"use one of {', '.join(sorted({'local', *found}))}, or install the package "
                f"that registers {name!r} under the {EXECUTORS!r} entry points")
    built: Executor = found[name].load()(config, stop, workers, shared, inputs)
    return built


def _cut_note(text: str, config: Config) -> str:
    """Why the metric may be missing from a log cut at its size cap: it was printed in the part
    dropped from the middle (empty when the log was not cut)."""
    dropped = dropped_from(text)
    if not dropped:
        return ""
    return (f"; the log was cut at [verify] max_log_mb = {config.verify.max_log_mb:g} and "
            f"{dropped} bytes from the middle of the output were dropped, so a value printed "
            "there is lost: print the metric near the end of the output, or raise max_log_mb")


def classify(
    config: Config, exit_code: int | None, timed_out: bool, interrupted: bool, log_path: Path,
    timeout_s: float | None = None,
) -> tuple[str, str, float | None, dict[str, float]]:
    """Turn a finished process into (status, reason, objective, metrics); `timeout_s` is the
    timeout the run had (the session's may have been re-sized since it started)."""
    metric = config.metric
    try:
        text = log_path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        text = ""
    metrics = parse_metrics(without_marker(text), metric.format, metric.patterns or None)
    wanted = set(config.recorded_metrics())
    kept = {k: v for k, v in metrics.items() if k in wanted}
    if interrupted:
        return "interrupted", f"interrupted by {describe_interrupt()}", None, kept
    if timed_out:
        return "timeout", f"killed after the {timeout_s or config.verify.timeout:g} s timeout", None, kept
    if exit_code != 0:
        return "crash", f"exit code {exit_code}", None, kept
    value = metrics.get(metric.name)
    if value is None:
        unit = (required_unit(metric.patterns.get(metric.name, ""))
                if metric.format == "regex" else None)
        needs = f", which its pattern reads only in {unit}" if unit else ""
        return "crash", (f"exit 0 but no {metric.name} in the output ({metric.format} format"
                         f"{needs})" + _cut_note(text, config)), None, kept
    if not math.isfinite(value):
        return "crash", f"{metric.name} is {value} (not finite)", None, kept
    return "ok", "", value, kept
