"""`autoresearch results --json`: the session in machine-readable form.

It carries the read model's summary and confidence (the numbers the terminal, the dashboard and
the report show, in the same sign convention), then every experiment with every run.
"""

from __future__ import annotations

from typing import Any

from autoresearch.ledger import Ledger, SessionRow
from autoresearch.views.summary import build_view, clean_json, view_to_json


def results_json(ledger: Ledger, row: SessionRow) -> dict[str, Any]:
    """The session as `results --json` writes it, read at one moment (a running session adds
    experiments between the reads: one missing from the view was a KeyError)."""
    with ledger.snapshot():
        return _results_json(ledger, row)


def _results_json(ledger: Ledger, row: SessionRow) -> dict[str, Any]:
    view = build_view(ledger, row)
    shown = view_to_json(view)
    runs_by_exp: dict[str, list[Any]] = {}
    for r in ledger.session_runs(row.id):
        runs_by_exp.setdefault(r.experiment_id, []).append(r)
    views = {e.id: e for e in view.experiments}
    out_exps = []
    for e in ledger.experiments(row.id):
        v = views[e.id]
        out_exps.append({
            "id": e.id, "seq": e.seq, "kind": e.kind, "status": e.status,
            "shown_status": v.shown_status,
            "hypothesis": e.hypothesis, "rationale": e.rationale, "proposer": e.proposer,
            "params": e.params, "commit": e.commit_sha, "parent": e.parent_commit,
            "objective": e.objective, "incumbent_objective": e.incumbent_objective,
            "delta": e.delta, "improvement": v.improvement, "threshold": e.threshold,
            "reason": e.decision_reason, "guards": e.guards, "files": e.files,
            "lines_added": e.lines_added, "lines_removed": e.lines_removed,
            "attempts": e.attempts, "cost_usd": e.cost_usd, "worker": e.worker,
            "started_at": e.started_at, "finished_at": e.finished_at,
            "runs": [{"role": r.role, "index": r.idx, "attempt": r.attempt,
                      "commit": r.commit_sha, "status": r.status, "exit_code": r.exit_code,
                      "duration_s": r.duration_s, "metrics": r.metrics, "log": r.log_path,
                      "fingerprint": r.fingerprint_key} for r in runs_by_exp.get(e.id, [])],
        })
    data: dict[str, Any] = clean_json({
        "session": {"tag": row.tag, "branch": row.branch, "base_commit": row.base_commit,
                    "metric": row.metric, "direction": row.direction, "status": row.status,
                    "noise": row.noise, "proposer": row.proposer, "created_at": row.created_at,
                    "updated_at": row.updated_at, "usage": ledger.usage_totals(row.id)},
        "summary": shown["summary"],
        "confidence": shown["confidence"],
        "experiments": out_exps,
    })
    return data
