"""Does tune spend its experiments where gains are likely? Keeps and best-vs-baseline per 20.

Real sessions through the CLI (`autoresearch run`, then `autoresearch results --json`) in
throwaway git repositories, one per (variant, seed), compared on the same target:

- after:  this checkout's tune (the local phase around the incumbent, then TPE one move in 4);
- before: tune as it was at --before-ref (default: the commit before the local phase), loaded
  from a temporary directory as `[proposer] name = "tune_before:TuneProposer"`. Everything else
  (engine, verdict, ledger) is this checkout's, so only the proposer differs.

Targets (--target):
- synthetic (default, ~0.3 s a run): a script with the GPT template's 14 knobs (names, types,
  ranges and default values read from the template, so they stay in step) whose `val_bpb` is a
  smooth function of them plus Gaussian noise (σ --noise, default 0.008, what the template shows
  between seeds). A few knobs matter: from the defaults, the learning rates of the embeddings and
  of the head and the warmdown hold about 0.13 of gain between them (0.139 with every continuous
  knob, by a coordinate search), about 16σ; the shapes (DEPTH, the batch, the width) are
  already at their best and moving them costs 0.03 to 0.3, so far jumps are bad, as on the
  template. The noise-free value is printed as a held-out metric (`true_bpb`, never shown to
  the proposer), so the gain reported is the real one.
- gpt: the GPT template itself (`autoresearch init --template gpt`), --budget seconds of
  training per run (the template's own 60 by default). Expect ~1.5-2 min per experiment.

Per session it prints, for each block of 20 experiments (the baseline counts as experiment 1):
the keeps in the block, and at the block's end the best kept value against the baseline
(measured, and for the synthetic target the true gain of the incumbent). Then, per variant,
the median over the seeds of the same figures.

Run:  python bench/tune_local.py [--target synthetic|gpt] [--seeds 0,1,2,3,4]
      [--experiments 40] [--variants before,after] [--budget 60] [--noise 0.008]
Run heavy targets under `nice`; the load average is printed with every session.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from toy_target import git

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "src" / "autoresearch" / "templates" / "gpt"
# The last commit of tune without the local phase (main when this benchmark was written).
BEFORE_REF = "b30f748"
BLOCK = 20

# The synthetic objective: val_bpb of a 60-s CPU run as a smooth function of the knobs. The
# values the template ships are a good start: the shapes are at their best, three rates are off.
SYNTHETIC = '''
import math
import os
import random


def true_bpb(k):
    ln = math.log
    # The matrix learning rate that suits the model grows with the batch (square-root rule).
    matrix_opt = 0.024 * math.sqrt(k["TOTAL_BATCH_TOKENS"] / 2048)
    return 1.44 + sum((
        0.08 * ln(k["MATRIX_LR"] / matrix_opt) ** 2,
        0.06 * ln(k["EMBEDDING_LR"] / 0.7) ** 2,
        0.08 * ln(k["UNEMBEDDING_LR"] / 0.008) ** 2,
        1.5 * (k["MUON_MOMENTUM"] - 0.92) ** 2,
        2.0 * (k["WARMUP_RATIO"] - 0.02) ** 2,
        0.8 * (k["WARMDOWN_RATIO"] - 0.75) ** 2,
        0.6 * (k["FINAL_LR_FRAC"] - 0.05) ** 2,
        0.5 * (k["WEIGHT_DECAY"] - 0.05) ** 2,
        0.00008 * (k["LOGIT_SOFTCAP"] - 15.0) ** 2,
        {1: 0.06, 2: 0.0, 3: 0.12, 4: 0.30}[k["DEPTH"]],
        {32: 0.05, 64: 0.0, 96: 0.05}[k["ASPECT_RATIO"]],
        {32: 0.01, 64: 0.0, 128: 0.02}[k["HEAD_DIM"]],
        0.006 * (k["MLP_RATIO"] - 4) ** 2,
        {1024: 0.03, 2048: 0.0, 4096: 0.08, 8192: 0.18, 16384: 0.30}[k["TOTAL_BATCH_TOKENS"]],
    ))


if __name__ == "__main__":
    true = true_bpb(globals())
    noisy = true + random.gauss(0.0, float(os.environ.get("SYNTHETIC_NOISE", "0.008")))
    print(f"val_bpb: {noisy:.6f}")
    print(f"true_bpb: {true:.6f}")
'''


@dataclass
class Session:
    variant: str
    seed: int
    statuses: list[str]
    objectives: list[float | None]  # measured, per experiment
    truths: list[float | None]  # the noise-free value (synthetic), per experiment
    seconds: float
    load: tuple[float, float]  # the 1-minute load average when the session started and ended
    # gpt: the best kept state minus the baseline, re-measured in interleaved pairs after the
    # session (mean, standard error, pairs): the machine's drift during a session cancels here.
    verified: tuple[float, float, int] | None = None
    # gpt: the median training steps of each experiment's runs (a time budget on a loaded
    # machine buys fewer steps: this shows how much the load moved the metric)
    steps: list[float | None] | None = None


def template_knobs() -> dict[str, str]:
    with (TEMPLATE / "autoresearch.toml").open("rb") as fh:
        return dict(tomllib.load(fh)["knobs"])


def template_defaults(names: list[str]) -> dict[str, str]:
    """The literal each knob has in the template's train.py, as written."""
    found: dict[str, str] = {}
    for line in (TEMPLATE / "train.py").read_text().splitlines():
        name, sep, rest = line.partition(" = ")
        if sep and name in names and name not in found:
            found[name] = rest.split("#")[0].strip()
    missing = set(names) - set(found)
    if missing:
        raise SystemExit(f"the template's train.py has no line for {sorted(missing)}")
    return found


