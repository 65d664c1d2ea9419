"""The session in the terminal: `status`, `results`, `show ID`, and the summary `run` ends with.

Every number here comes from the shared read model (views.summary.build_view), in the words and
the sign convention the dashboard and the report use: counts as "7 kept, 17 discarded" (the
baseline is never a keep), improvement positive = better with the metric's own Δ beside it, the
rate per hour of running. Hypotheses are shown whole, wrapped, up to a size no normal one reaches
(`bounded_text`: a longer one shows its head and says how much more there is); `show ID` prints
everything about one experiment, the review gate's review of it included, and `show ID --full`
its hypothesis, rationale and decision of any length.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from autoresearch.display import STATUS_STYLE
from autoresearch.ledger import Ledger, SessionRow
from autoresearch.ledger.activity import STOP_EVENT
from autoresearch.ledger.integrity import tampered_mark
from autoresearch.state import SessionLock, StatePaths
from autoresearch.views.bounded_text import bounded
from autoresearch.views.confidence import Confidence
from autoresearch.views.detail import experiment_detail
from autoresearch.views.format import (
    OPEN_STATUSES,
    fmt_counts,
    fmt_duration,
    fmt_experiments,
    fmt_improvement,
    fmt_rate,
    fmt_signed,
    fmt_usd,
    fmt_value,
)
from autoresearch.views.review import (
    MEANING,
    ReviewView,
    finding_meta,
    gate_tally,
    mark_headline,
)
from autoresearch.views.summary import (
    ExperimentView,
    SessionSummary,
    SessionView,
    build_view,
    open_ledger,
    resolve_session,
)

LATEST = 10


def _status_cell(e: ExperimentView) -> str:
    shown = e.shown_status
    style = STATUS_STYLE.get(e.status, "") if shown != "baseline" else "cyan"
    return f"[{style}]{shown}[/]" if style else shown


def experiments_table(rows: list[ExperimentView], metric: str, title: str = "") -> Table:
    """One entry per experiment: its numbers on the first line, the hypothesis below (wrapped to
    the terminal; whole unless it is over `bounded`'s size), so every line stays readable at any
    width."""
    table = Table.grid(padding=(0, 2))
    table.title = title or None
    table.add_column(no_wrap=True, style="bold")
    table.add_column(overflow="fold")
    metric = escape(metric)  # a name from the config: `acc[top1]` is text, not markup
    for e in rows:
        numbers = [_status_cell(e), f"{metric} {fmt_value(e.objective)}"]
        if e.improvement is not None:
            numbers.append(f"improvement {fmt_signed(e.improvement)} (Δ {fmt_signed(e.delta)})")
        numbers.append(f"{e.runs} run{'s' * (e.runs != 1)}")
        if e.cost_usd:
            numbers.append(f"${e.cost_usd:.3f}")
        if e.review is not None:
            style = "bold red" if e.review.blocked else "dim"
            numbers.append(f"[{style}]{escape(mark_headline(e.review))}[/]")
        table.add_row(e.id, "  ".join(numbers) + "\n" + escape(bounded(e.hypothesis, e.id) or "—"))
    return table


def summary_rows(s: SessionSummary) -> list[tuple[str, str]]:
    """The lines every terminal summary shares (status, the end of `run`). Rich markup: every
    name and hypothesis is escaped."""
    metric = escape(s.metric)
    rows = [("experiments", f"{fmt_experiments(s.counts)}: {', '.join(fmt_counts(s.counts, s.process_gone))}"
             + (f" · {fmt_rate(s.experiments_per_hour)}" if s.experiments_per_hour else ""))]
    if s.baseline is not None:
        rows.append(("baseline", f"{metric} = {fmt_value(s.baseline)} "
                     f"({s.baseline_runs} run{'s' * (s.baseline_runs != 1)})"))
    elif s.baseline_id is not None:
        rows.append(("baseline", f"not measured yet ({s.baseline_id} {_baseline_attempt(s)})"))
    if s.best is not None and s.best_id is not None and s.best_id != s.baseline_id:
        rows.append(("best", f"{metric} = {fmt_value(s.best)} at {s.best_id}: "
                     f"{escape(bounded(s.best_hypothesis.splitlines()[0], s.best_id) if s.best_hypothesis else '')}"))
        rows.append(("improvement", escape(fmt_improvement(
            s.improvement, s.improvement_pct, s.best_delta, s.metric, s.doubt))))
    elif s.baseline is not None:
        rows.append(("best", "the baseline (nothing kept yet)"))
    if s.verified:  # the headline, re-measured when the session ended (headline.py)
        rows.append(("verified", escape(s.verified)))
    elif (not s.live and not s.headline_off and s.best_id is not None
          and s.best_id != s.baseline_id):
        # Stopped before its verification, or a time limit left no room for it.
        rows.append(("verified", "not yet: `autoresearch report --verify` re-measures best vs "
                     "baseline in interleaved pairs"))
    return rows


def _baseline_attempt(s: SessionSummary) -> str:
    """What became of the baseline attempt that has no figure, as the ledger has it: "did not
    pass" only when it ended failing, never while it runs or after it was cut short."""
    if s.baseline_status in OPEN_STATUSES:
        if s.live:
            return "is still running"
        # The ledger says running, but no process holds the session: killed, machine rebooted.
        return "was left open by a process that died; a resume runs it again"
    if s.baseline_status == "interrupted":
        return "was interrupted; a resume runs it again"
    return "did not pass"


def render_summary(view: SessionView, console: Console) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for name, text in summary_rows(view.summary):
        grid.add_row(name, text)
    conf = view.confidence
    if conf.level != "unknown" or conf.label != "—":
        grid.add_row("confidence", escape(confidence_text(conf)))
    console.print(grid)


def confidence_text(conf: Confidence) -> str:
    """The confidence row: the figure, its colour and what σ it divides by; or, before anything
    was kept, only that there is nothing to compare (no figure, so no colour and no σ)."""
    if not conf.compared:  # the "best" row above says why: the baseline, nothing kept yet
        return conf.label
    return f"{conf.label} ({conf.level})" + (f", {conf.noise_basis}" if conf.noise_basis else "")


def _state(view: SessionView, root: Path, row: SessionRow) -> str:
    paths = StatePaths(root, row.tag)
    lock = SessionLock(paths.lock)
    pid = lock.live_holder()
    if pid:
        return f"running (pid {pid})"
    if tampered_mark(paths.ledger).exists():
        # `run` refuses this ledger until it is recovered: "to resume" would send the user there
        # for nothing. What `run` prints is the recovery.
        return ("stopped: a session found this ledger changed by another process, and `run` "
                "refuses it until it is recovered (`autoresearch run` prints how)")
    dead = lock.recorded_pid()
    if dead is not None:
        return f"stopped (process {dead} died; run `autoresearch run` to resume)"
    if view.summary.process_gone:
        return "stopped (its process is gone; run `autoresearch run` to resume)"
    return row.status


def render_status(root: Path, tag: str, console: Console) -> None:
    ledger, row = _open(root, tag)
    try:
        view = build_view(ledger, row)
        usage = ledger.usage_totals(row.id)
        stops = ledger.events(row.id, kind=STOP_EVENT)
    finally:
        ledger.close()
    s = view.summary
    state = _state(view, root, row)
    if stops and state == row.status:  # not after a kill: that run recorded no stop
        # Why the last run stopped, as it said it (a spending limit, the -n count, Ctrl-C).
        state += f" · stopped: {escape(stops[-1]['message'])}"
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("session", escape(f"{s.tag} on {s.branch} (base {s.base_commit[:10]})"))
    grid.add_row("state", state + f" · {fmt_duration(s.elapsed_s)} elapsed")
    for name, text in summary_rows(s):
        grid.add_row(name, text)
    grid.add_row("confidence", escape(confidence_text(view.confidence)))
    grid.add_row("noise", "unknown" if s.noise is None else
                 f"σ = {s.noise:.4g} (the keep/discard rule's pooled σ)")
    if usage["calls"]:
        grid.add_row("cost", escape(unreported_cost(usage) or (
                     f"${usage['cost_usd']:.4f} over {int(usage['calls'])} model calls "
                     f"({int(usage['input_tokens'])} in / {int(usage['output_tokens'])} out tokens,"
                     f" {int(usage['cache_read_tokens'])} cache-read,"
                     f" {int(usage['cache_write_tokens'])} cache-write)"
                     + (f" of the {fmt_usd(s.max_usd)} limit ([limits] max_usd)"
                        if s.max_usd is not None and s.compute_usd is None else ""))))
    if s.compute_usd is not None:
        grid.add_row("spend", escape(fmt_usd(s.cost_usd)
                                     + (f" of {fmt_usd(s.max_usd)}" if s.max_usd is not None else "")
                                     + f": {s.spend}"))
    reviewed = gate_tally(view.experiments)
    if reviewed:
        grid.add_row("review gate", reviewed)
    running = state.startswith("running")
    for e in view.experiments:
        if e.status not in ("proposed", "running"):
            continue
        if running:
            grid.add_row("now", f"{e.id} {e.status}: {escape(bounded(e.hypothesis, e.id))}")
        else:
            # Not "re-run": the resume asks the proposer again, and tune counts the point as
            # tried (a scripted or model proposer may well propose it again).
            grid.add_row("left", f"{e.id} was {e.status} when the process died (the resume marks "
                         "it interrupted and asks the proposer again, which may or may not try "
                         f"it again): {escape(bounded(e.hypothesis, e.id))}")
    console.print(grid)
    latest = view.experiments[-LATEST:]
    what = "the only experiment" if len(latest) == 1 else f"latest {len(latest)} experiments"
    console.print(experiments_table(latest, s.metric, title=f"{what} (all: `autoresearch "
                                    "results`; one: `autoresearch show ID`)"))


def render_results(root: Path, tag: str, console: Console) -> None:
    ledger, row = _open(root, tag)
    try:
        view = build_view(ledger, row)
    finally:
        ledger.close()
    console.print(experiments_table(view.experiments, view.summary.metric,
                                    title=f"session {tag}"))
    render_summary(view, console)


_TOKEN_COUNTS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def unreported_cost(usage: Mapping[str, float]) -> str | None:
    """What to say instead of a cost when none of the model calls reported its token usage (a
    server without a `usage` object, or zeros): each was recorded as 0 tokens and $0, and a $0
    shown for a priced model reads as free when it is unknown. None when some counts are there
    (a real call always has input tokens), or there were no calls."""
    calls = int(usage.get("calls", 0))
    if not calls or any(usage.get(k) for k in _TOKEN_COUNTS):
        return None
    return (f"unknown: none of the {calls} model call{'s' * (calls != 1)} reported its token "
            "usage (the server sent none), so they are recorded as 0 tokens and $0 and [limits] "
            "max_usd cannot stop them")


def spend_line(usage: Mapping[str, float]) -> str:
    """An experiment's model calls in one line (`show`)."""
    calls = int(usage.get("calls", 0))
    if not calls:
        return "no model calls"
    if (unknown := unreported_cost(usage)) is not None:
        return unknown
    tokens = (f"{int(usage.get('input_tokens', 0)):,} in, {int(usage.get('output_tokens', 0)):,}"
              " out")
    cached = int(usage.get("cache_read_tokens", 0)) + int(usage.get("cache_write_tokens", 0))
    if cached:
        tokens += f", {cached:,} cache"
    return (f"${usage.get('cost_usd', 0.0):.4f} over {calls} model call{'s' * (calls != 1)} "
            f"({tokens} tokens)")


def experiment_id(ledger: Ledger, exp_id: str, tag: str | None) -> str:
    """An experiment id as given, or a bare sequence number (`show 3`) in the session `tag` (the
    latest one without it)."""
    text = exp_id.strip()
    if text.isdigit():
        return f"{resolve_session(ledger, tag).tag}-{int(text):04d}"
    return text


def render_experiment(root: Path, exp_id: str, console: Console, tag: str | None = None,
                      *, full: bool = False) -> None:
    """`autoresearch show ID`: one experiment whole, as the dashboard's drawer shows it; its
    hypothesis, rationale and decision cut to `bounded`'s size unless `full`."""
    from autoresearch.errors import AutoresearchError

    ledger = open_ledger(root)
    try:
        exp_id = experiment_id(ledger, exp_id, tag)
        detail = experiment_detail(ledger, root, exp_id)
        known = [] if detail else [s.tag for s in ledger.sessions()]
    finally:
        ledger.close()
    if detail is None:
        raise AutoresearchError(f"no experiment {exp_id!r}", where=str(ledger.path),
                                fix="ids look like <tag>-0007, or a bare 7 in the latest session "
                                "(--tag for another): see `autoresearch results`"
                                + (f" (sessions: {', '.join(known)})" if known else ""))
    e = detail.experiment

    def prose(text: str) -> str:
        return escape(text if full else bounded(text, e.id))

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    grid.add_row("experiment", escape(f"{e.id} of session {detail.session_tag} · ")
                 + _status_cell(e))
    grid.add_row("hypothesis", prose(e.hypothesis) or "—")
    if detail.rationale:
        grid.add_row("rationale", prose(detail.rationale))
    grid.add_row("objective", f"{fmt_value(e.objective)} over {e.runs} run"
                 f"{'s' * (e.runs != 1)}" + (f" (incumbent {fmt_value(e.incumbent_objective)})"
                                            if e.incumbent_objective is not None else ""))
    if e.delta is not None:
        grid.add_row("improvement", f"{fmt_signed(e.improvement)} (Δ {fmt_signed(e.delta)})"
                     + (f", threshold {fmt_value(e.threshold, 4)}" if e.threshold else ""))
    grid.add_row("decision", prose(e.decision_reason) or "—")
    grid.add_row("spend", escape(spend_line(detail.usage)))
    for g in detail.guards:
        grid.add_row("guard", escape(f"{g.get('guard')}: "
                                     f"{'passed' if g.get('passed') else 'FAILED'} "
                                     f"({g.get('detail', '')})"))
    grid.add_row("commit", escape((e.commit_sha or "—") + (
        f" · {e.lines_added}+ {e.lines_removed}- in {', '.join(e.files)}" if e.files else "")))
    console.print(grid)
    for review in detail.reviews:
        render_review(review, console)
    runs = Table("role", "#", "attempt", "status", "exit", "duration", "metrics", "log",
                 title="runs")
    for r in detail.runs:
        runs.add_row(r.role, str(r.idx), str(r.attempt), r.status,
                     "" if r.exit_code is None else str(r.exit_code), fmt_duration(r.duration_s),
                     Text(", ".join(f"{k}={v:.6g}" for k, v in sorted(r.metrics.items()))),
                     Text(r.log_path or ""))
    console.print(runs)
    # Printed as text, not as a group: a group is cut to the console's width, and in a pipe or
    # a file (`show 7 > x.diff`) every line must stay whole (in a terminal, long lines fold).
    if detail.diff or detail.diff_note:
        console.print(Text("diff", style="bold"))
        if detail.diff_warning:
            console.print(Text("! " + detail.diff_warning, style="bold yellow"))
        console.print(Text(detail.diff or detail.diff_note, overflow="fold"))
    if detail.log_tail:
        console.print(Text(f"log tail ({detail.log_path})", style="bold"))
        console.print(Text(detail.log_tail, overflow="fold"))


STYLE = {"red": "bold red", "yellow": "bold yellow", "purple": "bold magenta"}


def render_review(review: ReviewView, console: Console) -> None:
    """The review gate's review of an experiment: its headline, the findings grouped by colour
    (each whole: place, title, sources, explanation, code), failed reviewers, the cost."""
    console.print(Text(review.headline, style="bold red" if review.blocked else "bold"))
    for colour in ("red", "yellow", "purple"):
        found = review.by_colour(colour)
        if not found:
            continue
        console.print(Text(f"  {colour}: {MEANING[colour]} ({len(found)})", style=STYLE[colour]))
        for f in found:
            head = Text.assemble((f.location, "bold"), "  ", f.title)
            if f.blocking:
                head.append("  (blocked the keep)", style="bold red")
            meta = finding_meta(f)
            parts: list[Text] = [head, Text(meta, style="dim")]
            if f.body and f.body != f.title:
                parts.append(Text(f.body))
            if f.evidence.strip():
                width = len(str(f.end_line))
                parts.append(Text("\n".join(
                    f"{f.start_line + i:>{width}} │ {line}"
                    for i, line in enumerate(f.evidence.rstrip("\n").split("\n"))),
                    style="cyan"))
            # Each part as indented text, not a padded group: a group is cut to the console's
            # width, and in a pipe or a file (`show 7 | less`) every line must stay whole.
            for part in parts:
                console.print(_indented(part, 4))
    for r in review.failed:
        console.print(Text(f"  {r.name} failed: {r.note or 'no detail'} (a failed reviewer "
                           "never blocks)", style="yellow"))
    console.print(Text("  " + review.cost_line, style="dim"))


def _indented(text: Text, width: int) -> Text:
    """`text` with each of its lines indented by `width` spaces (styles kept)."""
    pad = Text(" " * width)
    return Text("\n").join(pad + line for line in text.split("\n"))


def _open(root: Path, tag: str) -> tuple[Ledger, SessionRow]:
    ledger = open_ledger(root)
    try:
        return ledger, resolve_session(ledger, tag)
    except BaseException:
        ledger.close()
        raise
