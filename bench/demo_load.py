"""The README's first command on a quiet and on a busy machine: `autoresearch demo`, timed.

    python bench/demo_load.py                       # 3 runs quiet, 3 with 2 CPU hogs
    python bench/demo_load.py --runs 1 --hogs 2     # one run under load only
    python bench/demo_load.py --shared-cache        # reuse ~/.cache/autoresearch/gpt

Each run is what `make demo` does once .venv exists (`autoresearch demo`: 5 experiments, 20 s
budget), in a fresh temporary directory and, by default, with a fresh data cache, as on a fresh
clone; "hogs" are that many `while True: pass` processes started before the demo and killed
after it, competing for the cores. Prints, per run, the exit code, the wall time, the load
average when it started, the baseline's measured startup + evaluation (its wall time beyond the
budget), the timeout the session sized from it, and the statuses; then the median wall time for
each load. A run that times out or pauses is a failure of the promise: the exit code says so.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType


@dataclass
class DemoRun:
    hogs: int
    exit_code: int
    wall_s: float
    load_at_start: float
    baseline_overhead_s: float | None
    timeout_event: str
    statuses: list[str]


@contextlib.contextmanager
def cpu_hogs(count: int) -> Iterator[None]:
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def read_ledger(ledger: Path, budget: float) -> tuple[float | None, str, list[str]]:
    if not ledger.exists():
        return None, "", []
    with contextlib.closing(sqlite3.connect(ledger)) as conn:
        statuses = [s for (s,) in conn.execute("SELECT status FROM experiments ORDER BY seq")]
        durations = [d for (d,) in conn.execute(
            "SELECT runs.duration_s FROM runs JOIN experiments ON experiments.id = "
            "runs.experiment_id WHERE experiments.kind = 'baseline' AND runs.status = 'ok'")]
        events = [m for (m,) in conn.execute(
            "SELECT message FROM events WHERE kind = 'timeout' ORDER BY id")]
    overhead = max(durations) - budget if durations else None
    return overhead, events[-1] if events else "", statuses


def one_run(hogs: int, iterations: int, budget: float, fresh_cache: bool) -> DemoRun:
    with tempfile.TemporaryDirectory(prefix="ar-demo-bench-") as tmp:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AUTORESEARCH_", "ANTHROPIC_", "OPENAI_", "OPENROUTER_"))}
        if fresh_cache:
            env["AUTORESEARCH_CACHE"] = str(Path(tmp) / "cache")
        demo = Path(tmp) / "demo"
        load = os.getloadavg()[0]
        with cpu_hogs(hogs):
            start = time.monotonic()
            proc = subprocess.Popen(
                [sys.executable, "-m", "autoresearch", "demo", "--dir", str(demo),
                 "--iterations", str(iterations), "--budget", f"{budget:g}"],
                cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True)
            try:
                output, _ = proc.communicate()
            except BaseException:
                proc.terminate()  # the demo stops its own runs on SIGTERM
                proc.wait(120)
                raise
            wall = time.monotonic() - start
        overhead, event, statuses = read_ledger(demo / ".autoresearch" / "ledger.db", budget)
        if proc.returncode != 0:
            print(output[-3000:], file=sys.stderr)
        shutil.rmtree(demo, ignore_errors=True)
        return DemoRun(hogs, proc.returncode, wall, load, overhead, event, statuses)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _stop)  # stopping the benchmark stops the demo it runs
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per load (default 3)")
    parser.add_argument("--hogs", type=int, nargs="+", default=[0, 2],
                        help="CPU-bound competitors for each set of runs (default: 0 2)")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--budget", type=float, default=20.0)
    parser.add_argument("--shared-cache", action="store_true",
                        help="reuse the data cache instead of building a fresh one per run")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; autoresearch demo --iterations {args.iterations} "
          f"--budget {args.budget:g}; {'shared' if args.shared_cache else 'fresh'} data cache")
    by_load: dict[int, list[DemoRun]] = {}
    for hogs in args.hogs:
        for i in range(args.runs):
            run = one_run(hogs, args.iterations, args.budget, not args.shared_cache)
            by_load.setdefault(hogs, []).append(run)
            overhead = "—" if run.baseline_overhead_s is None else f"{run.baseline_overhead_s:.1f}"
            print(f"hogs={hogs} run {i + 1}: exit {run.exit_code}, {run.wall_s:.0f} s wall, "
                  f"load {run.load_at_start:.1f} at start, baseline startup+eval {overhead} s, "
                  f"statuses {' '.join(run.statuses)}", flush=True)
            if run.timeout_event:
                print(f"    {run.timeout_event}", flush=True)
    for hogs, runs in by_load.items():
        ok = sum(1 for r in runs if r.exit_code == 0)
        print(f"hogs={hogs}: {ok}/{len(runs)} succeeded, median wall "
              f"{statistics.median(r.wall_s for r in runs):.0f} s "
              f"(min {min(r.wall_s for r in runs):.0f}, max {max(r.wall_s for r in runs):.0f})")


if __name__ == "__main__":
    main()
