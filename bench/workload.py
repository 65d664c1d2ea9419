"""Benchmark the reference GPT workload (templates/gpt) on this machine.

    python bench/workload.py                      # 60 s budget, ~10 minutes in all
    python bench/workload.py --budget 120 --no-bytes

Reports, for the default config of train.py:
- tokens/s, steps, val_bpb and test_bpb: median of --repeats identical runs (same seed);
- the noise: spread (max - min) and standard deviation of val_bpb over --seeds seeds;
- baselines: xz (lzma, preset 9e) over the raw bytes of the val and test splits (whole, and
  the prefix that evaluate_bpb scores), and the same 2-layer model on plain bytes instead of
  BPE (--no-bytes skips it).

Each run is `python train.py` in a temporary copy of the template, exactly as the engine runs it,
sharing the data cache (AUTORESEARCH_CACHE, default ~/.cache/autoresearch/gpt). Runs are
sequential: on a small machine two at once would measure contention, not the workload.
"""

from __future__ import annotations

import argparse
import importlib.util
import lzma
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

from autoresearch.metrics import parse_metrics

TEMPLATE = Path(__file__).resolve().parents[1] / "src" / "autoresearch" / "templates" / "gpt"
RUN_OVERRIDES = ("AUTORESEARCH_SEED", "AUTORESEARCH_MAX_STEPS", "AUTORESEARCH_PROGRESS_EVERY")


def load_prepare(env: dict[str, str]) -> ModuleType:
    os.environ.update(env)  # prepare reads its settings at import
    spec = importlib.util.spec_from_file_location("gpt_prepare", TEMPLATE / "prepare.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpt_prepare"] = module
    spec.loader.exec_module(module)
    return module


def xz_bpb(prepare: ModuleType, split: str) -> tuple[float, float, int]:
    """xz over the whole split and over the bytes evaluate_bpb scores (its first EVAL_BYTES)."""
    corpus = prepare.resolve_corpus()
    raw = b"".join(
        text.encode("utf-8", "surrogateescape") for text in prepare.iter_documents(corpus, split)
    )

    def bpb(data: bytes) -> float:
        return 8 * len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)) / len(data)

    return bpb(raw), bpb(raw[: prepare.EVAL_BYTES]), len(raw)


def run_train(budget: float, env: dict[str, str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="gpt-bench-") as tmp:
        project = Path(tmp) / "project"
        shutil.copytree(TEMPLATE, project, ignore=shutil.ignore_patterns("__pycache__"))
        # An exported seed or step limit would silently change what the report says it ran.
        full_env = {k: v for k, v in os.environ.items() if k not in RUN_OVERRIDES}
        full_env.update(env, AUTORESEARCH_TIME_BUDGET=str(budget))
        result = subprocess.run(
            [sys.executable, "train.py"],
            cwd=project,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=2 * budget + 300,
        )
    metrics = parse_metrics(result.stdout, "kv")
    if result.returncode != 0 or "val_bpb" not in metrics:
        raise SystemExit(f"train.py failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    metrics["tokens_per_s"] = metrics["total_tokens_M"] * 1e6 / metrics["training_seconds"]
    return metrics


def describe(label: str, runs: list[dict[str, float]]) -> None:
    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    vals = [r["val_bpb"] for r in runs]
    print(
        f"{label}: median of {len(runs)}: tokens/s {med('tokens_per_s'):,.0f}, "
        f"steps {med('num_steps'):.0f}, val_bpb {med('val_bpb'):.4f}, "
        f"test_bpb {med('test_bpb'):.4f}, total_s {med('total_seconds'):.1f}, "
        f"peak_mb {med('peak_vram_mb'):.0f}, "
        f"params {med('num_params_M'):.3f}M"
    )
    spread = max(vals) - min(vals)
    stdev = statistics.stdev(vals) if len(vals) > 1 else 0.0
    print(f"  val_bpb per run: {', '.join(f'{v:.4f}' for v in vals)}")
    steps = ", ".join(f"{r['num_steps']:.0f}" for r in runs)
    print(f"  steps per run:   {steps}")
    print(f"  spread {spread:.4f}, stdev {stdev:.4f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=60.0, help="training seconds per run")
    parser.add_argument("--repeats", type=int, default=3, help="identical runs (same seed)")
    parser.add_argument("--seeds", type=int, default=3, help="runs with different seeds")
    parser.add_argument("--no-bytes", action="store_true", help="skip the plain-bytes model")
    args = parser.parse_args()

    env = {"AUTORESEARCH_DEVICE": os.environ.get("AUTORESEARCH_DEVICE", "cpu")}
    prepare = load_prepare(env)
    start = time.time()
    prepared = prepare.prepare()
    print(f"machine: {platform.machine()} {platform.processor() or ''}, ", end="")
    cores = len(os.sched_getaffinity(0))
    threads = os.environ.get("OMP_NUM_THREADS") or cores  # what train.py will use
    print(f"{cores} cores, torch threads {threads}, python {platform.python_version()}")
    print(f"corpus: {prepared.corpus.corpus_id}, tokenizer {prepared.meta['tokenizer']}")
    print(f"prepare: {time.time() - start:.1f}s (cached after the first run)")
    for split in ("val", "test"):
        whole, scored, size = xz_bpb(prepare, split)
        print(
            f"xz -9e on the {split} split: {whole:.4f} bpb ({size:,} bytes); on the "
            f"{min(size, prepare.EVAL_BYTES):,} bytes evaluate_bpb scores: {scored:.4f} bpb"
        )
    print(f"budget: {args.budget:g}s per run", flush=True)

    same = [run_train(args.budget, env) for _ in range(args.repeats)]
    describe(f"default config, seed 42, {args.repeats} identical runs", same)
    seeds = [
        run_train(args.budget, {**env, "AUTORESEARCH_SEED": str(seed)})
        for seed in range(1, args.seeds + 1)
    ]
    describe(f"default config, seeds 1..{args.seeds}", seeds)
    if not args.no_bytes:
        raw = [run_train(args.budget, {**env, "AUTORESEARCH_TOKENIZER": "bytes"})]
        describe("same model on plain bytes (vocab 257)", raw)


if __name__ == "__main__":
    main()
