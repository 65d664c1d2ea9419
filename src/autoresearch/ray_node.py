"""The node side of runs on a Ray cluster: the actor (`NodeRunner`) that makes a session's runs on
one node, and the repository it keeps there (ray_executor.py is the driver's side).

What holds on this machine holds on the node:
- Orphans come back to the actor and die after the run that left them (`strays`, as `cli.main`
  sets it up here): a daemon a run starts (its environment cleared, its session left, forked
  twice) would otherwise outlive the run and rewrite later runs' worktrees. What is left when
  the actor is cleaned up goes then; when it is killed, its watchdog (lifeline.py) kills what it
  saw below the actor.
- The runs' worktree holds only a `.git` link, as a session's slot does: the repository is a
  bare one beside it, and the link is fenced and put back like every git file
  (`control_files_fence`). A run that damages the repository anyway (through the link) is a
  crash of its candidate; the actor makes the repository again, empty, and the driver sends the
  next commit in full (`REBUILT`).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from autoresearch import gitops, strays
from autoresearch.config import Config
from autoresearch.errors import AutoresearchError
from autoresearch.evaluation_inputs import EvaluationInputs
from autoresearch.executor import LocalExecutor, Measurement, RunRequest
from autoresearch.fingerprint import comparable_key, environment_fingerprint
from autoresearch.gitops.runner import GitError, git, run_git
from autoresearch.process_tree import owned_prefix, owner_gone
from autoresearch.shared_paths import SharedData
from autoresearch.stop_signals import SessionStopped

HOME_PREFIX = "autoresearch-ray-"
STRAY_GRACE_S = 2.0  # SIGTERM to SIGKILL for what runs left, when the actor is cleaned up
# What `NodeRunner.run` answers: a measurement; a measurement after which the node's repository
# was made again (the driver's record of what the clone holds is void); a stop of the session.
MEASURED, REBUILT, STOPPED = "measured", "rebuilt", "stopped"


class NodeRunner:
    """Runs on a Ray node: a bare repository there, fed by bundles, and a worktree of it where
    the runs happen. RayExecutor makes it an actor; its methods run on the node, one run at a
    time (and a stop or the cleanup beside it)."""

    def __init__(self, config: Config, shared: SharedData, inputs: EvaluationInputs) -> None:
        # This process's orphans come back to it (Linux), and each run's sweep (runner.py) then
        # kills what the run left, as on the session's machine, where `cli.main` does this.
        strays.adopt_orphans()
        base = Path(tempfile.gettempdir())
        sweep_homes(base)  # of actors killed before they could remove theirs
        self.home = Path(tempfile.mkdtemp(prefix=owned_prefix(HOME_PREFIX), dir=base))
        # Outside the runs' tree: a run reaches only the worktree's `.git` link by a relative
        # path, and that link is put back after each run.
        self.repo = self.home / "repo.git"
        self.clone = self.home / "clone"
        self.config = config
        self.shared = shared
        self.inputs = inputs
        self._lock = threading.Lock()
        self._stops: dict[str, threading.Event] = {}
        self._stopped: set[str] = set()  # stops that came before their run

    def stop(self, run_id: str) -> None:
        with self._lock:
            self._stopped.add(run_id)
            event = self._stops.get(run_id)
        if event is not None:
            event.set()

    def run(self, request: RunRequest, bundle: bytes | None) -> tuple[str, Any, bytes]:
        """(MEASURED or REBUILT, Measurement, log) or (STOPPED, (reason, exit code), b"")."""
        stop = threading.Event()
        with self._lock:
            self._stops[request.run_id] = stop
            if request.run_id in self._stopped:
                stop.set()
        there = replace(request, worktree=self.clone,
                        log_path=self.home / "logs" / request.log_path.name)
        try:
            if bundle is not None:
                self._receive(bundle)
            self._ensure_worktree(request.commit)
            try:
                measured: Measurement | None = LocalExecutor(
                    self.config, stop, shared=self.shared, inputs=self.inputs).run(there)
                damage = self._damage(request.commit)
            except (GitError, OSError) as err:
                # The run's own end (a checkout putting the commit back, the seal) failed: the
                # run's doing if the repository is damaged now, else not a candidate's matter.
                damage = self._damage(request.commit)
                if damage is None:
                    raise
                measured, damage = None, f"{damage}; {_first_line(err)}"
            log = _take(there.log_path)
            if damage is None:
                assert measured is not None
                return MEASURED, measured, log
            self._rebuild()
            return REBUILT, self._crash(there, measured, damage), log
        except SessionStopped as err:
            return STOPPED, (err.reason, err.exit_code), b""
        except AutoresearchError as err:
            return STOPPED, (err.render(), err.exit_code), b""
        finally:
            with self._lock:
                self._stops.pop(request.run_id, None)
                self._stopped.discard(request.run_id)

    def interpreter(self) -> str:
        """What `{python}` is on this node (the driver's `check` names it when an import
        fails there)."""
        return sys.executable

    def cleanup(self) -> None:
        """End what is left (runs told to stop, their strays killed), then remove the node's
        repository and worktree."""
        with self._lock:
            for event in self._stops.values():
                event.set()
        strays.sweep(STRAY_GRACE_S)
        shutil.rmtree(self.home, ignore_errors=True)

    # --- the repository ----------------------------------------------------------------------

    def _receive(self, bundle: bytes) -> None:
        if not (self.repo / "HEAD").is_file():
            self.repo.mkdir(parents=True, exist_ok=True)
            git(self.repo, "init", "--quiet", "--bare")
        path = self.home / "incoming.bundle"
        path.write_bytes(bundle)
        try:
            heads = [line.split()[0] for line in git(
                self.repo, "bundle", "list-heads", str(path)).splitlines() if line.strip()]
            # Kept by refs of their own: git's housekeeping must not take what the driver
            # counts on the node having.
            git(self.repo, "fetch", "--quiet", str(path),
                *(f"{sha}:refs/autoresearch/received/{sha}" for sha in heads))
        finally:
            path.unlink(missing_ok=True)

    def _ensure_worktree(self, commit: str) -> None:
        """The worktree, linked to the repository (made on the first run, and again if its link
        is not the repository's: nothing in it can be trusted then)."""
        if gitops.links_to(self.repo, self.clone):
            return
        shutil.rmtree(self.clone, ignore_errors=True)
        gitops.ensure_detached_worktree(self.repo, self.clone, commit)

    def _damage(self, commit: str) -> str | None:
        """What is wrong with the repository after a run (None: nothing): the worktree must
        still be linked to it, at the commit, with every tree of the commit readable."""
        if not gitops.links_to(self.repo, self.clone):
            return "the worktree's `.git` no longer links to the node's repository"
        head = git(self.clone, "rev-parse", "--verify", "--quiet", "HEAD", check=False)
        if head != commit:
            return f"HEAD is {head[:12] or 'unreadable'}, not the commit measured"
        listed = run_git(self.clone, "ls-tree", "-r", "--name-only", "-z", commit)
        if listed.returncode != 0:
            return "git cannot read the commit: " + (
                listed.stderr.decode("utf-8", "replace").strip().splitlines() or ["?"])[0]
        return None

    def _rebuild(self) -> None:
        """An empty repository and no worktree: made again from the next bundle, in full."""
        shutil.rmtree(self.clone, ignore_errors=True)
        shutil.rmtree(self.repo, ignore_errors=True)

    def _crash(self, there: RunRequest, measured: Measurement | None, damage: str) -> Measurement:
        reason = (f"the run damaged the node's git repository ({damage}); the run does not "
                  "count, and the node's repository was made again. A verify command must not "
                  "write the repository's git files")
        if measured is not None and measured.status == "interrupted":
            return measured  # a stop ended it: what it did is not judged (as on this machine)
        if measured is not None:
            return replace(measured, status="crash", reason=reason, objective=None)
        fingerprint = environment_fingerprint(command=self.config.verify.expanded_command(),
                                              verify_env=self.config.verify.env)
        return Measurement(commit=there.commit, role=there.role, status="crash", reason=reason,
                           objective=None, metrics={}, exit_code=None, duration_s=0.0,
                           started_at=time.time(), log_path=there.log_path, fingerprint=fingerprint,
                           fingerprint_key=comparable_key(fingerprint), seed=there.seed)


def sweep_homes(base: Path, prefix: str = HOME_PREFIX) -> None:
    """Remove the actors' directories (their clones) whose owner process is gone (each is named
    after its owner: pid, start time). A session's bundles: gitops.remove_stale_bundles."""
    for home in base.glob(f"{prefix}*"):
        if owner_gone(home.name, prefix):
            shutil.rmtree(home, ignore_errors=True)


def _take(path: Path) -> bytes:
    """A run's log, read and removed (the driver writes it where the session keeps logs)."""
    try:
        log = path.read_bytes()
    except OSError:
        return b""
    path.unlink(missing_ok=True)
    return log


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
