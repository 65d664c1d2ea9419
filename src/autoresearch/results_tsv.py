"""`results.tsv`: a tab-separated view of the ledger in Karpathy's column order, then ours.

The ledger is the truth; this file is rewritten whole (atomically) after every experiment, so a
reader never sees half a row and deleting it loses nothing. One exception: a row of an
experiment the ledger does not record (the ledger was restored from a backup taken before it)
is the only record of that experiment's numbers left, so a rewrite keeps it, in its place by
experiment number, its description marked `[not in the ledger]`.

`memory_gb` is the run's peak memory in GB, read from the metric `[metric] memory` names, or
else from a recorded metric whose name says it is memory and gives its unit (`peak_vram_mb`,
`peak_memory_mb`, `mem_mb`, `max_rss_kb`, `memory_gb`, `gpu_mem_bytes`, …: see
`memory_metric`). `description` is the hypothesis; an experiment that never got one (a failed
proposal) is described by why it ended, so no row is blank. The metric's column is empty for
an experiment that measured nothing (crashed, timed out, rejected), as `delta` is: a 0.000000
there would read as a perfect score.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from autoresearch.ledger import FINAL_STATUSES, ExperimentRow, RunRow
from autoresearch.views.safe_console import terminal_safe

# GB per unit of a metric named with that suffix.
_UNITS = {"bytes": 1 / 1024**3, "b": 1 / 1024**3, "kb": 1 / 1024**2, "kib": 1 / 1024**2,
          "mb": 1 / 1024, "mib": 1 / 1024, "gb": 1.0, "gib": 1.0}
_MEMORY_NAME = re.compile(
    r"^(?:[a-z0-9]+_)*(?:mem|memory|vram|rss|maxrss)(?:_[a-z0-9]+)*_(" + "|".join(_UNITS) + r")$")
# Checked first, in this order, when a run reports several (the GPU's peak over the process's).
PREFERRED = ("peak_vram_mb", "peak_memory_mb", "memory_mb", "memory_gb")


def unit_scale(name: str) -> float:
    """GB per unit of the metric `name`, from its suffix (`_kb`, `_mb`, `_gb`, `_bytes`, …); a
    name without one is taken to be in MB."""
    return _UNITS.get(name.lower().rsplit("_", 1)[-1], _UNITS["mb"])


def memory_metric(names: Sequence[str] | set[str], configured: str | None = None) -> str | None:
    """The metric among `names` that holds the run's peak memory, or None.

    The configured name wins; else a preferred name; else any name that says memory (mem,
    memory, vram, rss) and ends with a unit.
    """
    if configured:
        return configured if configured in names else None
    for name in PREFERRED:
        if name in names:
            return name
    return next((n for n in sorted(names) if _MEMORY_NAME.match(n.lower())), None)


def memory_gb(runs: Sequence[RunRow], configured: str | None = None) -> float:
    """The experiment's peak memory in GB over its runs (0.0 when no run reported one)."""
    peaks = []
    for run in runs:
        name = memory_metric(set(run.metrics), configured)
        if name is not None:
            peaks.append(run.metrics[name] * unit_scale(name))
    return max((p for p in peaks if math.isfinite(p)), default=0.0)


def _clean(text: str) -> str:
    """Untrusted text (a hypothesis, a failure's message, the metric's name) as one TSV field:
    every run of whitespace (tabs and newlines would split the columns and rows) one space, and
    no escape sequence or control character, which `cat` or `column -t` would hand to the
    terminal."""
    return " ".join(terminal_safe(text).split())


def description(exp: ExperimentRow) -> str:
    """What the experiment tried; for one that never got a hypothesis, why it ended."""
    if exp.kind == "baseline":
        return _clean(exp.hypothesis) or "baseline"
    return _clean(exp.hypothesis) or _clean(exp.decision_reason) or f"({exp.status})"


COLUMNS = 9  # commit, <metric>, memory_gb, status, description, delta, runs, duration_s, id
_STATUS, _DESCRIPTION, _EXPERIMENT = 3, 4, 8
UNRECORDED = "[not in the ledger] "
_SEQ = re.compile(r"-(\d+)$")


