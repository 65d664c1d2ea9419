"""Runs on a Ray cluster: the remote backend of the executor seam ([run] executor = "ray").

Each run goes to a free Ray actor (`NodeRunner`) of a pool of at most as many as the cluster
holds at once, placed by Ray where a run's reservation is free ([run] ray_cpus, ray_gpus), so
the slots beyond that wait for a run to end. An actor (ray_node.py) keeps a repository and a
worktree of it on its node: a commit travels there as a bundle of what the repository lacks, is checked out and measured by the code
that measures on this machine (`LocalExecutor.run`: the budget, the timeout, the whole process
tree, the protected files fenced, the worktree sealed), and comes back as data: the Measurement,
and the run's log, written where the session keeps its logs. The scheduler, the verdict and the
ledger are the ones a local session uses: a new backend, not a new loop.

- A stop (Ctrl-C, a limit) reaches the remote run as it reaches a local one: recorded interrupted.
- Nothing outlives the orchestrator: the actors belong to its Ray job, which Ray ends when the
  driver exits, whatever killed it; a dying actor's own watchdog (lifeline.py) kills its run.
  The git that makes a bundle here (`git bundle create`, its `pack-objects`) dies with the
  orchestrator too (gitops/runner.py), and the ref and the bundle a kill leaves go when the
  next session opens (`gitops.remove_stale_bundles`).
- A lost node or actor is not the candidate's doing: the run is made again on a new actor, up to
  `RETRIES` times, then the session stops (exit 3) with nothing recorded lost; the same command
  resumes it.
- A head that stops answering for HEAD_LOST_S stops the session the same way (exit 3), before
  Ray's own 60-s abort of the driver would end it without a word.
- Runs that wait for room other jobs hold on the cluster say so once, at the start; a new actor
  that waits for room later (the pool grows as slots first run, a lost actor is replaced) says
  so once it has waited ROOM_NOTICE_S, with what is free.
- Every node that runs must be one environment (fingerprint.py): a run measured on a different
  one stops the session, as a machine that changed does.
- [verify] share and inputs name paths on this machine: the nodes must see them at the same
  paths (a shared filesystem).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import shutil
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from autoresearch import gitops
from autoresearch.config import Config
from autoresearch.errors import PreconditionError
from autoresearch.evaluation_inputs import EvaluationInputs
from autoresearch.executor import Measurement, RunRequest
from autoresearch.gitops.history import rev_list
from autoresearch.process_tree import owned_prefix
from autoresearch.ray_cluster import (
    HEAD_LOST_S,
    Capacity,
    HeadWatch,
    capacity,
    connect,
    gcs_endpoint,
    shown_endpoint,
)
from autoresearch.ray_node import REBUILT, STOPPED, NodeRunner
from autoresearch.resources import thread_env
from autoresearch.shared_paths import SharedData
from autoresearch.slots import Resources
from autoresearch.stop_signals import SessionStopped

CHECK_ROLE = "check"  # the role of `check`'s dry runs (checkup.py): no session to resume
RETRIES = 2  # a run whose actor died is made again on a new actor this many times
POLL_S = 0.2  # how often a run in flight looks at the session's stop event
STOP_GRACE_S = 10.0  # a run not ended this long after a stop goes with its actor
CLEANUP_S = 3.0  # how long an actor that leaves the pool has to remove its clone
BUNDLE_EXCLUDES = 256  # the clone's most recent commits named to keep a bundle small
ROOM_NOTICE_S = 20.0  # a run whose new actor is not placed by then says why nothing moves

log = logging.getLogger(__name__)


@dataclass
class _Remote:
    """The driver's handle on one actor, and the commits its clone holds."""

    actor: Any
    heads: list[str] = field(default_factory=list)  # what was shipped, most recent last
    placed: Any = None  # until Ray has placed the actor: the answer that says it has


class _Stopped(Exception):
    """The session stopped while a run waited for an actor."""


