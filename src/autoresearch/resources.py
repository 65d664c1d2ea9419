"""What each run is given of the machine: its thread count (`[run] threads`).

Numerical libraries start one thread per core they see, whatever else runs. On a shared
machine that is oversubscription: on 2 cores with one other busy job, a PyTorch target with
2 threads ran 3.4× slower than with 1 (`bench/threads.py` measures it). So the thread count is a
resource the harness sets for every run, through the environment variables the common runtimes
read at start-up (OpenMP, and through it PyTorch; MKL, OpenBLAS, BLIS, Accelerate, numexpr,
Rayon).

`threads = "auto"` (the default) gives a run the cores that are not busy when the session
starts: the usable cores (the affinity mask, bounded by a cgroup CPU quota) minus the cores
other programs kept busy over a short sample, rounded, at least 1. On an idle machine that is
every core. An `OMP_NUM_THREADS` in the environment the session was started from is the user's
own choice and is kept instead (a script that runs two sessions side by side sets it so that
the first, started on an idle machine, does not take every core from the second); one that is
no count `[run] threads` accepts ("abc", 0, "4,2", 999999) is ignored, and the plan says so. The
figure is measured once per session and pinned (a resumed session keeps it): runs with
different thread counts are not comparable under a fixed time budget. The user's own
`[verify] env` wins over all of it (its thread variables are held to the same range when the
config is loaded), and the plan names each one it sets.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from autoresearch.config import RunConfig
from autoresearch.config_sections import MAX_THREADS, THREAD_VARIABLES, thread_count_problem

__all__ = ["THREAD_VARIABLES", "ThreadPlan", "pinned_threads", "plan_threads", "run_env",
           "session_threads", "thread_env"]

SAMPLE_SECONDS = 0.3


def thread_env(threads: int) -> dict[str, str]:
    """The environment that limits a run to `threads` threads."""
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    return dict.fromkeys(THREAD_VARIABLES, str(threads))


@dataclass(frozen=True)
class ThreadPlan:
    threads: int
    why: str  # how the figure was chosen, shown by `check` and at `run` start
    # Each run's own count (a number in [run] threads, OMP_NUM_THREADS in the environment or in
    # [verify] env), not free cores that parallel slots share.
    per_run: bool = False
    # What the user should know beside the figure: an OMP_NUM_THREADS in the environment that
    # "auto" ignored, and why (not pinned: a resume keeps the figure whatever the shell says).
    note: str = ""

    def describe(self) -> str:
        """"each run gets 1 thread (auto: 2 cores, 1.0 busy with other work)"."""
        return (f"each run gets {self.threads} thread{'s' * (self.threads != 1)} ({self.why})"
                + (f"; {self.note}" if self.note else ""))


def run_env(plan: ThreadPlan, user_env: Mapping[str, str]) -> dict[str, str]:
    """A run's extra environment: the thread plan, overridden by the user's `[verify] env` (a
    user's OMP_NUM_THREADS sets the other libraries' counts too, unless they are set as well)."""
    return {**thread_env(effective(plan, user_env).threads), **user_env}


def effective(plan: ThreadPlan, user_env: Mapping[str, str]) -> ThreadPlan:
    """The plan as the run will see it: the user's OMP_NUM_THREADS, when set, is what counts,
    and each other thread variable `[verify] env` sets apart is named (MKL_NUM_THREADS = 1
    beside OMP's 4 is a run of 1 thread in MKL's code)."""
    own = _omp_threads(user_env)
    if own is not None:
        plan = ThreadPlan(own, "OMP_NUM_THREADS from [verify] env", per_run=True)
    apart = [f"{name}={user_env[name]}" for name in THREAD_VARIABLES[1:]
             if name in user_env and user_env[name].strip() != str(plan.threads)]
    if apart:
        plan = replace(plan, why=f"{plan.why}; {', '.join(apart)} from [verify] env")
    return plan


def _omp_threads(env: Mapping[str, str]) -> int | None:
    """The thread count OMP_NUM_THREADS sets in `env` (None when unset or not a count)."""
    own = env.get("OMP_NUM_THREADS", "").strip()
    return int(own) if own and thread_count_problem(own) is None else None


def _ignored_omp(env: Mapping[str, str]) -> str:
    """A note when the environment's OMP_NUM_THREADS is no count a run can be given (else ""):
    "auto" then measures the free cores, and says why it did."""
    own = env.get("OMP_NUM_THREADS", "").strip()
    problem = thread_count_problem(own) if own else None
    if problem is None:
        return ""
    return (f"the environment's OMP_NUM_THREADS={json.dumps(env['OMP_NUM_THREADS'])} is "
            f"ignored, {problem}: a thread count is a whole number from 1 to {MAX_THREADS}, "
            "as in [run] threads")


def usable_cores() -> int:
    """Cores this process may run on: the affinity mask, bounded by a cgroup CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    quota = _cgroup_quota()
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def _cgroup_quota() -> float | None:
    """Cores allowed by a cgroup v2 `cpu.max` quota (containers: docker --cpus), else None."""
    try:
        fields = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        return int(fields[0]) / int(fields[1]) if fields and fields[0] != "max" else None
    except (OSError, ValueError, IndexError, ZeroDivisionError):
        return None