def render(metric: str, rows: Sequence[tuple[ExperimentRow, Sequence[RunRow]]],
           memory: str | None = None, unrecorded: Sequence[tuple[int, str]] = ()) -> str:
    """The file's text; `unrecorded` (sequence number, line) are rows the ledger lacks, each
    placed before the first experiment numbered after it."""
    header = ["commit", _clean(metric), "memory_gb", "status", "description",
              "delta", "runs", "duration_s", "experiment"]
    lines = ["\t".join(header)]
    waiting = sorted(unrecorded)
    for exp, runs in rows:
        while waiting and waiting[0][0] < exp.seq:
            lines.append(waiting.pop(0)[1])
        candidate_runs = [r for r in runs if r.role == "candidate"]
        lines.append("\t".join([
            (exp.commit_sha or "")[:7],
            # Empty when nothing was measured (a crash, a timeout, a rejected proposal): the
            # 0.000000 of Karpathy's file reads as a perfect score for a metric to minimise.
            _number(exp.objective) if exp.objective is not None else "",
            f"{memory_gb(candidate_runs, memory):.1f}",
            exp.status,
            description(exp),
            _number(exp.delta, sign="+") if exp.delta is not None else "",
            str(len(candidate_runs)),
            f"{exp.duration_s:.1f}" if exp.duration_s is not None else "",
            exp.id,
        ]))
    lines += [line for _, line in waiting]
    return "\n".join(lines) + "\n"


def _number(value: float, sign: str = "") -> str:
    """Six decimals, as Karpathy's file writes val_bpb; a value too small for them (a metric
    on the scale of 1e-8) in six significant digits, or every row would read 0.000000."""
    if value == 0 or abs(value) >= 1e-3:
        return f"{value:{sign}.6f}"
    return f"{value:{sign}.6g}"


def _rows_in(path: Path) -> list[list[str]]:
    """The fields of every well-formed row of the file at `path` (none if there is no file)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    rows = [line.split("\t") for line in text.splitlines()[1:]]
    return [fields for fields in rows if len(fields) == COLUMNS]


def experiment_ids(path: Path) -> list[str]:
    """The experiment id of every row of the results.tsv at `path`."""
    return [fields[_EXPERIMENT] for fields in _rows_in(path)]


def unrecorded_rows(path: Path, recorded: set[str]) -> list[tuple[int, str]]:
    """(sequence number, line) of each decided experiment in the file at `path` whose id is
    not in `recorded`, marked as such. An open experiment's row is not kept: one abandoned
    before it was proposed leaves the ledger, and nothing of it is lost."""
    kept = []
    for fields in _rows_in(path):
        number = _SEQ.search(fields[_EXPERIMENT])
        if number is None or fields[_EXPERIMENT] in recorded:
            continue
        if fields[_STATUS] not in FINAL_STATUSES:
            continue
        if not fields[_DESCRIPTION].startswith(UNRECORDED):
            fields[_DESCRIPTION] = UNRECORDED + fields[_DESCRIPTION]
        kept.append((int(number[1]), "\t".join(_clean(f) for f in fields)))
    return kept


def write(path: Path, metric: str, rows: Sequence[tuple[ExperimentRow, Sequence[RunRow]]],
          memory: str | None = None) -> None:
    """Rewrite the file from the ledger's `rows`, keeping the rows of experiments the ledger
    does not record (see the module's docstring)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    unrecorded = unrecorded_rows(path, {exp.id for exp, _ in rows})
    tmp = path.with_suffix(".tsv.tmp")
    tmp.write_text(render(metric, rows, memory, unrecorded), encoding="utf-8")
    os.replace(tmp, path)


def memory_advice(printed: Mapping[str, float], recorded: Sequence[str],
                  configured: str | None) -> str | None:
    """For `check`: None when results.tsv's memory_gb will be filled from the run's output
    (`printed`: every metric it printed), else what it needs."""
    if configured:
        if configured in printed:
            return None
        return (f"[metric] memory = {configured!r}, but the run does not print {configured}: "
                "results.tsv's memory_gb will be 0.0")
    name = memory_metric(set(recorded))
    if name is not None and name in printed:
        return None
    found = memory_metric(set(printed))
    if found is not None:
        return (f"the run prints {found}, which is not recorded: add memory = {found!r} under "
                "[metric] to fill results.tsv's memory_gb (else it is 0.0)")
    return ("the run reports no peak memory, so results.tsv's memory_gb will be 0.0: print one "
            "(e.g. `peak_memory_mb: 512`) and name it with memory = \"peak_memory_mb\" under "
            "[metric]")