class RayExecutor:
    """Runs on a Ray cluster, up to `workers` at once, each run on an actor of a pool.

    The pool holds at most as many actors as the cluster has room for (an actor keeps its
    reservation while it lives, so one per slot beyond that would wait forever); a run takes
    whichever actor is free. `stop` (the session's stop event) ends every run at once,
    recorded as interrupted.
    """

    def __init__(self, config: Config, stop: threading.Event | None = None, workers: int = 1,
                 shared: SharedData | None = None, inputs: EvaluationInputs | None = None
                 ) -> None:
        self.config = config
        self.stop = stop
        self.workers = max(1, workers)
        self.shared = shared or SharedData()
        self.inputs = inputs or EvaluationInputs()
        self.address = config.run.ray_address
        self.ray, self._joined = connect(self.address)
        try:
            self.capacity = capacity(self.ray.nodes(), config.run.ray_cpus, config.run.ray_gpus)
            if self.capacity.runs_at_once == 0:
                raise PreconditionError(
                    f"no node of the Ray cluster at {self.address!r} has room for a run "
                    f"({config.run.ray_cpus:g} CPUs and {config.run.ray_gpus:g} GPUs each; the "
                    f"cluster: {self.capacity.describe()})",
                    where="[run] ray_cpus and ray_gpus in autoresearch.toml",
                    fix="ask for what one node has, or add a node that has it")
            # Room taken by other jobs now (another session's actors): runs wait for it, for as
            # long as those jobs hold it, and the user must know why nothing moves.
            self.free = capacity([{"Alive": True, "Resources": self.ray.available_resources()}],
                                 config.run.ray_cpus, config.run.ray_gpus)
        except BaseException:
            self._leave()
            raise
        self._actor_class = self.ray.remote(NodeRunner)
        self.head = HeadWatch(gcs_endpoint(self.ray, self.address))
        self._most = min(self.workers, self.capacity.runs_at_once)
        self._actors: list[_Remote] = []  # every live actor, busy or idle
        self._idle: queue.SimpleQueue[_Remote] = queue.SimpleQueue()
        self._lock = threading.Lock()  # the actors; bundles are made one at a time
        self._bundles: Path | None = None  # made with the first bundle (_bundle_for)
        self._pool: ThreadPoolExecutor | None = None

    # --- what the session shows ----------------------------------------------------------------

    def describe(self) -> str:
        run = self.config.run
        return (f"runs on the Ray cluster at {self._joined_at()} ({self.capacity.describe()}); each "
                f"run reserves {run.ray_cpus:g} CPU{'s' * (run.ray_cpus != 1)}"
                + (f" and {run.ray_gpus:g} GPU{'s' * (run.ray_gpus != 1)}" if run.ray_gpus
                   else "") + f", {self._threads()} thread{'s' * (self._threads() != 1)}")

    def _joined_at(self) -> str:
        """The address of the head joined (its GCS), and what found it when that was not the
        address itself: "auto" may join any cluster running here, another user's too."""
        joined = shown_endpoint(self.head.endpoint)
        if self.head.endpoint is None or joined == self.address.strip():
            return self.address
        via = " in RAY_ADDRESS" if self.address.strip() == "auto" and os.environ.get(
            "RAY_ADDRESS", "").strip() else ""
        return f'{joined}, which ray_address "{self.address}" found{via}'


    @property
    def warning(self) -> str | None:
        """What the session should know before it starts: runs that will wait, settings that
        have no effect on a cluster."""
        said = []
        fits = self.capacity.runs_at_once
        if fits < self.workers:
            said.append(f"the Ray cluster holds {fits} run{'s' * (fits != 1)} at once, fewer "
                        f"than the {self.workers} workers: the other slots' runs wait for one to "
                        f"end. Use --workers {fits}, or add nodes.")
        run = self.config.run
        wanted = min(fits, self.workers)
        if self.free.runs_at_once < wanted:
            free = self._free_text(self.free)
            room = (f"room for {self.free.runs_at_once} of the {wanted} runs at once"
                    if self.free.runs_at_once else "no room for a run")
            said.append(f"other jobs hold the Ray cluster's resources now: {free} are free, "
                        f"{room} (each asks for {self._asks()}): runs wait for room, without limit, "
                        "until those jobs end. Ctrl-C stops the wait.")
        ignored = (["affinity = true"] if run.affinity else []) + (
            [f"gpus = {run.gpus}"] if isinstance(run.gpus, list) else [])
        if ignored:
            said.append(f"[run] {' and '.join(ignored)} apply to runs on this machine only: on "
                        "the Ray cluster, Ray places each run and gives it the GPUs ray_gpus "
                        "reserves. Remove them, or set ray_cpus and ray_gpus.")
        return " ".join(said) or None

    # --- the seam ------------------------------------------------------------------------------

    def submit(self, request: RunRequest) -> Future[Measurement]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.workers,
                                            thread_name_prefix="autoresearch-ray-run")
        return self._pool.submit(self.run, request)

    def run(self, request: RunRequest) -> Measurement:
        """Make the run on the cluster and wait for it (`check` uses this directly)."""
        lost: BaseException | None = None
        for _ in range(RETRIES + 1):
            try:
                remote = self._acquire(request.role)
            except _Stopped:
                return _interrupted(request, "stopped while it waited for room on the cluster")
            try:
                measured = self._run_on(remote, request)
            except (self.ray.exceptions.RayActorError, self.ray.exceptions.NodeDiedError,
                    self.ray.exceptions.WorkerCrashedError) as err:
                self._forget(remote)
                if getattr(err, "actor_init_failed", False):
                    raise SessionStopped(
                        "the Ray actor that makes the runs could not start on its node: "
                        f"{_last_line(err)}. Install the same autoresearch (pip install "
                        "'autoresearch[ray]') and what your verify command needs on every node, "
                        f"then {_again(request.role)}", exit_code=3) from err
                if self._stopping():
                    return _interrupted(request, "stopped while its Ray actor was lost")
                # The head going takes its node's actors with it: asked for the nodes or for a
                # new actor, Ray would wait for the head.
                if self.head.settle():
                    self._check_head(f"when the actor of the {request.role} run of "
                                     f"{request.commit[:10]} was lost", request.role)
                lost = err
                self._recount(err, request.role)
                continue
            except BaseException:
                self._forget(remote)  # its run may go on: the actor goes, and the run with it
                raise
            self._idle.put(remote)
            return measured
        raise SessionStopped(
            f"the Ray cluster lost the {request.role} run of {request.commit[:10]} "
            f"{RETRIES + 1} times (its actor or node died: {_first_line(lost)}); nothing recorded "
            f"is lost. Check the cluster (`ray status`), then {_again(request.role)}",
            exit_code=3)

    def node_python(self, timeout_s: float = 10.0) -> str | None:
        """What `{python}` is on the cluster's nodes, as an actor of the pool says (None when
        none answers): `check`'s hint for a failed import names it (verify_targets)."""
        with self._lock:
            actors = list(self._actors)
        for remote in actors:
            with contextlib.suppress(Exception):
                return str(self.ray.get(remote.actor.interpreter.remote(), timeout=timeout_s))
        return None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        with self._lock:
            actors, self._actors = self._actors, []
        for remote in actors:
            self._dismiss(remote, 10)
        if self._bundles is not None:
            shutil.rmtree(self._bundles, ignore_errors=True)
        self._leave()

    # --- the parts -----------------------------------------------------------------------------

    def _run_on(self, remote: _Remote, request: RunRequest) -> Measurement:
        bundle, heads = self._bundle_for(remote, request)
        # Data only: a mapping proxy does not pickle; the node's share of threads is its own.
        # The timeout as the session has it now: the actor's copy of the config was taken when
        # it was made, and the session re-sizes the timeout from what the baseline's runs took.
        there = replace(request, protected=dict(request.protected),
                        timeout_s=request.timeout_s or self.config.verify.timeout,
                        resources=Resources(env_vars=tuple(thread_env(self._threads()).items()),
                                            slot=request.resources.slot))
        ref = remote.actor.run.remote(there, bundle)
        stopping_since: float | None = None
        notice_at = time.monotonic() + ROOM_NOTICE_S
        while not self.ray.wait([ref], timeout=POLL_S)[0]:
            self._check_head(f"while the {request.role} run of {request.commit[:10]} was in "
                             "flight", request.role)
            if remote.placed is not None and time.monotonic() > notice_at:
                notice_at = float("inf")  # once a run
                self._say_if_waiting_for_room(remote, request)
            if self._stopping():
                remote.actor.stop.remote(request.run_id)  # again each poll: idempotent
                stopping_since = stopping_since or time.monotonic()
                if time.monotonic() - stopping_since > STOP_GRACE_S:
                    # Not started (no room yet), or not answering: the actor goes, its run too
                    # (its clone first, if it still answers).
                    self._dismiss(remote, CLEANUP_S)
        try:
            kind, payload, log = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as err:
            raise SessionStopped(
                f"the {request.role} run of {request.commit[:10]} failed on the Ray cluster's "
                f"node {_node_of(err)}: {_last_line(err)}. The node needs what this machine has "
                "to run it (git, autoresearch and what the verify command uses); fix it there, "
                f"then {_again(request.role)}", exit_code=3) from err
        if kind == STOPPED:
            remote.heads += heads
            reason, code = payload
            raise SessionStopped(reason, exit_code=code)
        # A run that damaged the node's repository left it made again, empty: the next commit
        # goes in full.
        remote.heads = [] if kind == REBUILT else remote.heads + heads
        request.log_path.parent.mkdir(parents=True, exist_ok=True)
        request.log_path.write_bytes(log)
        measured: Measurement = replace(payload, log_path=request.log_path)
        return measured

    def _bundle_for(self, remote: _Remote, request: RunRequest) -> tuple[bytes | None, list[str]]:
        """The bundle of what the actor's clone lacks to check out the commit (None: nothing)."""
        known = remote.heads[-BUNDLE_EXCLUDES:]
        repo = request.worktree
        if known and not rev_list(repo, ["--max-count=1", request.commit,
                                         *(f"^{k}" for k in known)]):
            return None, []  # the commit is one the clone has, or an ancestor of one
        with self._lock:
            if self._bundles is None:
                # Named after this process: what a kill leaves is removed when the next session
                # opens (gitops.remove_stale_bundles).
                self._bundles = Path(tempfile.mkdtemp(
                    prefix=owned_prefix(gitops.BUNDLES_PREFIX), dir=tempfile.gettempdir()))
            path = gitops.create_bundle(repo, request.commit,
                                        self._bundles / f"{request.commit}.bundle", known)
            try:
                return path.read_bytes(), [request.commit]
            finally:
                path.unlink(missing_ok=True)

    def _acquire(self, role: str) -> _Remote:
        """A free actor: an idle one, a new one while the pool has room, else the first that
        comes free (raises _Stopped if the session stops first)."""
        with self._lock:
            with contextlib.suppress(queue.Empty):
                return self._idle.get_nowait()
            if len(self._actors) < self._most:
                run = self.config.run
                remote = _Remote(self._actor_class.options(
                    num_cpus=run.ray_cpus, num_gpus=run.ray_gpus, max_concurrency=2,
                ).remote(self.config, self.shared, self.inputs))
                remote.placed = remote.actor.__ray_ready__.remote()
                self._actors.append(remote)
                return remote
        while True:
            with contextlib.suppress(queue.Empty):
                return self._idle.get(timeout=POLL_S)
            if self._stopping():
                raise _Stopped
            self._check_head("while a run waited for an actor", role)

    def _say_if_waiting_for_room(self, remote: _Remote, request: RunRequest) -> None:
        """Other jobs took the room after the session started (the start says what it finds
        then): without a word, a run whose actor waits for it looks like a hung session."""
        if self.ray.wait([remote.placed], timeout=0)[0]:
            remote.placed = None
            return
        run = self.config.run
        free = capacity([{"Alive": True, "Resources": self.ray.available_resources()}],
                        run.ray_cpus, run.ray_gpus)
        if free.runs_at_once:
            return  # room there is: the actor is starting, slowly (a busy node)
        log.warning(
            "the %s run of %s has waited %g s for room on the Ray cluster: other jobs hold its "
            "resources now (%s are free; each run asks for %s). It waits, without limit, until "
            "they end; Ctrl-C stops the wait.", request.role, request.commit[:10], ROOM_NOTICE_S,
            self._free_text(free), self._asks())

    def _recount(self, lost: BaseException, role: str) -> None:
        """After a lost actor, what the live nodes hold now: an actor made for a run that no
        live node has room for would wait for ever (a lost GPU node, a full cluster)."""
        run = self.config.run
        now = capacity(self.ray.nodes(), run.ray_cpus, run.ray_gpus)
        with self._lock:
            self._most = min(self.workers, now.runs_at_once)
        if now.runs_at_once == 0:
            raise SessionStopped(
                f"the Ray cluster lost a node or actor ({_first_line(lost)}), and no live node "
                f"has room for a run now ({run.ray_cpus:g} CPUs and {run.ray_gpus:g} GPUs each; "
                f"the cluster: {now.describe()}); nothing recorded is lost. Bring the node back "
                f"(`ray status`), then {_again(role)}", exit_code=3)

    def _check_head(self, when: str, role: str) -> None:
        if self.head.check():
            raise SessionStopped(
                f"the Ray cluster's head at {shown_endpoint(self.head.endpoint)} stopped answering "
                f"{when} (nothing for {HEAD_LOST_S:g} s)" + (
                    "" if role == CHECK_ROLE else "; nothing recorded is lost, and what was in "
                    "flight is made again on resume") + ". Start the head again (`ray start "
                "--head`, and `ray start --address` on the other nodes), then "
                f"{_again(role)} (with --ray-address if its address changed)", exit_code=3)

    def _forget(self, remote: _Remote) -> None:
        """An actor leaves the pool (lost, or its run cut short; a new one may take its place),
        its clone removed if it still answers."""
        with self._lock:
            if remote in self._actors:
                self._actors.remove(remote)
        self._dismiss(remote, CLEANUP_S)

    def _dismiss(self, remote: _Remote, cleanup_s: float) -> None:
        """Remove the actor's clone (it may be running: the cleanup stops that run first), then
        kill it. A lost actor has nothing to remove nor to kill; with the head lost, Ray would
        wait for it to answer, so nothing is asked."""
        if self.head.lost:
            return
        with contextlib.suppress(Exception):
            self.ray.get(remote.actor.cleanup.remote(), timeout=cleanup_s)
        with contextlib.suppress(Exception):
            self.ray.kill(remote.actor)

    def _asks(self) -> str:
        run = self.config.run
        return f"{run.ray_cpus:g} CPU{'s' * (run.ray_cpus != 1)}" + (
            f" and {run.ray_gpus:g} GPU{'s' * (run.ray_gpus != 1)}" if run.ray_gpus else "")

    def _free_text(self, free: Capacity) -> str:
        return f"{free.cpus:g} CPUs" + (f" and {free.gpus:g} GPUs" if self.config.run.ray_gpus
                                        else "")

    def _threads(self) -> int:
        """Each run's thread count on its node: [run] threads when set, else its CPUs."""
        threads = self.config.run.threads
        return threads if isinstance(threads, int) else max(1, int(self.config.run.ray_cpus))

    def _stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def _leave(self) -> None:
        if self._joined and self.ray.is_initialized():
            self.ray.shutdown()