def make_synthetic(repo: Path, proposer: str, seed: int) -> None:
    knobs = template_knobs()
    names = [key.split(":", 1)[1] for key in knobs]
    defaults = template_defaults(names)
    lines = ['"""A synthetic stand-in for the GPT template (bench/tune_local.py)."""', ""]
    lines += [f"{name} = {defaults[name]}" for name in names]
    (repo / "train.py").write_text("\n".join(lines) + "\n" + SYNTHETIC)
    table = "\n".join(f'"{key}" = "{spec}"' for key, spec in knobs.items())
    (repo / "autoresearch.toml").write_text(textwrap.dedent(f"""\
        scope = ["train.py"]
        [verify]
        command = "{{python}} train.py"
        budget_seconds = 5
        [metric]
        name = "val_bpb"
        direction = "minimize"
        record = ["true_bpb"]
        heldout = ["true_bpb"]
        [proposer]
        name = "{proposer}"
        seed = {seed}
        [knobs]
        """) + table + "\n")


def make_gpt(repo: Path, proposer: str, seed: int, budget: float, timeout: float,
             env: dict[str, str], headline_pairs: str) -> None:
    result = subprocess.run([sys.executable, "-m", "autoresearch", "init", "--template", "gpt",
                             "--repo", str(repo)], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"init --template gpt failed:\n{result.stdout}{result.stderr}")
    config = (repo / "autoresearch.toml").read_text()
    config = config.replace('name = "auto"', f'name = "{proposer}"\nseed = {seed}', 1)
    config = config.replace("budget_seconds = 60", f"budget_seconds = {budget:g}", 1)
    # Startup and evaluation take minutes on a loaded machine: the default timeout (2 x budget
    # + 60 s) would kill the baseline itself.
    config = config.replace("# timeout_seconds = 180", f"timeout_seconds = {timeout:g}", 1)
    if headline_pairs != "auto":  # the engine's verified headline at the end (minutes of runs)
        config = config.replace('headline_pairs = "auto"', f"headline_pairs = {headline_pairs}", 1)
    (repo / "autoresearch.toml").write_text(config)


def before_dir(ref: str, into: Path) -> Path:
    """`tune_before.py`: the tune proposer at `ref`, importable from `into`."""
    source = subprocess.run(["git", "show", f"{ref}:src/autoresearch/proposers/tune.py"],
                            cwd=ROOT, check=True, capture_output=True, text=True).stdout
    (into / "tune_before.py").write_text(source)
    return into


