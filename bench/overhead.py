"""Harness overhead per experiment: everything except the verify command and the proposer.

A session of N experiments (default 200) on a small throwaway git repo, with a trivial verify
command (`echo score: 1`) and an in-process proposer that rewrites one line. Each experiment is
measured from its start to the next experiment's start (the last one: to the loop's return), so
everything the harness does for it counts: proposing context, guardrails, commit, the run's
process control, parsing, the decision, the ledger writes, results.tsv, the display, refs and the
worktree reset. From that interval we subtract only

  - the proposer's own time: every call into it (propose and observe), timed inside the proposer;
  - the verify command's own wall time: the runner's `command_s` (spawn to exit) of each run,
    collected through the executor seam.

With `--workers N` the session keeps N experiments in flight (the scheduler's parallel case).
The runs then overlap the harness's own work, so the command's time is not subtracted: with a
verify command this cheap the scheduler is the bottleneck, a new experiment starts whenever it
has finished one, and the start-to-start interval minus the proposer's time is the scheduler's
own work per experiment (everything above, done on its one thread).

Run:  python bench/overhead.py [--experiments 200] [--repeat 5] [--workers 4]
Prints p50 / p95 / mean per session and, with --repeat, the median of each over the sessions,
with the load average (the figures move with other load on the machine). Target: p50 <= 50 ms;
with workers, within 2x of the serial p50.
"""

from __future__ import annotations

import argparse
import gc
import os
import shlex
import statistics
import sys
import tempfile
import time
from concurrent.futures import Future
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rich.console import Console  # noqa: E402
from toy_target import commit_files  # noqa: E402

from autoresearch import scheduler  # noqa: E402
from autoresearch.config import Config, load_config  # noqa: E402
from autoresearch.display import Display  # noqa: E402
from autoresearch.executor import LocalExecutor, Measurement, RunRequest  # noqa: E402
from autoresearch.proposers.base import (  # noqa: E402
    ExperimentOutcome,
    Proposal,
    ProposalContext,
    Proposer,
)
from autoresearch.session import Session  # noqa: E402

COMMAND = "echo score: 1"


class CountingProposer(Proposer):
    """Rewrites one line; records how long each call into it took, per experiment."""

    name = "counting"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.i = 0
        self.spent_s: dict[str, float] = {}
        self._current = ""

    def propose(self, ctx: ProposalContext) -> Proposal:
        t0 = time.perf_counter()
        self.i += 1
        self._current = ctx.experiment_id
        proposal = Proposal(hypothesis=f"X = {self.i}", edits={"target.py": f"X = {self.i}\n"})
        self._spend(ctx.experiment_id, time.perf_counter() - t0)
        return proposal

    def observe(self, outcome: ExperimentOutcome) -> None:
        t0 = time.perf_counter()
        super().observe(outcome)
        self._spend(outcome.summary.id, time.perf_counter() - t0)

    def _spend(self, exp_id: str, seconds: float) -> None:
        self.spent_s[exp_id] = self.spent_s.get(exp_id, 0.0) + seconds


class TimedExecutor:
    """The local executor, recording each run's own command time (the runner's command_s)."""

    def __init__(self, inner: LocalExecutor) -> None:
        self.inner = inner
        self.command_s: dict[str, float] = {}  # log path -> seconds

    def submit(self, request: RunRequest) -> Future[Measurement]:
        future = self.inner.submit(request)
        future.add_done_callback(lambda f: self._note(f.result()))
        return future

    def _note(self, m: Measurement) -> None:
        self.command_s[str(m.log_path)] = m.command_s

    def close(self) -> None:
        self.inner.close()


def make_repo(root: Path) -> Path:
    files = {"target.py": "X = 0\n"}
    for i in range(20):  # a small repo, not an empty one
        files[f"module_{i}.py"] = f"VALUE = {i}\n" * 50
    files["autoresearch.toml"] = (
        'scope = ["target.py"]\n[verify]\ncommand = ' + shlex.quote(COMMAND).replace("'", '"')
        + '\nbudget_seconds = 5\n[metric]\nname = "score"\ndirection = "minimize"\n'
        # One run per experiment (the classic rule, no confirmations): the harness's own work,
        # not the verdict's extra runs, is what this measures.
        "[decision]\nrepeats = 1\npolicy = \"classic\"\nconfirm_runs = 0\n"
    )
    return commit_files(root / "repo", files)


def one_session(experiments: int, workers: int = 1
                ) -> tuple[list[float], list[float], set[str]]:
    """Overheads (ms) of every experiment after the baseline, the command times, the statuses."""
    with tempfile.TemporaryDirectory(prefix="ar-overhead-") as tmp:
        repo = make_repo(Path(tmp))
        config = load_config(repo / "autoresearch.toml")
        proposer = CountingProposer(config)
        display = Display(Console(quiet=True))
        session = Session(repo, config, "bench", display, proposer=proposer, workers=workers)
        executor = TimedExecutor(LocalExecutor(config, session.stop_event, workers))
        session.executor = executor
        session.open()
        gc.freeze()  # as the CLI does once the session is loaded
        try:
            scheduler.run(session, scheduler.Limits(iterations=experiments + 1))
            ended = time.time()
        finally:
            session.close()
        exps = sorted(session.history.experiments[1:], key=lambda e: e.started_at)
        starts = [e.started_at for e in exps] + [ended]
        overheads, commands = [], []
        for i, exp in enumerate(exps):
            command = sum(executor.command_s.get(r.log_path or "", 0.0)
                          for r in session.history.runs.get(exp.id, []))
            interval = starts[i + 1] - starts[i]
            overlapped = command if workers == 1 else 0.0  # in parallel, runs overlap the rest
            overheads.append((interval - proposer.spent_s.get(exp.id, 0.0) - overlapped) * 1e3)
            commands.append(command * 1e3)
        return overheads, commands, {e.status for e in exps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--experiments", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=1, help="sessions to run (median reported)")
    ap.add_argument("--workers", type=int, default=1, help="experiments in flight at once")
    args = ap.parse_args()
    p50s, p95s = [], []
    for n in range(args.repeat):
        load = os.getloadavg()
        overheads, commands, statuses = one_session(args.experiments, args.workers)
        overheads.sort()
        p50 = statistics.median(overheads)
        p95 = overheads[int(0.95 * (len(overheads) - 1))]
        p50s.append(p50)
        p95s.append(p95)
        print(f"session {n + 1}: {len(overheads)} experiments ({', '.join(sorted(statuses))}), "
              f"{args.workers} worker(s); "
              f"verify command {statistics.median(commands):.2f} ms per run (median); "
              f"load average {load[0]:.2f}")
        print(f"  harness overhead per experiment: p50 {p50:.1f} ms, p95 {p95:.1f} ms, "
              f"mean {statistics.fmean(overheads):.1f} ms")
    if args.repeat > 1:
        print(f"median of {args.repeat} sessions: p50 {statistics.median(p50s):.1f} ms, "
              f"p95 {statistics.median(p95s):.1f} ms (target p50 <= 50 ms)")


if __name__ == "__main__":
    main()