def _again(role: str) -> str:
    """What to do once the cluster is mended: `check` has no session to resume."""
    return "run `autoresearch check` again" if role == CHECK_ROLE else (
        "run the same command to resume")


def _interrupted(request: RunRequest, reason: str) -> Measurement:
    request.log_path.parent.mkdir(parents=True, exist_ok=True)
    request.log_path.write_text(reason + "\n", encoding="utf-8")
    return Measurement(commit=request.commit, role=request.role, status="interrupted",
                       reason=reason, objective=None, metrics={}, exit_code=None, duration_s=0.0,
                       started_at=time.time(), log_path=request.log_path, seed=request.seed)


def _first_line(err: BaseException | None) -> str:
    text = _plain(str(err)).strip().splitlines()
    return text[0] if text else type(err).__name__


def _last_line(err: BaseException) -> str:
    """The error a remote traceback ends with (`ModuleNotFoundError: No module named ...`)."""
    lines = [line.strip() for line in _plain(str(err)).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def _node_of(err: BaseException) -> str:
    """The address of the node a remote error happened on, as Ray's header names it."""
    found = re.search(r"\bip=([^\s,)]+)", _plain(str(err)))
    return found.group(1) if found else "(unknown)"


def _plain(text: str) -> str:
    """Without the terminal colour codes Ray puts in its errors' header."""
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
