"""Worktree slots: the places where candidates are proposed, committed and (locally) run.

A session has `workers` slots, one trial in each at a time. With one worker the slot is the
session worktree `.autoresearch/worktrees/<tag>` (as sessions always had). With several,
`.autoresearch/worktrees/<tag>/` is a plain directory holding one worktree per slot
(`slot-1`, `slot-2`, ...). Slots never nest: a worktree inside another would show up there as an
untracked directory (`?? slot-2/`), and every agent proposal in the outer one would be refused.
So when a session changes its number of workers the other layout's worktrees are removed first
(they hold nothing but the incumbent's files and what runs left beside them).

Each slot has its share of the machine (`Resources`): CPU threads, optionally the CPUs it is
pinned to, and a GPU when there are several.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from autoresearch import gitops
from autoresearch.config import RunConfig
from autoresearch.resources import ThreadPlan, thread_env
from autoresearch.shared_paths import SharedData
from autoresearch.state import SessionLock, StatePaths, path_for_user

SLOT_ENV = "AUTORESEARCH_SLOT"


@dataclass(frozen=True)
class Resources:
    """What one slot's runs may use; exported to the run's environment by the executor."""

    cpus: tuple[int, ...] = ()  # pinned to these CPUs (empty: not pinned)
    gpu: str | None = None  # CUDA_VISIBLE_DEVICES for the slot's runs (None: not set)
    env_vars: tuple[tuple[str, str], ...] = field(default=())  # e.g. thread counts
    # The slot's number (1…N), as AUTORESEARCH_SLOT: a command that needs a port, a scratch
    # path or a lock of its own when several slots run it at once derives it from this.
    slot: int = 1

    def env(self) -> dict[str, str]:
        env = {**dict(self.env_vars), SLOT_ENV: str(self.slot)}
        if self.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.gpu
        return env

    def describe(self) -> str:
        parts = [f"{v} thread{'s' * (v != '1')}" for k, v in self.env_vars
                 if k == "OMP_NUM_THREADS"]
        if self.cpus:
            parts.append("cpus " + ",".join(map(str, self.cpus)))
        if self.gpu is not None:
            parts.append(f"gpu {self.gpu}")
        return ", ".join(parts) or "shares the machine"


@dataclass(frozen=True)
class Slot:
    """One worktree leased to one trial at a time; `name` is recorded as the trial's worker."""

    index: int
    name: str
    worktree: Path
    resources: Resources = field(default_factory=Resources)


def plan_resources(run: RunConfig, workers: int,
                   threads: ThreadPlan | None = None) -> list[Resources]:
    """Each slot's share: its thread count (`threads` is the session's plan: "auto" cores are
    divided among the slots, a number set in [run] threads is each run's), its CPUs when
    `affinity` is on, a GPU of its own when there are several."""
    per_slot = slot_threads(run, workers, threads)
    env = tuple(thread_env(per_slot).items()) if per_slot else ()
    cpus = _cpu_shares(workers) if run.affinity else [()] * workers
    gpus = _visible_gpus() if run.gpus == "auto" else list(run.gpus)
    if run.gpus == "auto" and (len(gpus) < 2 or workers < 2):
        gpus = []  # one GPU, or one worker: nothing to share out, CUDA_VISIBLE_DEVICES left as is
    return [Resources(cpus=cpus[i], gpu=gpus[i % len(gpus)] if gpus else None, env_vars=env)
            for i in range(workers)]


def contention(workers: int, shares: Sequence[Resources], cores: int) -> list[str]:
    """A warning for each way the slots' runs must take turns on the machine: more workers
    than cores, more threads than the CPUs a slot is pinned to, slots on one GPU. Their runs
    then slow each other down, and a metric measured under a time budget (steps trained in
    60 s) gets worse with the load: throughput does not grow, the noise does."""
    found = (_workers_over_cores(workers, shares, cores), _threads_over_pinned_cpus(shares),
             _shared_gpus(workers, shares))
    return [warning for warning in found if warning]


def _workers_over_cores(workers: int, shares: Sequence[Resources], cores: int) -> str | None:
    """More workers than usable cores, and not every slot has a GPU to run on."""
    if workers <= cores or (shares and all(r.gpu is not None for r in shares)):
        return None
    return (f"{workers} workers share {cores} core{'s' * (cores != 1)}: their runs will take "
            "turns on the CPUs, and a metric measured under a time budget gets worse with the "
            "load; more workers than cores pays only when runs wait on something else (a GPU "
            f"each, the network). Use --workers {cores} (or [run] workers) for CPU-bound runs")


