"""Experiments per hour with N workers against one, on a CPU-bound verify command.

Each session runs the real CLI (`autoresearch run -n K --workers N`) on a throwaway repository
whose verify command does a fixed amount of single-threaded CPU work (calibrated to about
`--seconds` on one idle core here) and prints a deterministic score from a tuned knob. The
offline `tune` proposer proposes; one baseline run, no confirmation runs, no headline, so every
experiment is one run. Throughput is counted on the candidates only: experiments finished per
hour from the first candidate's start to the last one's end, read from the ledger.

Run:  python bench/parallel.py [--workers 2] [--experiments 12] [--repeat 3] [--seconds 2]
                               [--ray-address HOST:PORT]
Prints each session's rate with the load average around it, then the median ratio of N
workers to one over the repeats (sessions alternate 1, N, 1, N, ... so drift hits both).
With --ray-address every session runs its verify commands on that Ray cluster (`--executor
ray`; start one with `ray start --head --node-ip-address=127.0.0.1 --num-cpus=2` and
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 in the environment of both).
Target: ≥ 1.8× with 2 workers on 2 free cores. The machine's other load lowers it: quote the
load with the figure.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from toy_target import commit_files

WORK = textwrap.dedent(
    """
    # A fixed amount of single-threaded CPU work, then a deterministic score.
    import train
    acc = 0
    for i in range({loops}):
        acc = (acc * 31 + i) % 1000003
    print(f"score: {{(train.X - 7) ** 2 + (train.Y - 3) ** 2}}")
    print(f"work: {{acc}}")
    """
)
TRAIN = "X = 3.0  # knob: float(0, 10)\nY = 0.0  # knob: float(0, 10)\n"
CONFIG = textwrap.dedent(
    """
    scope = ["train.py"]
    protected = ["evaluate.py"]
    [verify]
    command = "{python} evaluate.py"
    budget_seconds = 30
    [metric]
    name = "score"
    direction = "minimize"
    [decision]
    repeats = 1
    policy = "classic"  # one run per experiment: throughput of the slots, not of the verdict
    confirm_runs = 0
    headline_pairs = 0
    [proposer]
    name = "tune"
    seed = 1
    """
)


def calibrate(seconds: float) -> int:
    """Loops of the work above that take `seconds` on one core of this machine, now."""
    loops = 200_000
    while True:
        started = time.process_time()
        acc = 0
        for i in range(loops):
            acc = (acc * 31 + i) % 1000003
        spent = time.process_time() - started
        if spent > 0.2:
            return int(loops * seconds / spent)
        loops *= 4


def make_repo(root: Path, loops: int) -> Path:
    return commit_files(root / "repo", {
        "train.py": TRAIN, "evaluate.py": WORK.format(loops=loops), "autoresearch.toml": CONFIG,
        ".gitignore": ".autoresearch/\n"})


def session_rate(workers: int, experiments: int, loops: int,
                 ray_address: str | None = None) -> tuple[float, float, int]:
    """Candidates per hour, the mean run time (s), and how many candidates ran."""
    with tempfile.TemporaryDirectory(prefix="ar-parallel-") as tmp:
        repo = make_repo(Path(tmp), loops)
        command = [sys.executable, "-m", "autoresearch", "run", "--repo", str(repo), "--tag", "b",
                   "-n", str(experiments + 1), "--workers", str(workers)]
        if ray_address:
            command += ["--executor", "ray", "--ray-address", ray_address]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"session failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
            spans = conn.execute(
                "SELECT started_at, finished_at FROM experiments WHERE kind != 'baseline'"
                " AND status != 'rejected'").fetchall()
            runs = [r[0] for r in conn.execute(
                "SELECT r.duration_s FROM runs r JOIN experiments e ON e.id = r.experiment_id"
                " WHERE e.kind != 'baseline'")]
        start = min(s for s, _ in spans)
        end = max(f for _, f in spans)
        return len(spans) / ((end - start) / 3600.0), statistics.fmean(runs), len(spans)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--experiments", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0, help="CPU work per run, seconds")
    ap.add_argument("--ray-address", default=None, help="run on this Ray cluster")
    args = ap.parse_args()
    loops = calibrate(args.seconds)
    where = f"on the Ray cluster at {args.ray_address}" if args.ray_address else "locally"
    print(f"runs {where}; {os.cpu_count()} CPUs; one run = {loops:,} loops (~{args.seconds:g} s on one core, "
          f"calibrated at load {os.getloadavg()[0]:.2f})")
    ratios = []
    for n in range(args.repeat):
        rates = {}
        for workers in (1, args.workers):
            before = os.getloadavg()[0]
            rate, run_s, count = session_rate(workers, args.experiments, loops,
                                              args.ray_address)
            rates[workers] = rate
            print(f"repeat {n + 1}, {workers} worker(s): {rate:7.0f} experiments/hour "
                  f"({count} candidates, mean run {run_s:.2f} s; load {before:.2f} → "
                  f"{os.getloadavg()[0]:.2f})")
        ratios.append(rates[args.workers] / rates[1])
        print(f"  ratio {args.workers}:1 = {ratios[-1]:.2f}")
    print(f"median ratio of {args.workers} workers to 1 over {args.repeat} repeats: "
          f"{statistics.median(ratios):.2f} (target ≥ 1.8 with 2 workers on 2 free cores)")


if __name__ == "__main__":
    main()
