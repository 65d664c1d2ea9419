"""`results.tsv`: a tab-separated view of the ledger in Karpathy's column order, then ours.

The ledger is the truth; this file is rewritten whole (atomically) after every experiment, so a
reader never sees half a row and deleting it loses nothing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from autoresearch.ledger import ExperimentRow, RunRow

MEMORY_METRICS = ("peak_vram_mb", "peak_memory_mb", "memory_mb")


def _memory_gb(runs: Sequence[RunRow]) -> float:
    for run in runs:
        for name in MEMORY_METRICS:
            if name in run.metrics:
                return run.metrics[name] / 1024.0
        if "memory_gb" in run.metrics:
            return run.metrics["memory_gb"]
    return 0.0


def _clean(text: str) -> str:
    return " ".join(text.replace("\t", " ").split())


def render(metric: str, rows: Sequence[tuple[ExperimentRow, Sequence[RunRow]]]) -> str:
    header = ["commit", metric, "memory_gb", "status", "description",
              "delta", "runs", "duration_s", "experiment"]
    lines = ["\t".join(header)]
    for exp, runs in rows:
        candidate_runs = [r for r in runs if r.role == "candidate"]
        lines.append("\t".join([
            (exp.commit_sha or "")[:7],
            f"{exp.objective:.6f}" if exp.objective is not None else "0.000000",
            f"{_memory_gb(candidate_runs):.1f}",
            exp.status,
            _clean(exp.hypothesis) or ("baseline" if exp.kind == "baseline" else ""),
            f"{exp.delta:+.6f}" if exp.delta is not None else "",
            str(len(candidate_runs)),
            f"{exp.duration_s:.1f}" if exp.duration_s is not None else "",
            exp.id,
        ]))
    return "\n".join(lines) + "\n"


def write(path: Path, metric: str, rows: Sequence[tuple[ExperimentRow, Sequence[RunRow]]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tsv.tmp")
    tmp.write_text(render(metric, rows), encoding="utf-8")
    os.replace(tmp, path)
