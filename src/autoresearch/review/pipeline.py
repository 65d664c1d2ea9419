"""One review from start to finish: plan, fan out, verify, aggregate.

    plan (scale rule) ─▶ offline reviewers ┐
                         LLM passes        ├─ in parallel threads ─▶ raw findings
                                           ┘
    LLM findings ─▶ anchor quotes ─▶ verification calls ─▶ confirmed
    analyzer findings + confirmed ─▶ deduplicate, rank, cap ─▶ Review

A reviewer that cannot run (its tool is missing) is listed as skipped, one that fails as
failed, with the reason; neither stops the others. What the cap stopped is said in the notes.
"""

from __future__ import annotations

import logging
import reprlib
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

from autoresearch.proposers.base import Meter
from autoresearch.review.aggregate import aggregate
from autoresearch.review.budget import Budget
from autoresearch.review.change import Change
from autoresearch.review.context import ReviewContext, ReviewSettings
from autoresearch.review.model import (
    LLM_NOT_ASKED,
    CostSummary,
    Dropped,
    RawFinding,
    Review,
    ReviewerRun,
)
from autoresearch.review.protected import withheld_note
from autoresearch.review.registry import load_reviewers, select
from autoresearch.review.reviewers.base import Reviewer, ReviewerReport, ReviewerUnavailable
from autoresearch.review.reviewers.llm import run_pass
from autoresearch.review.reviewers.tools import stop_tools
from autoresearch.review.scale import plan
from autoresearch.review.verify import verify
from autoresearch.review.workers import DaemonPool

log = logging.getLogger(__name__)

Progress = Callable[[ReviewerRun], None]
RunKind = Literal["offline", "llm"]
RunStatus = Literal["ok", "not-asked"]


