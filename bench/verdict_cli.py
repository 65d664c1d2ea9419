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

Seeds: session i of a scenario uses seed = --seed * 10000 + i for the proposer and for the toy's
noise (TOY_SALT), so a run of the benchmark is reproducible. Headline runs (best vs baseline
re-measured at the end) are not verdict runs: they are counted apart.

Run:  python bench/verdict_cli.py [--sessions 40] [--scenario null] [--jobs 2] [--json out.json]
        [--decision 'policy = "classic"']
(with the repository's .venv python, under `nice` on a shared machine)
"""

from __future__ import annotations

import argparse
import concurrent.futures
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

from rates import rate  # noqa: E402
from toy_target import make_repo  # noqa: E402

CANDIDATES = 30
MODES = {"null": "null", "mixed": "mixed", "effects": "effects", "drift": "null",
         "noisy": "noisy", "zero": "zero", "deletion": "deletion"}


@dataclass
class Verdict:
    position: int
    kind: str  # null, real, noisy, deletion, luck
    status: str
    after_real_keep: int | None


HEADLINE_ROLES = ("headline", "headline-baseline")


@dataclass
class SessionResult:
    verdicts: list[Verdict]
    runs_after_baseline: int  # verdict runs: candidate, confirmation and control runs
    control_runs: int
    headline_runs: int
    seconds: float
    headline: dict[str, object] = field(default_factory=dict)
    zero_noise_said: int = 0  # verdicts whose reason says σ = 0 is hidden noise
    infinite_sigma_said: int = 0  # verdicts or summaries that claim "∞σ"


def kind_of(hypothesis: str) -> str:
    tag = hypothesis[1:].split("]", 1)[0] if hypothesis.startswith("[") else ""
    return tag.split()[0] if tag else "?"


def run_session(scenario: str, seed: int, effect: float, decision: str,
                python: str) -> SessionResult:
    with tempfile.TemporaryDirectory(prefix="verdict-cli-") as tmp:
        repo, state = Path(tmp) / "repo", Path(tmp) / "state"
        state.mkdir()
        make_repo(repo, MODES[scenario], effect=effect, seed=seed, decision=decision)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("ANTHROPIC_", "OPENAI_", "OPENROUTER_", "TOY_"))}
        env["PYTHONPATH"] = os.pathsep.join([str(BENCH), env.get("PYTHONPATH", "")])
        env["TOY_STATE"] = str(state)
        env["TOY_SALT"] = str(seed)
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
        status = subprocess.run([python, "-m", "autoresearch", "status", "--tag", "t", "--repo",
                                 str(repo)], cwd=repo, env=env, capture_output=True, text=True)
    result = score(data, seconds)
    result.infinite_sigma_said += ("∞σ" in run.stdout) + ("∞σ" in status.stdout)
    return result


def score(data: dict[str, object], seconds: float) -> SessionResult:
    experiments = data["experiments"]
    assert isinstance(experiments, list)
    verdicts: list[Verdict] = []
    runs = controls = headline_runs = zero = infinite = 0
    last_real: int | None = None
    for exp in experiments:
        hypothesis = str(exp.get("hypothesis", ""))
        roles = [str(r.get("role")) for r in exp.get("runs", [])]
        headline_runs += sum(role in HEADLINE_ROLES for role in roles)
        if exp.get("kind") == "baseline" or hypothesis == "baseline":
            continue
        runs += sum(role not in HEADLINE_ROLES for role in roles)
        controls += sum(role in ("control", "incumbent") for role in roles)
        reason = str(exp.get("reason") or "")
        zero += "hidden" in reason and "σ = 0" in reason
        infinite += "∞σ" in reason
        kind = kind_of(hypothesis)
        if kind == "?":
            continue  # a control run recorded on its own, not a verdict
        position = len(verdicts) + 1
        after = None if last_real is None else position - last_real
        verdicts.append(Verdict(position, kind, str(exp["status"]), after))
        if kind == "real" and exp["status"] == "keep":
            last_real = position
    summary = data.get("summary")
    headline = {k: v for k, v in summary.items() if k.startswith("verified")} if isinstance(
        summary, dict) else {}
    return SessionResult(verdicts, runs, controls, headline_runs, seconds, headline, zero,
                         infinite)


def report(scenario: str, results: Sequence[SessionResult]) -> dict[str, object]:
    """Print the scenario's figures; return them for --json."""
    out: dict[str, object] = {"scenario": scenario, "sessions": len(results)}

    def tally(pred: object) -> tuple[int, int]:
        chosen = [v for r in results for v in r.verdicts if pred(v)]  # type: ignore[operator]
        return sum(v.status == "keep" for v in chosen), len(chosen)

    def line(key: str, label: str, counts: tuple[int, int]) -> None:
        out[key] = list(counts)
        print(f"  {label}: {rate(*counts)}")

    verdicts = sum(len(r.verdicts) for r in results)
    runs = sum(r.runs_after_baseline for r in results)
    controls = sum(r.control_runs for r in results)
    out.update(verdicts=verdicts, runs=runs, control_runs=controls,
               headline_runs=sum(r.headline_runs for r in results),
               median_seconds=statistics.median(r.seconds for r in results))
    print(f"{scenario}: {len(results)} sessions, {verdicts} verdicts, runs per verdict "
          f"{runs / max(verdicts, 1):.2f} (of which control/incumbent runs "
          f"{controls / max(verdicts, 1):.2f}), headline runs per session "
          f"{out['headline_runs'] / len(results):.1f}, median "  # type: ignore[operator]
          f"{out['median_seconds']:.0f} s per session")
    nulls = ("null", "noisy", "luck") if scenario in ("null", "drift", "noisy", "zero") else (
        "null",)
    is_null = lambda v: v.kind in nulls  # noqa: E731
    line("false_keeps", "false keeps (null changes)", tally(is_null))
    line("first5", "  positions 1-5", tally(lambda v: is_null(v) and v.position <= 5))
    line("after_real10", "  the 10 after a real keep",
         tally(lambda v: is_null(v) and v.after_real_keep is not None and v.after_real_keep <= 10))
    line("rest", "  every other position",
         tally(lambda v: is_null(v) and v.position > 5
               and (v.after_real_keep is None or v.after_real_keep > 10)))
    per_position = [tally(lambda v, p=p: is_null(v) and v.position == p)
                    for p in range(1, CANDIDATES + 1)]
    worst = max(range(CANDIDATES), key=lambda i: per_position[i][0] / max(per_position[i][1], 1))
    out["per_position"] = per_position
    print(f"    worst single position: {worst + 1}, {rate(*per_position[worst])}")
    if scenario == "noisy":
        line("noisy_kept", "noise-only knobs kept", tally(lambda v: v.kind == "noisy"))
    if scenario == "zero":
        line("luck_kept", "luck kept on identical repeats", tally(lambda v: v.kind == "luck"))
        said = sum(r.zero_noise_said for r in results)
        out["zero_noise_said"] = said
        print(f"  verdicts that say σ = 0 is hidden noise: {said}/{verdicts}")
    infinite = sum(r.infinite_sigma_said for r in results)
    out["infinite_sigma"] = infinite
    if infinite:
        print(f"  \"∞σ\" shown: {infinite} times")
    if scenario in ("mixed", "effects"):
        line("power", "power per real proposal", tally(lambda v: v.kind == "real"))
    if scenario == "deletion":
        kept = [sum(v.status == "keep" for v in r.verdicts) for r in results]
        out["deletions_kept"] = kept
        print(f"  deletions kept per session: median {statistics.median(kept):.0f}, max "
              f"{max(kept)} (each costs 1σ; the budget is 1σ)")
    with_keep = sum(1 for r in results if any(v.status == "keep" and v.kind in nulls
                                              for v in r.verdicts))
    out["sessions_with_false_keep"] = [with_keep, len(results)]
    print(f"  sessions with a false keep: {rate(with_keep, len(results))}")
    if scenario in ("null", "drift", "noisy", "zero"):
        # The reported best vs baseline: nothing kept reports the baseline itself (0); a keep
        # reports the verified headline, which should cover 0 (every change was null).
        verified = [r for r in results if r.headline.get("verified_pairs")]
        covers = sum(1 for r in verified if float(r.headline.get("verified_low") or -math.inf)
                     <= 0.0 <= float(r.headline.get("verified_high") or math.inf))
        nothing = sum(1 for r in results if not any(v.status == "keep" for v in r.verdicts))
        unverified = len(results) - len(verified) - nothing
        out["headline"] = {"covers": covers, "verified": len(verified), "nothing_kept": nothing,
                           "kept_unverified": unverified}
        print(f"  best vs baseline covers 0: {rate(covers + nothing, len(results))} "
              f"({nothing} kept nothing; {covers}/{len(verified)} verified intervals cover 0; "
              f"{unverified} kept without a verified headline)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sessions", type=int, default=40)
    ap.add_argument("--scenario", action="append", choices=sorted(MODES))
    ap.add_argument("--effect", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--decision", default="",
                    help='extra [decision] lines, e.g. \'policy = "classic"\'')
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--jobs", type=int, default=1, help="sessions run at once")
    ap.add_argument("--json", type=Path, help="append each scenario's figures to this file")
    args = ap.parse_args()
    for scenario in args.scenario or ["null", "mixed"]:
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            results = list(pool.map(
                lambda i, scenario=scenario: run_session(
                    scenario, args.seed * 10_000 + i, args.effect, args.decision, args.python),
                range(args.sessions)))
        figures = report(scenario, results)
        figures.update(effect=args.effect, decision=args.decision, seed=args.seed)
        if args.json:
            with args.json.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(figures) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
