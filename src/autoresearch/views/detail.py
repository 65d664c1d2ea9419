"""Everything about one experiment for a close look: diff, decision, runs, log tail, environment,
and the review gate's review of it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from autoresearch.gitops import commit_exists
from autoresearch.gitops.history import show_commit
from autoresearch.gitops.runner import GitError
from autoresearch.ledger import Ledger, RunRow
from autoresearch.runner import log_tail
from autoresearch.unicode_controls import bidi_warning, reveal_bidi
from autoresearch.views.review import ReviewView, experiment_reviews
from autoresearch.views.safe_console import terminal_safe
from autoresearch.views.summary import ExperimentView, clean_json, experiment_view

LOG_TAIL_BYTES = 12_000


@dataclass(frozen=True)
class RunView:
    role: str
    idx: int
    attempt: int
    status: str
    exit_code: int | None
    duration_s: float | None
    metrics: dict[str, float]
    log_path: str | None
    fingerprint_key: str | None


@dataclass(frozen=True)
class ExperimentDetail:
    experiment: ExperimentView
    session_tag: str
    diff: str  # its bidirectional controls shown as markers (⟨U+202E⟩), which reorder nothing
    diff_note: str
    diff_warning: str  # what `bidi_warning` says of the diff: empty when it holds none
    runs: list[RunView]
    log_tail: str
    log_path: str | None
    fingerprint: dict[str, Any] | None
    rationale: str
    guards: list[dict[str, Any]]
    # The review gate's reviews of this would-be keep, oldest first (the last one decided;
    # usually there is one). Empty when the gate did not review it.
    reviews: list[ReviewView]
    # Its model calls: calls, input/output/cache tokens and cost_usd (as `usage_totals`).
    usage: dict[str, float]


def _resolve_log(repo: Path, raw: str | None) -> Path | None:
    if not raw:
        return None
    path = Path(raw)
    return path if path.is_absolute() else repo / path


def _tail_run(runs: list[RunRow]) -> RunRow | None:
    """The run whose log explains the verdict: the last candidate run, else the last run."""
    with_logs = [r for r in runs if r.log_path]
    candidates = [r for r in with_logs if r.role == "candidate"]
    if candidates:
        # A failed run says more than a successful one when there are several.
        failed = [r for r in candidates if r.status not in ("ok", "success", "done")]
        return (failed or candidates)[-1]
    return with_logs[-1] if with_logs else None


def experiment_detail(ledger: Ledger, repo: Path, exp_id: str) -> ExperimentDetail | None:
    exp = ledger.experiment(exp_id)
    if exp is None:
        return None
    session = next((s for s in ledger.sessions() if s.id == exp.session_id), None)
    runs = ledger.runs(exp_id)
    view = experiment_view(exp, runs, session.metric if session else "",
                           session.direction if session else "minimize")

    diff, note = "", ""
    if exp.kind == "baseline":
        note = (f"The baseline measures the code as it was when the session started "
                f"({(exp.commit_sha or (session.base_commit if session else ''))[:12]}); "
                "it changes nothing.")
    elif not exp.commit_sha:
        note = "This experiment never produced a commit (it was rejected or failed before it)."
    elif not commit_exists(repo, exp.commit_sha):
        note = (f"Commit {exp.commit_sha[:12]} is no longer in the repository "
                "(its ref was deleted or garbage-collected).")
    else:
        try:
            diff = show_commit(repo, exp.commit_sha)
        except GitError as exc:
            note = exc.what
    # A repository file may hold bidirectional overrides (a change may keep the ones a file had):
    # shown as they are, they make the code read differently from how it runs ("Trojan Source").
    warning, diff = bidi_warning(diff), reveal_bidi(diff)

    tail_run = _tail_run(runs)
    log_path = _resolve_log(repo, tail_run.log_path) if tail_run else None
    # The command's own output: its colour codes, title and hyperlink sequences and bidi
    # overrides are no text in any view (the dashboard would show `[31m`, or reorder a line).
    tail = terminal_safe(log_tail(log_path, LOG_TAIL_BYTES)) if log_path else ""
    if log_path and not log_path.is_file():
        tail = f"(log file {log_path} is missing)"
    fp_key = next((r.fingerprint_key for r in runs if r.fingerprint_key), None) or (
        session.fingerprint_key if session else None)
    return ExperimentDetail(
        experiment=view,
        session_tag=session.tag if session else "",
        diff=diff,
        diff_note=note,
        diff_warning=warning,
        runs=[RunView(r.role, r.idx, r.attempt, r.status, r.exit_code, r.duration_s,
                      dict(r.metrics), r.log_path, r.fingerprint_key) for r in runs],
        log_tail=tail,
        log_path=str(log_path) if log_path else None,
        fingerprint=ledger.fingerprint(fp_key) if fp_key else None,
        rationale=exp.rationale,
        guards=list(exp.guards),
        reviews=experiment_reviews(ledger, exp_id),
        usage=ledger.experiment_usage(exp_id),
    )


def detail_to_json(detail: ExperimentDetail) -> dict[str, Any]:
    data: dict[str, Any] = clean_json(asdict(detail))
    return data