def _threads_over_pinned_cpus(shares: Sequence[Resources]) -> str | None:
    """A slot pinned to fewer CPUs ([run] affinity) than its runs have threads: the threads
    take turns on those CPUs, never spreading to the idle ones (a 2-thread PyTorch run on one
    busy core ran 3.4x slower than with 1 thread: resources.py)."""
    for i, share in enumerate(shares):
        threads = int(dict(share.env_vars).get("OMP_NUM_THREADS", "0"))
        if share.cpus and threads > len(share.cpus):
            pinned = len(share.cpus)
            return (f"each run is given {threads} threads but slot-{i + 1}'s runs are pinned "
                    f"to {pinned} CPU{'s' * (pinned != 1)} ([run] affinity = true): the "
                    "threads take turns on them, which slows every run and makes a metric "
                    f"measured under a time budget worse and noisier. Set [run] threads = "
                    f"{pinned} (the CPUs a slot is pinned to), fewer workers, or affinity = "
                    "false")
    return None


def _shared_gpus(workers: int, shares: Sequence[Resources]) -> str | None:
    """Slots given the same GPU (more workers than the GPUs handed out): their runs take turns
    on it and share its memory, while each looks as if it had a GPU of its own."""
    slots_of: dict[str, list[str]] = {}
    for i, share in enumerate(shares):
        if share.gpu is not None:
            slots_of.setdefault(share.gpu, []).append(f"slot-{i + 1}")
    shared = [f"{', '.join(names[:-1])} and {names[-1]} share GPU {gpu}"
              for gpu, names in slots_of.items() if len(names) > 1]
    if not shared:
        return None
    gpus = len(slots_of)
    return (f"{'; '.join(shared)} ({workers} workers, {gpus} GPU{'s' * (gpus != 1)} to hand "
            "out): their runs take turns on it and share its memory, so a metric measured "
            "under a time budget gets worse with the load, or a run runs out of memory. Give "
            f"each worker a GPU of its own in [run] gpus, or use --workers {gpus}")


def unknown_gpus(run: RunConfig) -> str | None:
    """A warning when `[run] gpus` names GPUs this machine does not show: each slot's runs get
    CUDA_VISIBLE_DEVICES set to an id that hides every GPU, and then run on the CPU (a budgeted
    metric quietly much worse) or fail. Known ids: the indexes and UUIDs `nvidia-smi -L` lists
    (MIG ids are not checked)."""
    if run.gpus == "auto" or not run.gpus:
        return None
    listed = _listed_gpus()
    if listed is None:
        return (f"[run] gpus = {json.dumps(list(run.gpus))}, but this machine shows no GPU (nvidia-smi is missing "
                "or lists none): each slot's runs get CUDA_VISIBLE_DEVICES set to a GPU they "
                "will not find. Remove [run] gpus (or set gpus = []) on a machine without "
                "NVIDIA GPUs")
    unknown = [g for g in run.gpus if g not in listed and not g.startswith("MIG-")]
    if not unknown:
        return None
    indexes = sorted((g for g in listed if g.isdigit()), key=int)
    return (f"[run] gpus names GPU {', '.join(unknown)}, which nvidia-smi does not list (it "
            f"lists {', '.join(indexes)}): the runs given {'it' if len(unknown) == 1 else 'them'}"
            " will find no GPU. Use ids nvidia-smi -L shows, or gpus = \"auto\"")


def _listed_gpus() -> set[str] | None:
    """The ids `nvidia-smi -L` gives (each GPU's index and UUID); None when it lists none."""
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10,
                                check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    ids: set[str] = set()
    for line in listed.splitlines():  # "GPU 0: NVIDIA A100 (UUID: GPU-5e1c...)"
        head, _, rest = line.partition(":")
        if head.startswith("GPU ") and head[4:].strip().isdigit():
            ids.add(head[4:].strip())
            if "UUID: " in rest:
                ids.add(rest.split("UUID: ", 1)[1].rstrip(")").strip())
    return ids or None


def per_run_plan(run: RunConfig, workers: int, plan: ThreadPlan) -> ThreadPlan:
    """The session's thread plan as each slot's run gets it (shown at the start of `run`)."""
    per_slot = slot_threads(run, workers, plan)
    if per_slot is None or per_slot == plan.threads:
        return plan
    return ThreadPlan(per_slot, f"{plan.why}, shared by {workers} workers", note=plan.note)


