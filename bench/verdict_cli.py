"""The verdict measured through the real CLI: many `autoresearch run` sessions on a toy target
whose truth and noise are known (bench/toy_target.py), scored per position in the session.

Each session: a fresh git repository in a temp directory, the toy's knobs.py (scope), score.py
(protected verify command) and autoresearch.toml, then `autoresearch run --iterations 31` (the
baseline and 30 candidates) with the toy proposer, then `autoresearch results --json`. Every
proposal says its true effect in its hypothesis, so every verdict is scored: a keep of a `[null]`
change is a false keep, a keep of a `[real]` one is power. Runs per verdict count every verify run
of the session after the baseline (confirmation and control runs included) over the candidates.

Scenarios (--scenario, repeatable; default null and mixed):
  null       30 null changes per session
  mixed      20 % real improvements of --effect σ (default 2), the rest null
  effects    every candidate a real --effect σ improvement
  drift      null changes, the target drifting 0.05 σ per run towards better
  noisy      every third candidate only triples the noise
  zero       a deterministic target (identical repeats), candidates ±0.5 σ of seed luck
  deletion   every candidate deletes a knob worth 1 σ (a simplification that costs 1 σ)

Run:  python bench/verdict_cli.py [--sessions 40] [--scenario null] [--decision 'policy = "classic"']
(with the repository's .venv python; sessions run one at a time, under `nice` on a shared machine)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "src"))

from toy_target import make_repo  # noqa: E402

CANDIDATES = 30
MODES = {"null": "null", "mixed": "mixed", "effects": "effects", "drift": "null",
         "noisy": "noisy", "zero": "zero", "deletion": "deletion"}


def git(cwd: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


@dataclass
class Verdict:
    position: int
    kind: str  # null, real, noisy, deletion, luck
    status: str
    after_real_keep: int | None


@dataclass
class SessionResult:
    verdicts: list[Verdict]
    runs_after_baseline: int
    seconds: float
    headline: dict[str, object] = field(default_factory=dict)


def kind_of(hypothesis: str) -> str:
    tag = hypothesis[1:].split("]", 1)[0] if hypothesis.startswith("[") else ""
    return tag.split()[0] if tag else "?"


def run_session(scenario: str, seed: int, effect: float, decision: str,
                python: str) -> SessionResult:
    with tempfile.TemporaryDirectory(prefix="verdict-cli-") as tmp:
        repo, state = Path(tmp) / "repo", Path(tmp) / "state"
        state.mkdir()
        make_repo(repo, MODES[scenario], effect=effect, seed=seed, decision=decision)
        git(repo, "init", "-q", "-b", "main")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "toy target")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("ANTHROPIC_", "OPENAI_", "OPENROUTER_", "TOY_"))}
        env["PYTHONPATH"] = os.pathsep.join([str(BENCH), env.get("PYTHONPATH", "")])
        env["TOY_STATE"] = str(state)
        if scenario == "drift":
            env["TOY_DRIFT"] = "0.05"
        if scenario == "zero":
            env["TOY_DETERMINISTIC"] = "1"
        started = time.monotonic()
        run = subprocess.run([python, "-m", "autoresearch", "run", "--tag", "t", "--iterations",
                              str(CANDIDATES + 1), "--repo", str(repo)], cwd=repo, env=env,
                             capture_output=True, text=True, stdin=subprocess.DEVNULL,
                             timeout=3600)
        seconds = time.monotonic() - started
        if run.returncode != 0:
            raise RuntimeError(f"autoresearch run failed ({run.returncode}):\n{run.stdout}\n"
                               f"{run.stderr}")
        out = subprocess.run([python, "-m", "autoresearch", "results", "--json", "--tag", "t",
                              "--repo", str(repo)], cwd=repo, env=env, capture_output=True,
                             text=True, check=True)
        data = json.loads(out.stdout)
    return score(data, seconds)


def score(data: dict[str, object], seconds: float) -> SessionResult:
    experiments = data["experiments"]
    assert isinstance(experiments, list)
    verdicts: list[Verdict] = []
    runs = 0
    last_real: int | None = None
    for exp in experiments:
        hypothesis = str(exp.get("hypothesis", ""))
        if exp.get("kind") == "baseline" or hypothesis == "baseline":
            continue
        runs += sum(1 for r in exp.get("runs", []))
        kind = kind_of(hypothesis)
        if kind == "?":
            continue  # a control run recorded on its own, not a verdict
        position = len(verdicts) + 1
        after = None if last_real is None else position - last_real
        verdicts.append(Verdict(position, kind, str(exp["status"]), after))
        if kind == "real" and exp["status"] == "keep":
            last_real = position
    headline = data.get("headline")
    return SessionResult(verdicts, runs, seconds,
                         headline if isinstance(headline, dict) else {})


def rate(kept: int, total: int) -> str:
    if not total:
        return "n/a"
    p, z = kept / total, 1.96
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (f"{100.0 * p:.2f} % [{100 * max(0.0, centre - half):.2f}, "
            f"{100 * min(1.0, centre + half):.2f}] ({kept}/{total})")


def report(scenario: str, results: Sequence[SessionResult]) -> None:
    def tally(pred: object) -> tuple[int, int]:
        chosen = [v for r in results for v in r.verdicts if pred(v)]  # type: ignore[operator]
        return sum(v.status == "keep" for v in chosen), len(chosen)

    verdicts = sum(len(r.verdicts) for r in results)
    runs = sum(r.runs_after_baseline for r in results)
    print(f"{scenario}: {len(results)} sessions, {verdicts} verdicts, runs per verdict "
          f"{runs / max(verdicts, 1):.2f}, median {statistics.median(r.seconds for r in results):.0f}"
          " s per session")
    nulls = ("null", "noisy", "luck") if scenario in ("null", "drift", "noisy", "zero") else (
        "null",)
    print(f"  false keeps (null changes): {rate(*tally(lambda v: v.kind in nulls))}")
    print(f"    first 5: {rate(*tally(lambda v: v.kind in nulls and v.position <= 5))}; "
          f"positions 6-30: {rate(*tally(lambda v: v.kind in nulls and v.position > 5))}")
    if scenario == "noisy":
        print(f"  noise-only knobs kept: {rate(*tally(lambda v: v.kind == 'noisy'))}")
    if scenario == "zero":
        print(f"  luck kept on identical repeats: {rate(*tally(lambda v: v.kind == 'luck'))}")
    if scenario in ("mixed", "effects"):
        print(f"  power per real proposal: {rate(*tally(lambda v: v.kind == 'real'))}")
        print("  false keeps in the 10 after a real keep: "
              f"{rate(*tally(lambda v: v.kind == 'null' and v.after_real_keep is not None and v.after_real_keep <= 10))}")
    if scenario == "deletion":
        kept = [sum(v.status == "keep" for v in r.verdicts) for r in results]
        print(f"  deletions kept per session: median {statistics.median(kept):.0f}, max "
              f"{max(kept)} (each costs 1σ)")
    with_keep = sum(1 for r in results if any(v.status == "keep" and v.kind in nulls
                                              for v in r.verdicts))
    print(f"  sessions with a false keep: {rate(with_keep, len(results))}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sessions", type=int, default=40)
    ap.add_argument("--scenario", action="append", choices=sorted(MODES))
    ap.add_argument("--effect", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--decision", default="",
                    help='extra [decision] lines, e.g. \'policy = "classic"\'')
    ap.add_argument("--python", default=sys.executable)
    args = ap.parse_args()
    for scenario in args.scenario or ["null", "mixed"]:
        results = [run_session(scenario, args.seed * 10_000 + i, args.effect, args.decision,
                               args.python) for i in range(args.sessions)]
        report(scenario, results)


if __name__ == "__main__":
    main()