def run_session(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the CLI; if this benchmark is stopped, stop the session first (SIGTERM: the CLI
    records the running experiment as interrupted and kills its process tree)."""
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL, text=True) as child:
        try:
            out, err = child.communicate()
        except BaseException:
            child.terminate()
            child.communicate(timeout=120)
            raise
    return subprocess.CompletedProcess(command, child.returncode, out, err)


def _stop(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def one_session(args: argparse.Namespace, variant: str, seed: int, extra_path: Path) -> Session:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ANTHROPIC_", "OPENAI_", "OPENROUTER_", "AUTORESEARCH_SEED"))}
    env["PYTHONPATH"] = os.pathsep.join([str(extra_path), str(ROOT / "src")])
    env["SYNTHETIC_NOISE"] = str(args.noise)
    if args.target == "gpt":
        env["OMP_NUM_THREADS"] = str(args.threads)
    proposer = "tune" if variant == "after" else "tune_before:TuneProposer"
    with tempfile.TemporaryDirectory(prefix="tune-bench-") as tmp:
        repo = Path(args.keep or tmp) / f"{variant}-seed{seed}"
        repo.mkdir(parents=True)
        git(repo, "init", "-q", "-b", "main")
        if args.target == "gpt":
            make_gpt(repo, proposer, seed, args.budget, args.timeout or args.budget + 300, env,
                     args.headline_pairs)
        else:
            make_synthetic(repo, proposer, seed)
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "init")
        load = os.getloadavg()[0]
        started = time.time()
        run = run_session(
            [sys.executable, "-m", "autoresearch", "run", "--tag", "bench",
             "--iterations", str(args.experiments), "--repo", str(repo)], env)
        seconds = time.time() - started
        load_end = os.getloadavg()[0]
        if run.returncode != 0:  # e.g. paused after crashes: report what it did, and say so
            print(f"  ! {variant} seed {seed}: run exited {run.returncode}:\n"
                  f"{run.stdout[-2000:]}{run.stderr[-2000:]}", flush=True)
        results = subprocess.run(
            [sys.executable, "-m", "autoresearch", "results", "--json", "--repo", str(repo)],
            env=env, capture_output=True, text=True)
        if results.returncode != 0:
            raise SystemExit(f"{variant} seed {seed}: no results:\n{results.stderr[-3000:]}")
        verified = verify(repo, args, env) if args.target == "gpt" and args.verify_pairs else None
    return parsed(results.stdout, variant, seed, seconds, (load, load_end), verified)


def parsed(results_json: str, variant: str, seed: int, seconds: float,
           load: tuple[float, float], verified: tuple[float, float, int] | None) -> Session:
    """A Session from `autoresearch results --json`."""
    exps = json.loads(results_json)["experiments"]
    truths: list[float | None] = []
    steps: list[float | None] = []
    for exp in exps:
        # The experiment's own runs (confirmation pairs also re-run the incumbent).
        runs = [r for r in exp.get("runs", []) if r.get("role") != "incumbent"]
        values = [r["metrics"]["true_bpb"] for r in runs if "true_bpb" in r.get("metrics", {})]
        truths.append(values[0] if values else None)
        counts = [r["metrics"]["num_steps"] for r in runs if "num_steps" in r.get("metrics", {})]
        steps.append(statistics.median(counts) if counts else None)
    return Session(variant, seed, [e["status"] for e in exps], [e["objective"] for e in exps],
                   truths, seconds, load, verified, steps)


def read_kept(directory: Path) -> list[Session]:
    """--read: the sessions a --keep run left under `directory` (finished or stopped)."""
    sessions = []
    for repo in sorted(directory.glob("*-seed*")):
        variant, _, seed = repo.name.rpartition("-seed")
        results = subprocess.run(
            [sys.executable, "-m", "autoresearch", "results", "--json", "--repo", str(repo)],
            capture_output=True, text=True)
        if results.returncode != 0:
            raise SystemExit(f"{repo}: no results:\n{results.stderr[-3000:]}")
        db = repo / ".autoresearch" / "ledger.db"
        with sqlite3.connect(db) as conn:
            first, last = conn.execute(
                "SELECT MIN(started_at), MAX(finished_at) FROM runs").fetchone()
        seconds = (last - first) if first is not None and last is not None else 0.0
        sessions.append(parsed(results.stdout, variant, int(seed), seconds,
                               (float("nan"), float("nan")), None))
    if not sessions:
        raise SystemExit(f"{directory}: no <variant>-seed<seed> repositories (see --keep)")
    return sessions


def train_bpb(checkout: Path, seed: int, args: argparse.Namespace, env: dict[str, str]) -> float:
    run_env = dict(env, AUTORESEARCH_TIME_BUDGET=f"{args.budget:g}", AUTORESEARCH_SEED=str(seed))
    result = subprocess.run([sys.executable, "train.py"], cwd=checkout, env=run_env,
                            capture_output=True, text=True,
                            timeout=args.timeout or args.budget + 300)
    for line in result.stdout.splitlines():
        if line.startswith("val_bpb:"):
            return float(line.split(":", 1)[1])
    raise SystemExit(f"train.py printed no val_bpb in {checkout}:\n{result.stdout[-2000:]}"
                     f"{result.stderr[-2000:]}")


def verify(repo: Path, args: argparse.Namespace, env: dict[str, str], base_ref: str = "main",
           best_ref: str = "autoresearch/bench") -> tuple[float, float, int] | None:
    """The session's best kept state (its branch) against the baseline (the first commit),
    re-measured in --verify-pairs interleaved pairs, each pair with its own seed."""
    def rev(*what: str) -> str:
        return subprocess.run(["git", *what], cwd=repo, check=True, capture_output=True,
                              text=True).stdout.split()[0]

    base, best = rev("rev-list", "--max-parents=0", base_ref), rev("rev-parse", best_ref)
    if base == best:
        return None  # nothing was kept
    with tempfile.TemporaryDirectory(prefix="tune-verify-") as tmp:
        checkouts = {}
        for name, commit in (("base", base), ("best", best)):
            checkouts[name] = Path(tmp) / name
            git(repo, "worktree", "add", "-q", "--detach", str(checkouts[name]), commit)
        try:
            diffs = []
            for pair in range(args.verify_pairs):
                baseline = train_bpb(checkouts["base"], 1000 + pair, args, env)
                diffs.append(train_bpb(checkouts["best"], 1000 + pair, args, env) - baseline)
        finally:
            for checkout in checkouts.values():
                git(repo, "worktree", "remove", "--force", str(checkout))
    se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
    return statistics.fmean(diffs), se, len(diffs)


def verify_existing(path: Path, args: argparse.Namespace) -> None:
    """--verify-repo: re-measure a kept session's best against its baseline (a clone of it)."""
    env = {k: v for k, v in os.environ.items() if k != "AUTORESEARCH_SEED"}
    env["OMP_NUM_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory(prefix="tune-verify-repo-") as tmp:
        repo = Path(tmp) / "repo"
        subprocess.run(["git", "clone", "-q", str(path), str(repo)], check=True)
        load = os.getloadavg()[0]
        found = verify(repo, args, env, "origin/main", "origin/autoresearch/bench")
    if found is None:
        print(f"{path}: nothing was kept")
        return
    mean, se, n = found
    print(f"{path}: best − baseline re-measured {mean:+.4f} ± {se:.4f} (SE, {n} interleaved "
          f"pairs, budget {args.budget:g} s, load {load:.1f} → {os.getloadavg()[0]:.1f})")


def blocks(session: Session) -> list[tuple[int, int, float, float | None]]:
    """Per block of 20: (last experiment, keeps in the block, best − baseline, true gain)."""
    out = []
    baseline = session.objectives[0]
    assert baseline is not None
    best, best_true = baseline, session.truths[0]
    keeps = 0
    for i, (status, value, truth) in enumerate(
            zip(session.statuses, session.objectives, session.truths, strict=True)):
        if i > 0 and status == "keep" and value is not None:
            keeps += 1
            best, best_true = value, truth
        if (i + 1) % BLOCK == 0 or i == len(session.statuses) - 1:
            gain = None
            if best_true is not None and session.truths[0] is not None:
                gain = best_true - session.truths[0]
            out.append((i + 1, keeps, best - baseline, gain))
            keeps = 0
    return out


def block_steps(session: Session, end: int) -> float | None:
    """The median training steps of the runs in the block of 20 that ends at `end`."""
    if session.steps is None:
        return None
    found = [n for n in session.steps[(end - 1) // BLOCK * BLOCK:end] if n is not None]
    return statistics.median(found) if found else None


def block_spent(session: Session, end: int) -> float | None:
    """Where the block's experiments were spent: the median measured value of its candidates
    minus the baseline (far jumps that cost a lot show here even when nothing is kept)."""
    baseline = session.objectives[0]
    start = max(1, (end - 1) // BLOCK * BLOCK)
    found = [v - baseline for v in session.objectives[start:end]
             if v is not None and baseline is not None]
    return statistics.median(found) if found else None


def show(session: Session) -> None:
    parts = []
    for end, keeps, measured, true in blocks(session):
        true_part = "" if true is None else f", true {true:+.4f}"
        steps = block_steps(session, end)
        steps_part = "" if steps is None else f", median {steps:.0f} steps a run"
        spent = block_spent(session, end)
        spent_part = "" if spent is None else f", median candidate {spent:+.3f}"
        parts.append(f"≤{end}: {keeps} kept, best {measured:+.4f}{true_part}{spent_part}"
                     f"{steps_part}")
    if session.verified is not None:
        mean, se, n = session.verified
        parts.append(f"re-measured best − baseline {mean:+.4f} ± {se:.4f} ({n} pairs)")
    known = not any(map(math.isnan, session.load))  # --read does not know the load
    load = f", load {session.load[0]:.1f} → {session.load[1]:.1f}" if known else ""
    print(f"  {session.variant:>6} seed {session.seed}: " + "; ".join(parts)
          + f"  ({session.seconds:.0f} s{load})", flush=True)


def summary(sessions: list[Session]) -> None:
    print("\nover the seeds, median (mean); best = best kept value − baseline, lower is better")
    for variant in sorted({s.variant for s in sessions}, reverse=True):
        rows = [blocks(s) for s in sessions if s.variant == variant]
        for b in range(max(len(r) for r in rows)):
            cells = [r[b] for r in rows if len(r) > b]

            def both(values: list[float], fmt: str) -> str:
                return (f"{statistics.median(values):{fmt}} "
                        f"({statistics.fmean(values):{fmt}})")

            trues = [c[3] for c in cells if c[3] is not None]
            true = f", true gain {both(trues, '+.4f')}" if trues else ""
            spent = [x for x in (block_spent(s, cells[0][0]) for s in sessions
                                 if s.variant == variant) if x is not None]
            true += f", median candidate {both(spent, '+.3f')}" if spent else ""
            print(f"  {variant:>6} experiments ≤{cells[0][0]}: keeps {both([c[1] for c in cells], '.1f')}, "
                  f"best vs baseline {both([c[2] for c in cells], '+.4f')}{true}  (n={len(cells)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--target", choices=("synthetic", "gpt"), default="synthetic")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--experiments", type=int, default=40, help="per session, baseline included")
    ap.add_argument("--variants", default="before,after")
    ap.add_argument("--before-ref", default=BEFORE_REF)
    ap.add_argument("--budget", type=float, default=60.0, help="gpt: seconds of training per run")
    ap.add_argument("--timeout", type=float, default=0.0,
                    help="gpt: seconds before a run is killed (default: budget + 300)")
    ap.add_argument("--verify-pairs", type=int, default=3, help=(
        "gpt: after each session, re-measure its best against the baseline in this many "
        "interleaved pairs (0: skip)"))
    ap.add_argument("--headline-pairs", default="auto", help=(
        "gpt: the template's [decision] headline_pairs (the engine's own re-measurement of best "
        "vs baseline when a session ends; 0 turns it off)"))
    ap.add_argument("--keep", type=Path, help=(
        "keep each session's repository under this directory (as <variant>-seed<seed>), to "
        "read a stopped session's ledger afterwards"))
    ap.add_argument("--read", type=Path, help=(
        "only summarize the sessions a --keep run left in this directory (finished or stopped)"))
    ap.add_argument("--verify-repo", type=Path, help=(
        "gpt: only re-measure the best of an existing session's repository (or its .git)"))
    ap.add_argument("--noise", type=float, default=0.008, help="synthetic: σ of val_bpb")
    ap.add_argument("--threads", type=int, default=1, help=(
        "gpt: OMP_NUM_THREADS of each run (on a shared machine, 2 threads crawl when the other "
        "core is busy)"))
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, _stop)  # a killed benchmark leaves no session running
    if args.verify_repo is not None:
        verify_existing(args.verify_repo, args)
        return
    if args.read is not None:
        kept = read_kept(args.read)
        for session in kept:
            show(session)
        summary(kept)
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = [v.strip() for v in args.variants.split(",")]
    unknown = set(variants) - {"before", "after"}
    if unknown:
        raise SystemExit(f"unknown variant(s) {sorted(unknown)}: use before and/or after")
    print(f"target {args.target}, {args.experiments} experiments per session, seeds {seeds}"
          + (f", budget {args.budget:g} s, {args.threads} thread(s) per run"
             if args.target == "gpt" else f", σ {args.noise}")
          + f"; before = tune at {args.before_ref}")
    sessions = []
    with tempfile.TemporaryDirectory(prefix="tune-before-") as extra:
        path = before_dir(args.before_ref, Path(extra))
        for seed in seeds:
            for variant in variants:
                session = one_session(args, variant, seed, path)
                show(session)
                sessions.append(session)
    summary(sessions)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted: the session that was running was stopped")
