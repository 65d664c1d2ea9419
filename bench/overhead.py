"""Harness overhead per experiment: everything except the verify command and the proposer.

A session of N experiments (default 200) on a small throwaway git repo, with a trivial verify
command (`echo score: 1`) and an in-process proposer that rewrites one line. For each experiment:

    overhead = experiment wall time − time inside propose() − command time of its runs

where the command time is the median wall time of the same command run bare with
subprocess.run (measured here, 30 times). The runner's own process control (new session,
/proc scan for escaped processes, log handling) therefore counts as harness overhead.

Run:  python bench/overhead.py [--experiments 200]
Prints p50 / p95 / mean overhead in ms (target: p50 ≤ 50 ms).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rich.console import Console  # noqa: E402

from autoresearch import loop  # noqa: E402
from autoresearch.config import load_config  # noqa: E402
from autoresearch.display import Display  # noqa: E402
from autoresearch.proposers.base import Proposal, ProposalContext, Proposer  # noqa: E402
from autoresearch.session import Session  # noqa: E402

COMMAND = "echo score: 1"


class CountingProposer(Proposer):
    name = "counting"

    def __init__(self, config: object) -> None:
        super().__init__(config)  # type: ignore[arg-type]
        self.i = 0
        self.propose_s: dict[str, float] = {}

    def propose(self, ctx: ProposalContext) -> Proposal:
        t0 = time.perf_counter()
        self.i += 1
        proposal = Proposal(hypothesis=f"X = {self.i}", edits={"target.py": f"X = {self.i}\n"})
        self.propose_s[ctx.experiment_id] = time.perf_counter() - t0
        return proposal


def bare_command_s(cwd: Path, n: int = 30) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(["/bin/sh", "-c", COMMAND], cwd=cwd, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--experiments", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ar-overhead-") as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        (repo / "target.py").write_text("X = 0\n")
        for i in range(20):  # a small repo, not an empty one
            (repo / f"module_{i}.py").write_text(f"VALUE = {i}\n" * 50)
        (repo / "autoresearch.toml").write_text(
            'scope = ["target.py"]\n[verify]\ncommand = ' + shlex.quote(COMMAND).replace("'", '"')
            + '\nbudget_seconds = 5\n[metric]\nname = "score"\ndirection = "minimize"\n'
            "[decision]\nrepeats = 1\nconfirm_runs = 0\n"
        )
        git = ["git", "-c", "user.name=b", "-c", "user.email=b@b"]
        subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
        subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
        subprocess.run([*git, "commit", "-qm", "init"], cwd=repo, check=True)
        config = load_config(repo / "autoresearch.toml")
        proposer = CountingProposer(config)
        session = Session(repo, config, "bench", Display(Console(quiet=True)),
                          proposer=proposer)
        session.open()
        try:
            loop.run(session, loop.Limits(iterations=args.experiments + 1))
        finally:
            session.close()
        bare = bare_command_s(repo)
        overheads = []
        for exp in session.history[1:]:
            runs = session.runs.get(exp.id, [])
            wall = (exp.finished_at or 0) - exp.started_at
            overheads.append((wall - proposer.propose_s.get(exp.id, 0.0) - bare * len(runs)) * 1e3)
        overheads.sort()
        p50 = statistics.median(overheads)
        p95 = overheads[int(0.95 * (len(overheads) - 1))]
        statuses = {e.status for e in session.history[1:]}
        print(f"experiments: {len(overheads)} ({', '.join(sorted(statuses))}); "
              f"bare command: {bare * 1e3:.2f} ms")
        print(f"harness overhead per experiment: p50 {p50:.1f} ms, p95 {p95:.1f} ms, "
              f"mean {statistics.fmean(overheads):.1f} ms (target p50 <= 50 ms)")


if __name__ == "__main__":
    main()
