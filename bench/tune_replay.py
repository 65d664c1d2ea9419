"""tune on the synthetic GPT-like target, replayed in-process: hundreds of sessions in minutes.

The real proposer (this checkout's `tune`, or tune at --before-ref) and the engine's verdict
policy (`policy_for`, as `[decision]` ships: the sequential test with control runs and
interleaved pairs, or `--policy classic`), driven by the serial scheduler's protocol of
`autoresearch.policy_sim.Ratchet` (a baseline of 3 runs, then each candidate's runs as the policy
asks for them), on bench/tune_local.py's synthetic target, without git or subprocesses. It is
what the local phase's constants were chosen with; bench/tune_local.py checks the result through
the real CLI.

--workers N keeps N proposals in flight, as a parallel session does: the proposer is asked
again before earlier proposals are decided (and told what is in flight); results come back
oldest first; a winner proposed on an older incumbent has its knob changes replayed onto the
current one and is measured again there, or is dropped when one of its knobs changed since
(the engine's rebase and re-verify).

Run:  python bench/tune_replay.py [--sessions 100] [--experiments 60] [--noise 0.008]
      [--variant after|before] [--workers 1] [--policy sequential|classic]
Prints, per block of 20 experiments, the mean and median true gain of the incumbent over the
baseline (noise-free), the mean number of keeps and the verify runs per candidate.
"""

from __future__ import annotations

import argparse
import importlib
import random
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tune_local import BEFORE_REF, BLOCK, ROOT, SYNTHETIC, template_defaults, template_knobs  # noqa: E402

from autoresearch.config import DecisionConfig, parse_config  # noqa: E402
from autoresearch.policy import policy_for  # noqa: E402
from autoresearch.policy_sim import SIGMA, Ratchet, World  # noqa: E402
from autoresearch.proposers.base import (  # noqa: E402
    ExperimentOutcome,
    ExperimentSummary,
    InFlight,
    Proposal,
    ProposalContext,
    Proposer,
)

Knobs = dict[str, Any]


@dataclass
class Flight:
    id: str
    proposal: Proposal
    parent: Knobs  # the incumbent's knobs it was proposed on


def objective() -> Callable[[Knobs], float]:
    namespace: dict[str, Any] = {}
    exec(compile(SYNTHETIC, "synthetic", "exec"), namespace)  # noqa: S102 - our own source
    fn: Callable[[Knobs], float] = namespace["true_bpb"]
    return fn


def write_knobs(path: Path, knobs: Knobs) -> None:
    path.write_text("".join(f"{name} = {value!r}\n" for name, value in knobs.items()))


def read_knobs(text: str) -> Knobs:
    import ast

    found: Knobs = {}
    for line in text.splitlines():
        name, _, value = line.partition(" = ")
        found[name] = ast.literal_eval(value)
    return found