def slot_threads(run: RunConfig, workers: int, threads: ThreadPlan | None) -> int | None:
    """Threads each run of a slot gets: the free cores ("auto") shared by the slots, else the
    count set for every run ([run] threads, or OMP_NUM_THREADS in the environment)."""
    if threads is None:
        return None
    if threads.per_run or run.threads != "auto":
        return threads.threads
    return max(1, threads.threads // workers)


def _cpu_shares(workers: int) -> list[tuple[int, ...]]:
    """The CPUs this process may use, cut into `workers` equal consecutive shares (shared round
    robin when there are more workers than CPUs)."""
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not allowed:
        return [()] * workers
    size = max(1, len(allowed) // workers)
    return [tuple(allowed[(i * size + j) % len(allowed)] for j in range(size))
            for i in range(workers)]


def _visible_gpus() -> list[str]:
    """GPU ids the runs can see: CUDA_VISIBLE_DEVICES when set, else those nvidia-smi lists."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip()]
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10,
                                check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(listed.splitlines()) if line.startswith("GPU ")]


def slot_paths(paths: StatePaths, workers: int) -> list[Path]:
    if workers == 1:
        return [paths.worktree]
    return [paths.worktree / f"slot-{i}" for i in range(1, workers + 1)]


class Slots:
    """The session's slots: created on open, each made to hold a given commit on demand."""

    def __init__(self, root: Path, paths: StatePaths, workers: int,
                 resources: Sequence[Resources] = (), shared: SharedData | None = None) -> None:
        if workers < 1:
            raise ValueError("a session needs at least one worker")
        self.root = root
        self.paths = paths
        # [verify] share: the checkout's ignored data, linked into every slot after each reset.
        self.shared = shared or SharedData()
        shares = list(resources) or [Resources()] * workers
        self.all = [Slot(i, f"slot-{i + 1}", path, replace(shares[i % len(shares)], slot=i + 1))
                    for i, path in enumerate(slot_paths(paths, workers))]

    def prepare(self, tip: str) -> None:
        """Make every slot exist and hold exactly `tip` (on open, after any recovery)."""
        outer = self.paths.worktree
        if len(self.all) == 1:
            # Back to one worker: the parallel layout's worktrees go (the tag dir becomes one).
            if outer.is_dir() and not (outer / ".git").exists():
                for child in sorted(outer.iterdir()):
                    if (child / ".git").exists():
                        gitops.remove_worktree(self.root, child)
                shutil.rmtree(outer, ignore_errors=True)
        elif (outer / ".git").exists():
            gitops.remove_worktree(self.root, outer)  # it would contain the slots
            shutil.rmtree(outer, ignore_errors=True)
        elif outer.is_dir():
            # Fewer workers than last time: the slots beyond them go (each held a checkout, and
            # one an interrupted candidate's commit, until finalize).
            wanted = {slot.worktree.name for slot in self.all}
            for child in sorted(outer.iterdir()):
                if child.name not in wanted and (child / ".git").exists():
                    gitops.remove_worktree(self.root, child)
        for slot in self.all:
            gitops.ensure_detached_worktree(self.root, slot.worktree, tip)
            self.shared.link(slot.worktree)

    def reset(self, slot: Slot, commit: str) -> None:
        """Make the slot exactly `commit`: tracked files restored, untracked ones removed (the
        shared data linked again)."""
        # Checked out, or made again if its `.git` was pointed elsewhere (gitops.links_to).
        gitops.ensure_detached_worktree(self.root, slot.worktree, commit)
        self.shared.link(slot.worktree)

    def holding(self, slot: Slot, commit: str) -> None:
        """Make sure the slot holds `commit`, as a worktree of this repository (a no-op when it
        does: a few file reads)."""
        if (gitops.read_head(slot.worktree) != commit
                or not gitops.links_to(self.root, slot.worktree)):
            self.reset(slot, commit)


def remove_finished_slots(repo: Path, tag: str, held: SessionLock | None = None) -> str | None:
    """Remove the finished session's worktree slots (one, or slot-1 … slot-N), or say why not.

    A slot holds nothing of its own between experiments (each reset restores the incumbent and
    removes untracked files; logs live under `.autoresearch/sessions/`), but N checkouts of a
    large repository are N times its size on disk, left behind once the session is finalized.
    A later `run --tag TAG` makes them again. A session whose process still runs keeps them.
    `held`: the session's lock when the caller holds it (`finalize --verify`): the session then
    runs nowhere, though a probe of the lock file sees that flock taken like any other holder's.
    Returns the line to show, or None when there was nothing to remove."""
    paths = StatePaths(repo, tag)
    outer = paths.worktree
    if not outer.is_dir():
        return None
    # Held only if still on the file at the path: otherwise another process may hold that one.
    pid = None if held is not None and held.held() else SessionLock(paths.lock).live_holder()
    if pid is not None:
        return (f"session {tag} is running (process {pid}): its worktree slots under "
                f"{path_for_user(outer, repo)} stay")
    slots = [outer] if (outer / ".git").exists() else sorted(
        child for child in outer.iterdir() if (child / ".git").exists())
    for slot in slots:
        gitops.remove_worktree(repo, slot)
    shutil.rmtree(outer, ignore_errors=True)
    return (f"removed the session's {len(slots)} worktree slot(s) under "
            f"{path_for_user(outer, repo)} (a later `autoresearch run --tag {tag}` makes them again)")
