"""The review gate inside the engine (`[review] gate`): a would-be keep is code-reviewed first.

`judge.settle` calls `review_keep` once a would-be keep has passed the guards. The candidate
commit is reviewed against its parent (the incumbent it was measured against) by the review
package (`review/gate.py`: offline reviewers by default, the LLM reviewers too when
`[review] llm` is set). Then, whatever the review found:

- the review is recorded in the ledger against the experiment (tables `reviews` and
  `review_findings`), and an event `review` says what it found;
- its model calls are billed to the experiment like the proposer's (ledger table `usage`,
  purpose `review` or `review-verify`), each the moment it returns, through the same `Meter`
  (so a SIGTERM in the middle of a review loses none of what its calls cost), and they count
  toward the session's `max_usd`: the review's own cap is `[review] max_usd` or what is left of
  the session's budget, the smaller, and the session's limit is checked before every call;
- a blocking finding (red on a changed line; red or yellow with `gate = "yellow"`) turns the
  keep into a discard whose reason is the finding (`review gate (red): red train.py:7 ...`);
- a keep none of whose LLM passes was made (the cap or the session's limit refused each first
  call: a call's worst case, its prompt and a full reply, may cost more than the whole cap)
  stands on the offline reviewers' word, and says so: a warning, and its reason ends with
  `the LLM reviewers were not asked: <why, naming the setting to change>`.

The session checks `[review]` when it opens (`review.gate.check_gate`), so a gate that cannot
work (an unknown reviewer, LLM reviewers without a key or a model) refuses the start instead of
failing at the first keep.

A review that cannot run at all (an exception out of the review package, not one reviewer
failing, which the review already reports without blocking) does not stop the session and does
not block the keep: the keep stands, its reason says the change was kept unreviewed and why, and
an event `review_failed` records the error. The gate is a second opinion on a measured
improvement, not the verdict; a broken reviewer must not turn every improvement into a discard.

The review runs on the scheduler's thread (git and the ledger are only touched from there,
but for the billing of its model calls: each is billed from the reviewer thread that made it,
the moment it returns, and the ledger serializes writes under its lock): with several workers
the other slots' runs go on meanwhile, only the next proposals wait.
"""

from __future__ import annotations

from dataclasses import replace

from autoresearch.budget import session_spend
from autoresearch.config import ReviewConfig
from autoresearch.ledger import TrialStatus
from autoresearch.proposers.base import Meter, Usage
from autoresearch.review.budget import REVIEW_MAX_USD, CapSource
from autoresearch.review.gate import GateResult, record_gate, review_candidate
from autoresearch.review.model import GATE_FAILED
from autoresearch.session import Session
from autoresearch.trial import Trial

__all__ = ["cap_source", "review_keep", "within_budget"]


def review_keep(s: Session, trial: Trial, status: TrialStatus,
                reason: str) -> tuple[TrialStatus, str]:
    """Review a would-be keep: its (status, reason) as the gate leaves them (unchanged when the
    gate is off or the review finds nothing that blocks)."""
    config = s.config.review
    if config.gate == "off":
        return status, reason
    parent, commit = trial.parent, trial.commit
    assert commit is not None
    s.display.experiment_started(trial.id, f"reviewing {commit[:10]} before it is kept "
                                 f"(review gate {config.gate})")
    capped = within_budget(s, config)
    try:
        result = review_candidate(s.root, parent, commit, capped,
                                  proposer=s.config.proposer,
                                  label=f"{trial.id}: {trial.hypothesis}",
                                  meter=Meter(record=lambda u: trial.bill([_as_review(u)]),
                                              stop_reason=s.spend_limit_reached,
                                              deadline=s.limits.deadline),
                                  cap_source=cap_source(config, capped))
    except Exception as exc:  # noqa: BLE001 - a broken review must not end the session
        error = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
        s.event("review_failed", f"{trial.id}: the review gate could not review {commit[:10]} "
                f"({error}); the keep stands", trial.id, data={"error": error})
        s.display.message(f"warning: {trial.id}: the review gate failed ({error}); kept "
                          "unreviewed", "yellow")
        return status, f"{reason}; {GATE_FAILED} ({error})"
    _record(s, trial, result)
    if result.blocked:
        return TrialStatus.DISCARD, result.reason
    not_asked = result.review.llm_not_asked
    if not_asked is not None:
        # Kept on the offline reviewers' word alone: said now, and in the keep's reason, so no
        # view reads its "no findings" as the model's.
        s.display.message(f"warning: {trial.id}: {not_asked}", "yellow")
        return status, f"{reason}; {not_asked}"
    return status, reason


def within_budget(s: Session, config: ReviewConfig) -> ReviewConfig:
    """The review's cost cap: `[review] max_usd`, or what is left of the session's budget."""
    if s.limits.max_usd is None:
        return config
    spent = session_spend(s.ledger, s.row.id, s.config.limits.compute_usd_per_hour).total_usd
    left = max(0.0, s.limits.max_usd - spent)
    if config.max_usd is not None and config.max_usd <= left:
        return config
    return config.model_copy(update={"max_usd": left})


def cap_source(config: ReviewConfig, capped: ReviewConfig) -> CapSource:
    """Which setting the review's cap comes from: `within_budget` returns the config itself
    when `[review] max_usd` applies, a copy when what is left of `[limits] max_usd` is less."""
    if capped is config:
        return REVIEW_MAX_USD
    return CapSource("[limits] max_usd", left_of=True)


def _record(s: Session, trial: Trial, result: GateResult) -> None:
    # Its model calls were billed as they returned (the meter review_keep passed).
    review_id = record_gate(s.ledger, result, session_id=s.row.id, experiment_id=trial.id)
    review = result.review
    s.event("review", f"{trial.id}: {'blocked, ' if result.blocked else ''}{result.reason}",
            trial.id, data={"review_id": review_id, "blocked": result.blocked,
                            "red": review.count("red"), "yellow": review.count("yellow"),
                            "purple": review.count("purple"), "cost_usd": result.cost_usd})


def _as_review(usage: Usage) -> Usage:
    """A review's model call, named as such in the session's usage (its verification pass is
    `review-verify`, not to be read as the verify command)."""
    if usage.purpose == "review":
        return usage
    return replace(usage, purpose=f"review-{usage.purpose}")