@dataclass
class _Collected:
    raws: list[RawFinding] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    runs: list[ReviewerRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _timed(fn: Callable[[], ReviewerReport]) -> tuple[ReviewerReport | BaseException, float]:
    start = time.perf_counter()
    try:
        return fn(), time.perf_counter() - start
    except Exception as exc:  # one reviewer's failure is reported, never the review's end
        log.debug("reviewer failed", exc_info=True)
        return exc, time.perf_counter() - start


def run_review(change: Change, settings: ReviewSettings, *, known: Collection[str] = (),
               progress: Progress | None = None,
               reviewers: dict[str, Reviewer] | None = None,
               meter: Meter | None = None) -> Review:
    """Review `change`. With a `meter`, each model call is billed through it as it returns and
    its limit is checked before each call (budget.py); the Review's usage lists them all the
    same, for its own record."""
    started_at = time.time()
    t0 = time.perf_counter()
    available = reviewers if reviewers is not None else load_reviewers()
    if settings.reviewers:
        chosen = select(available, settings.reviewers, "--reviewers / [review] reviewers")
    else:
        chosen = list(available.values())
    budget = Budget(settings.max_usd, meter, settings.max_usd_source)
    ctx = ReviewContext(change, settings, budget)
    collected = _Collected()
    if settings.llm is not None and ctx.withheld:
        collected.notes.append(withheld_note(ctx.withheld))
    try:
        the_plan = plan(ctx, chosen, named=bool(settings.reviewers))
        collected.runs += the_plan.skipped
        tasks: list[tuple[str, RunKind, Callable[[], ReviewerReport]]] = [
            (r.name, "offline", partial(r.review, ctx)) for r in the_plan.offline]
        tasks += [(p.name, "llm", partial(run_pass, ctx, p.reviewers, p.files))
                  for p in the_plan.passes]
        pool = DaemonPool(settings.parallel, "reviewer")
        finished = False
        try:
            futures: list[tuple[str, RunKind, Future[tuple[ReviewerReport | BaseException, float]]]]
            futures = [(name, kind, pool.submit(partial(_timed, fn))) for name, kind, fn in tasks]
            for name, kind, future in futures:
                outcome, seconds = future.result()
                run = _record(name, kind, outcome, seconds, collected)
                collected.runs.append(run)
                if progress is not None:
                    progress(run)
            finished = True
        finally:
            # On Ctrl-C, do not wait for a model call that may take minutes: drop what has not
            # started and let the caller exit (the workers are daemon threads: workers.py); the
            # analyzers are processes, which would outlive it: they are killed.
            if not finished:
                pool.cancel()
                stop_tools()
        llm_raw = [f for f in collected.raws if f.needs_verification]
        confirmed: list[RawFinding] = []
        if llm_raw:
            start = time.perf_counter()
            checked = verify(ctx, llm_raw)
            confirmed = checked.confirmed
            collected.dropped += checked.dropped
            run = ReviewerRun(
                "verify", "verify", "failed" if checked.failures else "ok",
                time.perf_counter() - start, len(confirmed),
                note=f"{len(llm_raw)} LLM finding(s): {len(confirmed)} confirmed, "
                f"{len(checked.dropped)} dropped in {checked.calls} call(s)"
                + ("; " + "; ".join(checked.failures) if checked.failures else ""))
            collected.runs.append(run)
            if progress is not None:
                progress(run)
        offline_raw = [f for f in collected.raws if not f.needs_verification]
        findings = aggregate([*offline_raw, *confirmed], change,
                             inline_cap=settings.inline_cap, known=known)
        cap_note = _not_asked_note(collected.runs, budget) or budget.note()
        notes = [*change.notes, *collected.notes, *([cap_note] if cap_note else [])]
        if settings.llm is not None:  # a model with no price costs $0 to the cap: said
            notes += settings.llm.unpriced(u.model for u in budget.usage)
        if settings.llm_note:
            notes.insert(0, settings.llm_note)
        return Review(
            subject=change.subject, findings=tuple(findings),
            dropped=tuple(collected.dropped), reviewers=tuple(collected.runs),
            usage=tuple(budget.usage),
            cost=CostSummary.of(budget.usage, settings.max_usd, budget.capped),
            scale=the_plan.description, files=len(change.files),
            lines_added=change.lines_added, lines_removed=change.lines_removed,
            started_at=started_at, duration_s=time.perf_counter() - t0, notes=tuple(notes))
    finally:
        ctx.close()


def _not_asked_note(runs: Sequence[ReviewerRun], budget: Budget) -> str | None:
    """ "the LLM reviewers were not asked: <why>" when LLM passes were due and the cap (or a
    session's limit) refused the first call of every one: the review's "no findings" are then
    the offline reviewers' alone, and must not read as the model's."""
    due = [r for r in runs if r.kind == "llm" and r.status != "skipped"]
    if not due or any(r.status != "not-asked" for r in due) or not budget.refusals:
        return None
    return f"{LLM_NOT_ASKED}: {budget.refusals[0].reason}"


def _record(name: str, run_kind: RunKind, outcome: object, seconds: float,
            collected: _Collected) -> ReviewerRun:
    if isinstance(outcome, ReviewerUnavailable):
        return ReviewerRun(name, run_kind, "skipped", seconds, note=str(outcome))
    if isinstance(outcome, BaseException):
        message = str(outcome) or type(outcome).__name__
        return ReviewerRun(name, run_kind, "failed", seconds, note=message)
    problem = report_problem(outcome)
    if problem is not None:  # a plugin's mistake: that reviewer failed, the others stand
        return ReviewerRun(name, run_kind, "failed", seconds, note=problem)
    assert isinstance(outcome, ReviewerReport)
    collected.raws += outcome.findings
    collected.dropped += outcome.dropped
    not_asked = [n for n in outcome.notes if n.startswith("not asked")]
    status: RunStatus = "not-asked" if not_asked and not outcome.findings else "ok"
    note = "; ".join([*not_asked, *[n for n in outcome.notes if not n.startswith("not asked")]])
    return ReviewerRun(name, run_kind, status, seconds, len(outcome.findings), note=note)


def report_problem(outcome: object) -> str | None:
    """What is wrong with what a reviewer's review() returned (None: a usable ReviewerReport).
    A plugin may return anything; what it returned is checked before anything reads it, so a
    mistake fails that reviewer with its reason instead of the whole review with a traceback."""
    must = ("review(ctx) must return autoresearch.review.reviewers.base.ReviewerReport("
            "findings=[RawFinding(...), ...])")
    if not isinstance(outcome, ReviewerReport):
        return f"review() returned {_shown(outcome)}, not a ReviewerReport: {must}"
    for field_name, kind in (("findings", RawFinding), ("dropped", Dropped), ("notes", str)):
        items = getattr(outcome, field_name)
        if not isinstance(items, list):
            return (f"review() returned a ReviewerReport whose {field_name} is "
                    f"{_shown(items)}, not a list: {must}")
        wrong = next((i for i, item in enumerate(items) if not isinstance(item, kind)), None)
        if wrong is not None:
            return (f"review() returned a ReviewerReport whose {field_name}[{wrong}] is "
                    f"{_shown(items[wrong])}, not a {kind.__name__}: {must}")
    return None


def _shown(value: object) -> str:
    """A returned value in brief: its type, and its repr when that says more."""
    text = reprlib.repr(value)
    kind = type(value).__name__
    return text if text in ("None", "True", "False") else f"{kind} {text}"