def busy_cores(sample_s: float = SAMPLE_SECONDS) -> float:
    """Cores kept busy by other programs, averaged over a short sample."""
    import psutil

    share = float(psutil.cpu_percent(interval=sample_s)) / 100.0  # of every core of the machine
    return share * float(psutil.cpu_count() or 1)


def plan_threads(setting: RunConfig | int | str,
                 environ: Mapping[str, str] | None = None) -> ThreadPlan:
    """Resolve `[run] threads`: a number as given; "auto" from OMP_NUM_THREADS when the
    environment (`environ`, by default this process's) sets it, else from the cores free now."""
    value = setting.threads if isinstance(setting, RunConfig) else setting
    if isinstance(value, int):
        return ThreadPlan(value, "[run] threads", per_run=True)
    env = os.environ if environ is None else environ
    own = _omp_threads(env)
    if own is not None:
        return ThreadPlan(own, f"auto: OMP_NUM_THREADS={own} in the environment", per_run=True)
    cores = usable_cores()
    busy = min(busy_cores(), float(cores))
    free = max(1, min(cores, math.floor(cores - busy + 0.5)))
    if free == cores:
        why = f"auto: all {cores} core{'s' * (cores != 1)}, idle"
    else:
        why = f"auto: {cores} cores, {busy:.1f} busy with other work"
    return ThreadPlan(free, why, note=_ignored_omp(env))


def session_threads(setting: RunConfig, pin: Path | None, *, readonly: bool = False
                    ) -> ThreadPlan:
    """The session's plan. With `pin` (a file in the session's directory), "auto" is measured
    once and reused on every resume, so every run of a session has the same thread count.
    `readonly` (`check`): a figure not pinned yet is measured, and pinned by nobody."""
    if pin is None or setting.threads != "auto":
        return plan_threads(setting)
    pinned = pinned_threads(pin)
    if pinned is not None:
        return pinned
    plan = plan_threads(setting)
    if not readonly:
        pin.parent.mkdir(parents=True, exist_ok=True)
        pin.write_text(json.dumps({"threads": plan.threads, "why": plan.why,
                                   "per_run": plan.per_run}) + "\n",
                       encoding="utf-8")
    return plan


def pinned_threads(pin: Path) -> ThreadPlan | None:
    """The "auto" figure pinned in `pin` when the session started (None: none, or unreadable,
    to be measured again); reads only."""
    try:
        saved = json.loads(pin.read_text(encoding="utf-8"))
        if int(saved["threads"]) >= 1:
            return ThreadPlan(int(saved["threads"]), f"{saved['why']}; measured when the "
                              "session started", per_run=bool(saved.get("per_run", False)))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None
