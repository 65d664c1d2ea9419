"""`autoresearch status` and `autoresearch results`: read-only views of the ledger."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from autoresearch.display import STATUS_STYLE
from autoresearch.errors import AutoresearchError
from autoresearch.ledger import ExperimentRow, Ledger, SessionRow
from autoresearch.state import SessionLock, StatePaths


def open_session(root: Path, tag: str) -> tuple[Ledger, SessionRow]:
    paths = StatePaths(root, tag)
    if not paths.ledger.exists():
        raise AutoresearchError("no ledger in this repository", where=str(paths.ledger),
                                fix="start a session with `autoresearch run`")
    ledger = Ledger(paths.ledger, readonly=True)  # a view never writes (nor migrates)
    row = ledger.session(tag)
    if row is None:
        known = ", ".join(s.tag for s in ledger.sessions()) or "none"
        raise AutoresearchError(f"no session {tag!r}", where=str(paths.ledger),
                                fix=f"use one of the sessions: {known}")
    return ledger, row


def _best(row: SessionRow, exps: list[ExperimentRow]) -> ExperimentRow | None:
    kept = [e for e in exps if e.status == "keep" and e.objective is not None]
    return max(kept, key=lambda e: (e.finished_at or 0, e.seq)) if kept else None


def render_status(root: Path, tag: str, console: Console) -> None:
    ledger, row = open_session(root, tag)
    exps = ledger.experiments(row.id)
    counts: dict[str, int] = {}
    for e in exps:
        counts[e.status] = counts.get(e.status, 0) + 1
    baseline = next((e for e in exps if e.kind == "baseline" and e.status == "keep"), None)
    best = _best(row, exps)
    lock = SessionLock(StatePaths(root, tag).lock)
    pid = lock.live_holder()
    died = None if pid else _died(row, lock)
    end = time.time() if pid else max([row.updated_at] + [e.finished_at or 0 for e in exps])
    hours = max((end - row.created_at) / 3600, 1e-9)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("session", f"{row.tag} on {row.branch} (base {row.base_commit[:10]})")
    grid.add_row("state", f"running (pid {pid})" if pid else died or row.status)
    grid.add_row("experiments", f"{len(exps)} ({len(exps) / hours:.1f}/hour): " + ", ".join(
        f"{k} {v}" for k, v in sorted(counts.items())))
    if baseline and baseline.objective is not None:
        grid.add_row("baseline", f"{row.metric} = {baseline.objective:.6g}")
    if best and best.objective is not None and baseline and baseline.objective is not None:
        delta = best.objective - baseline.objective
        grid.add_row("best", f"{row.metric} = {best.objective:.6g} ({delta:+.4g}) at {best.id} "
                     f"{(best.commit_sha or '')[:7]}")
    grid.add_row("noise", "unknown" if row.noise is None else f"σ = {row.noise:.4g}")
    usage = ledger.usage_totals(row.id)
    if usage["calls"]:
        grid.add_row("cost", f"${usage['cost_usd']:.4f} over {int(usage['calls'])} model calls "
                     f"({int(usage['input_tokens'])} in / {int(usage['output_tokens'])} out tokens,"
                     f" {int(usage['cache_read_tokens'])} cache-read,"
                     f" {int(usage['cache_write_tokens'])} cache-write)")
    for e in (e for e in exps if e.status in ("proposed", "running")):
        if died:
            grid.add_row("left", f"{e.id} was {e.status} when the process died (it will be marked"
                         f" interrupted and re-run on resume): {e.hypothesis}")
        else:
            grid.add_row("now", f"{e.id} {e.status}: {e.hypothesis}")
    console.print(grid)
    table = _table(exps[-10:], row.metric)
    table.title = "latest experiments"
    console.print(table)


def _died(row: SessionRow, lock: SessionLock) -> str | None:
    """The state to show when no live process holds the session but it did not stop cleanly:
    a lock left behind (kill -9, a crash of the machine), or a ledger still saying running."""
    dead = lock.recorded_pid()
    if dead is not None:
        return f"stopped (process {dead} died; run `autoresearch run` to resume)"
    if row.status in ("running", "created"):
        return "stopped (its process is gone; run `autoresearch run` to resume)"
    return None


def _table(exps: list[ExperimentRow], metric: str) -> Table:
    table = Table("id", "status", metric, "delta", "cost", "hypothesis")
    for e in exps:
        style = STATUS_STYLE.get(e.status, "")
        table.add_row(
            e.id, f"[{style}]{e.status}[/]" if style else e.status,
            "" if e.objective is None else f"{e.objective:.6g}",
            "" if e.delta is None else f"{e.delta:+.4g}",
            f"${e.cost_usd:.3f}" if e.cost_usd else "", e.hypothesis[:60],
        )
    return table


def render_results(root: Path, tag: str, console: Console) -> None:
    ledger, row = open_session(root, tag)
    exps = ledger.experiments(row.id)
    table = Table("id", "commit", "status", row.metric, "delta", "runs", "cost", "hypothesis",
                  title=f"session {tag}")
    for e in exps:
        runs = [r for r in ledger.runs(e.id) if r.role == "candidate"]
        style = STATUS_STYLE.get(e.status, "")
        table.add_row(
            e.id, (e.commit_sha or "")[:7], f"[{style}]{e.status}[/]" if style else e.status,
            "" if e.objective is None else f"{e.objective:.6g}",
            "" if e.delta is None else f"{e.delta:+.4g}", str(len(runs)),
            f"${e.cost_usd:.3f}" if e.cost_usd else "", e.hypothesis[:70],
        )
    console.print(table)


def collect_results(root: Path, tag: str) -> dict[str, Any]:
    ledger, row = open_session(root, tag)
    exps = ledger.experiments(row.id)
    out_exps = []
    for e in exps:
        runs = ledger.runs(e.id)
        out_exps.append({
            "id": e.id, "seq": e.seq, "kind": e.kind, "status": e.status,
            "hypothesis": e.hypothesis, "rationale": e.rationale, "proposer": e.proposer,
            "params": e.params, "commit": e.commit_sha, "parent": e.parent_commit,
            "objective": e.objective, "incumbent_objective": e.incumbent_objective,
            "delta": e.delta, "threshold": e.threshold, "reason": e.decision_reason,
            "guards": e.guards, "files": e.files, "lines_added": e.lines_added,
            "lines_removed": e.lines_removed, "attempts": e.attempts, "cost_usd": e.cost_usd,
            "started_at": e.started_at, "finished_at": e.finished_at,
            "runs": [{"role": r.role, "index": r.idx, "attempt": r.attempt,
                      "commit": r.commit_sha, "status": r.status, "exit_code": r.exit_code,
                      "duration_s": r.duration_s, "metrics": r.metrics, "log": r.log_path,
                      "fingerprint": r.fingerprint_key} for r in runs],
        })
    return {
        "session": {"tag": row.tag, "branch": row.branch, "base_commit": row.base_commit,
                    "metric": row.metric, "direction": row.direction, "status": row.status,
                    "noise": row.noise, "proposer": row.proposer, "created_at": row.created_at,
                    "updated_at": row.updated_at, "usage": ledger.usage_totals(row.id)},
        "experiments": out_exps,
    }