def one_session(cls: type[Proposer], seed: int, args: argparse.Namespace,
                true_bpb: Callable[[Knobs], float]) -> tuple[list[str], list[float], list[int]]:
    """(status of each experiment, the incumbent's true value after each experiment, the verify
    runs each took)."""
    knob_specs = template_knobs()
    names = [key.split(":", 1)[1] for key in knob_specs]
    defaults = {n: read_knobs(f"x = {v}")["x"] for n, v in template_defaults(names).items()}
    config = parse_config({
        "scope": ["train.py"], "verify": {"command": "true", "budget_seconds": 5},
        "metric": {"name": "val_bpb", "direction": "minimize"}, "knobs": knob_specs,
        "proposer": {"name": "tune", "seed": seed},
    })
    tune = cls(config, {"seed": seed})
    policy = policy_for(DecisionConfig(policy=args.policy), "minimize")
    world = World(random.Random(seed * 7919 + 1))
    scale = args.noise / SIGMA  # the world's noise multiplier
    with tempfile.TemporaryDirectory(prefix="tune-replay-") as tmp:
        root = Path(tmp)
        incumbent = dict(defaults)
        write_knobs(root / "train.py", incumbent)
        true = true_bpb(incumbent)
        ratchet = Ratchet.start(world, true, repeats=3, noise=scale)
        history = [ExperimentSummary(
            id="e1", seq=1, status="keep", hypothesis="baseline",
            objective=statistics.fmean(o.value for o in ratchet.incumbent_runs), delta=None,
            reason="",
            params={f"train.py:{k}": v for k, v in incumbent.items()})]
        tune.resume([ExperimentOutcome(history[0], None)])
        statuses, trues, runs_spent = ["keep"], [true], [3]
        flying: list[Flight] = []
        asked, without_keep = 1, 0
        while len(statuses) < args.experiments:
            while len(flying) < args.workers and asked < args.experiments:
                asked += 1
                ctx = ProposalContext(
                    session_tag="replay", worktree=root, config=config, program="",
                    scope_files=["train.py"], history=list(history), baseline=history[0],
                    incumbent=None, stuck=without_keep >= 5, last_crash_log=None,
                    metric_name="val_bpb", direction="minimize", experiment_id=f"e{asked}",
                    in_flight=[InFlight(f.id, f.proposal.hypothesis, f.proposal.params)
                               for f in flying])
                proposal = tune.propose(ctx)
                if proposal is None:
                    break
                flying.append(Flight(f"e{asked}", proposal, dict(incumbent)))
            if not flying:
                break
            flight = flying.pop(0)
            edited = flight.proposal.edits["train.py"]
            assert edited is not None
            candidate: Knobs | None = read_knobs(edited)
            if flight.parent != incumbent:  # proposed on an older incumbent: rebase
                assert candidate is not None
                changed = {k for k in candidate if candidate[k] != flight.parent[k]}
                if any(flight.parent[k] != incumbent[k] for k in changed):
                    candidate = None  # a conflict: dropped
                else:
                    candidate = {**incumbent, **{k: candidate[k] for k in changed}}
            spent = 0
            if candidate is None:
                status, value, delta, params = "rejected", None, None, flight.proposal.params
            else:
                cand_true = true_bpb(candidate)
                cid = world.commit(cand_true, scale)
                step, ran, spent = ratchet.judge(policy, cid)
                status = "keep" if step.action == "keep" else "discard"
                # What the ledger shows: the candidate's mean and its measured difference.
                value, delta = statistics.fmean(o.value for o in ran), -step.improvement
                params = {f"train.py:{k}": v for k, v in candidate.items()}
                if status == "keep":
                    incumbent, true = candidate, cand_true
                    write_knobs(root / "train.py", incumbent)
            without_keep = 0 if status == "keep" else without_keep + 1
            done = ExperimentSummary(id=flight.id, seq=len(history) + 1, status=status,
                                     hypothesis=flight.proposal.hypothesis, objective=value,
                                     delta=delta, reason="", params=params)
            history.append(done)
            tune.observe(ExperimentOutcome(done, flight.proposal))
            statuses.append(status)
            trues.append(true)
            runs_spent.append(spent)
    return statuses, trues, runs_spent


def proposer_class(variant: str, ref: str, into: Path) -> type[Proposer]:
    if variant == "after":
        from autoresearch.proposers.tune import TuneProposer
        return TuneProposer
    source = subprocess.run(["git", "show", f"{ref}:src/autoresearch/proposers/tune.py"],
                            cwd=ROOT, check=True, capture_output=True, text=True).stdout
    (into / "tune_before.py").write_text(source)
    sys.path.insert(0, str(into))
    cls: type[Proposer] = importlib.import_module("tune_before").TuneProposer
    return cls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--experiments", type=int, default=60, help="per session, baseline included")
    ap.add_argument("--noise", type=float, default=0.008)
    ap.add_argument("--variant", choices=("after", "before"), default="after")
    ap.add_argument("--before-ref", default=BEFORE_REF)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--policy", choices=("sequential", "classic"), default="sequential",
                    help="the verdict policy ([decision] policy); the engine's default: sequential")
    args = ap.parse_args()
    true_bpb = objective()
    with tempfile.TemporaryDirectory(prefix="tune-before-") as tmp:
        cls = proposer_class(args.variant, args.before_ref, Path(tmp))
        sessions = [one_session(cls, seed, args, true_bpb) for seed in range(args.sessions)]
    print(f"{args.variant}: {args.sessions} sessions × {args.experiments} experiments, "
          f"σ {args.noise}, {args.workers} worker(s), {args.policy} policy")
    for end in range(BLOCK, args.experiments + 1, BLOCK):
        gains = [trues[min(end, len(trues)) - 1] - trues[0] for _, trues, _ in sessions]
        keeps = [sum(s == "keep" for s in statuses[end - BLOCK:end]) - (end == BLOCK)
                 for statuses, _, _ in sessions]
        # Verify runs per candidate judged in the block (the baseline's 3 runs are not one).
        runs = [(sum(spent[end - BLOCK:end]) - 3 * (end == BLOCK)) / (BLOCK - (end == BLOCK))
                for _, _, spent in sessions]
        print(f"  experiments ≤{end}: keeps in the block {statistics.fmean(keeps):.2f}, "
              f"true gain mean {statistics.fmean(gains):+.4f} "
              f"± {1.96 * statistics.stdev(gains) / len(gains) ** 0.5:.4f} (95 %) "
              f"(median {statistics.median(gains):+.4f}), verify runs per candidate "
              f"{statistics.fmean(runs):.2f}")


if __name__ == "__main__":
    main()
