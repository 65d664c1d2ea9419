"""What a report says, gathered once: the shared session view plus the kept changes' diffs and
the review gate's reviews."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoresearch.gitops import commit_exists
from autoresearch.gitops.history import patch_of
from autoresearch.gitops.runner import GitError
from autoresearch.ledger import Ledger, SessionRow
from autoresearch.report.diff_text import diff_warning, shown_diff
from autoresearch.views.format import fmt_duration, fmt_rate, fmt_value
from autoresearch.views.noise import baseline_runs_said
from autoresearch.views.review import ReviewView, session_reviews
from autoresearch.views.summary import (
    Confidence,
    ExperimentView,
    SessionSummary,
    SessionView,
    build_view,
)


@dataclass(frozen=True)
class KeptChange:
    exp_id: str
    seq: int
    hypothesis: str
    objective: float | None
    delta: float | None          # candidate − incumbent at the time it was kept (signed)
    vs_baseline: float | None    # improvement over the baseline so far (positive = better)
    commit_sha: str | None
    files: list[str]
    lines_added: int
    lines_removed: int
    decision_reason: str
    diff: str  # its bidirectional controls shown as markers (⟨U+202E⟩), which reorder nothing
    diff_warning: str = ""  # what `bidi_warning` said of the diff: empty when it held none
    review: ReviewView | None = None  # the review gate's review of it (yellow and purple
                                      # findings are still worth a look on a kept change)


@dataclass(frozen=True)
class BlockedKeep:
    """A would-be keep the review gate turned into a discard."""

    experiment: ExperimentView
    review: ReviewView


@dataclass(frozen=True)
class ReportData:
    view: SessionView
    kept: list[KeptChange]
    environment: dict[str, Any] | None
    usage: dict[str, float]
    repo: Path
    generated_at: float
    blocked: list[BlockedKeep] = field(default_factory=list)
    reviewed: bool = False  # the review gate reviewed at least one experiment


def collect(repo: Path, ledger: Ledger, session: SessionRow) -> ReportData:
    view = build_view(ledger, session)
    baseline = view.summary.baseline
    sign = 1.0 if session.direction == "maximize" else -1.0
    reviewed_ids = [e.id for e in view.experiments if e.review is not None]
    reviews = session_reviews(ledger, session.id, reviewed_ids) if reviewed_ids else {}
    kept: list[KeptChange] = []
    for e in view.experiments:
        if e.kind == "baseline" or e.status != "keep":
            continue
        diff = ""
        if e.commit_sha and commit_exists(repo, e.commit_sha):
            try:
                diff = patch_of(repo, e.commit_sha)
            except GitError as exc:
                diff = f"(diff unavailable: {exc.what})"
        elif e.commit_sha:
            diff = f"(commit {e.commit_sha[:12]} is no longer in the repository)"
        vs_base = (sign * (e.objective - baseline)
                   if e.objective is not None and baseline is not None else None)
        kept.append(KeptChange(
            exp_id=e.id, seq=e.seq, hypothesis=e.hypothesis, objective=e.objective,
            delta=e.delta, vs_baseline=vs_base, commit_sha=e.commit_sha, files=e.files,
            lines_added=e.lines_added, lines_removed=e.lines_removed,
            decision_reason=e.decision_reason, diff=shown_diff(diff),
            diff_warning=diff_warning(diff), review=reviews.get(e.id),
        ))
    blocked = [BlockedKeep(e, reviews[e.id]) for e in view.experiments
               if e.review is not None and e.review.blocked and e.id in reviews]
    key = session.fingerprint_key or next(
        (r.fingerprint_key for r in ledger.session_runs(session.id) if r.fingerprint_key), None)
    return ReportData(
        view=view, kept=kept, environment=ledger.fingerprint(key) if key else None,
        usage=ledger.usage_totals(session.id), repo=repo, generated_at=time.time(),
        blocked=blocked, reviewed=bool(reviews),
    )


def flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested fingerprint dicts as dotted key/value rows for a table."""
    rows: list[tuple[str, str]] = []
    for key in sorted(data):
        value = data[key]
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows += flatten(value, name + ".")
        else:
            rows.append((name, "—" if value is None else str(value)))
    return rows


# Where the confidence figure would be, before anything was kept (views.confidence).
NOTHING_KEPT = ("nothing was kept, so the best is the baseline and no improvement is set against "
                "the noise yet")


def noise_sentence(conf: Confidence) -> str:
    """Both noise floors, each called what it is (the confidence figure's and the rule's)."""
    dof = f", {conf.pooled_dof} degrees of freedom" if conf.pooled_dof else ""
    pooled = f"σ = {fmt_value(conf.pooled_noise, 4)}"
    if conf.noise_source == "baseline":
        own = (f"σ = {fmt_value(conf.baseline_noise, 4)} over the baseline's {conf.noise_runs} "
               "repeated runs (the confidence figure divides by this one)")
        if conf.pooled_noise is None:
            return own
        return (f"{own}; the keep/discard rule uses the pooled {pooled} over every group of "
                f"repeated runs (the baseline's repeats and the confirmation re-runs{dof})")
    if conf.noise_source == "pooled" and conf.baseline_noise is not None:
        return (f"the pooled {pooled} over every group of repeated runs{dof}, used by both the "
                "confidence figure and the keep/discard rule (better measured than the "
                f"baseline's own σ = {fmt_value(conf.baseline_noise, 4)} over its "
                f"{conf.noise_runs} runs)")
    if conf.noise_source == "pooled":
        return (f"{baseline_runs_said(conf.noise_runs)}, so its own σ is unknown; the pooled "
                f"{pooled} of the confirmation re-runs"
                f"{dof} is used by both the confidence figure and the keep/discard rule")
    return f"not measured ({baseline_runs_said(conf.noise_runs)} and nothing was re-run)"


def elapsed_note(s: SessionSummary) -> str:
    """Beside the elapsed time: the rate per running hour, and the running time after pauses."""
    parts = [fmt_rate(s.experiments_per_hour)] if s.experiments_per_hour else []
    if s.active_s < 0.9 * s.elapsed_s:
        parts.append(f"{fmt_duration(s.active_s)} running")
    return ", ".join(parts)
