"""What a person sees while a session runs: a rich live panel on a terminal, plain lines elsewhere."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from autoresearch.unicode_controls import clean_prose
from autoresearch.views.bounded_text import PANEL_CHARS, PANEL_LINES, bounded
from autoresearch.views.format import count_key, fmt_counts, fmt_experiments, fmt_improvement
from autoresearch.views.safe_console import SafeConsole

if TYPE_CHECKING:
    from autoresearch.config import Config
    from autoresearch.history import History
    from autoresearch.resources import ThreadPlan
    from autoresearch.slots import Resources

STATUS_STYLE = {
    "keep": "bold green", "discard": "yellow", "crash": "bold red", "timeout": "red",
    "rejected": "magenta", "interrupted": "dim",
}


@dataclass
class Tally:
    """Counts and bests the display keeps up to date."""

    metric: str = ""
    direction: str = "minimize"
    counts: dict[str, int] = field(default_factory=dict)
    baseline: float | None = None
    best: float | None = None
    started: float = field(default_factory=time.time)

    def add(self, status: str) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def best_line(self) -> str:
        """Best vs baseline in the views' convention: improvement positive = better, with the
        metric's own Δ beside it (views.format.fmt_improvement)."""
        if self.best is None:
            return "best: —"
        line = f"best {self.metric} = {self.best:.6g}"
        if self.baseline is not None and self.best != self.baseline:
            delta = self.best - self.baseline
            improvement = delta if self.direction == "maximize" else -delta
            pct = 100 * improvement / abs(self.baseline) if self.baseline else None
            line += ": " + fmt_improvement(improvement, pct, delta, self.metric)
        return line

    def counts_line(self) -> str:
        """The counts in the words of every view: "the baseline + 7 candidates: 2 kept, …"."""
        if not self.total:
            return "no experiments yet"
        counts = dict(self.counts)
        counts["total"] = self.total
        counts["candidates"] = (self.total - counts.get("baseline", 0)
                                - counts.get("baseline_failed", 0))
        return f"{fmt_experiments(counts)}: {', '.join(fmt_counts(counts))}"


class Display:
    """Plain line-per-event output (CI logs, pipes); RichDisplay adds the live panel."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or SafeConsole()
        self.tally = Tally()
        self.current: str = ""
        self.run_clock: float | None = None  # when the latest run started (None: none running)
        self.run_budget: float = 0.0
        self.runs: dict[str, tuple[str, float]] = {}  # slot -> (what runs there, since when)
        self._last_summary = -1

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def message(self, text: str, style: str = "") -> None:
        self.console.print(Text(text, style=style))

    def experiment_started(self, exp_id: str, hypothesis: str) -> None:
        # The panel is a few lines, redrawn four times a second: a long hypothesis shows its
        # head there (the line `experiment_finished` prints has more).
        self.current = f"{exp_id}  " + bounded(clean_prose(hypothesis), exp_id,
                                                 chars=PANEL_CHARS, lines=PANEL_LINES)

    def run_started(self, label: str, budget_s: float, slot: str = "") -> None:
        self.current_run = label
        self.run_clock = time.time()
        self.run_budget = budget_s
        self.runs[slot] = (label, self.run_clock)

    def run_finished(self, slot: str = "") -> None:
        self.runs.pop(slot, None)
        self.run_clock = max((since for _, since in self.runs.values()), default=None)

    def experiment_finished(self, exp_id: str, status: str, objective: float | None,
                            delta: float | None, reason: str, hypothesis: str,
                            baseline: bool = False) -> None:
        self.tally.add(count_key("baseline" if baseline else "candidate", status))
        value = "" if objective is None else f" {self.tally.metric}={objective:.6g}"
        change = "" if delta is None else f" Δ{delta:+.4g}"
        shown = "baseline" if baseline and status == "keep" else status
        # The hypothesis whole (unless it is over `bounded`'s size): rich wraps it; `autoresearch
        # show ID` has everything else. Its own lines are indented, so none can pass for another
        # experiment's line. Both are cleaned here as the ledger cleans them: rich would drop an
        # OSC's BEL first, and the console's own clean-up would then take the words after it.
        hypothesis = "\n    ".join(bounded(clean_prose(hypothesis), exp_id).splitlines())
        reason = clean_prose(reason)
        self.console.print(
            Text.assemble((f"{exp_id} ", "bold"), (f"{shown:<8}", STATUS_STYLE.get(status, "")),
                          f"{value}{change}  {hypothesis}")
        )
        if reason and status != "keep":
            self.console.print(Text("    " + "\n    ".join(bounded(reason, exp_id).splitlines()),
                                    style="dim"))
        if self.tally.total % 10 == 0:
            self.summary_line()

    def summary_line(self) -> None:
        if self.tally.total == self._last_summary:
            return  # already printed for this many experiments
        self._last_summary = self.tally.total
        elapsed = (time.time() - self.tally.started) / 60
        # The minutes are this process's; the counts are the session's, resumes included.
        self.console.print(Text(
            f"— {elapsed:.1f} min in this run; the session: {self.tally.counts_line()};"
            f" {self.tally.best_line()}", style="cyan"))


class RichDisplay(Display):
    """A live panel: current experiment, elapsed vs budget, best so far, counts."""

    def __init__(self, console: Console | None = None) -> None:
        super().__init__(console)
        self._live: Live | None = None

    def start(self) -> None:
        self._live = Live(self, console=self.console, refresh_per_second=4, transient=True)
        self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __rich__(self) -> RenderableType:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", width=12)
        grid.add_column()
        # Text, not str: a str cell is rich markup, and the hypothesis and the metric's name are
        # untrusted (`[link=…]` would become a live hyperlink, a stray `[/]` an error).
        grid.add_row("now", Text(self.current or "starting"))
        budget = max(self.run_budget, 1e-9)
        for slot, (label, since) in sorted(self.runs.items()):  # one bar per slot running
            elapsed = time.time() - since
            bar = ProgressBar(total=budget, completed=min(elapsed, budget), width=30)
            grid.add_row(Text(f"{slot} {label}".strip()),
                         Group(bar, Text(f"{elapsed:5.1f} s of {budget:g} s budget")))
        grid.add_row("best", Text(self.tally.best_line()))
        grid.add_row("counts", Text(self.tally.counts_line()))
        return Panel(grid, title="autoresearch", border_style="blue")


READINESS_CHARS = 160


def shorten_readiness(text: str, limit: int = READINESS_CHARS) -> str:
    """A proposer's readiness line cut to fit the session's header (a long list of knobs), with
    a pointer to where it is shown whole."""
    if len(text) <= limit:
        return text
    cut = text.rfind(", ", 0, limit)
    return text[: cut if cut > 0 else limit] + ", … (`autoresearch check` lists them all)"


def print_resources(console: Console, config: Config, executor: object, workers: int,
                    thread_plan: ThreadPlan, shares: list[Resources]) -> None:
    """Where runs happen and what each gets (this machine's threads, or the cluster), what
    the user should know of it (crowded cores, GPUs that are not there), and the shared data
    linked into the worktrees."""
    from autoresearch.executor import elsewhere
    from autoresearch.resources import usable_cores
    from autoresearch.slots import contention, per_run_plan, unknown_gpus

    remote = elsewhere(executor)  # runs off this machine: a Ray cluster
    if remote is not None:
        console.print(Text(remote[0], style="dim"))
        warnings = [remote[1]]  # the cluster's own figure
    else:
        threads = per_run_plan(config.run, workers, thread_plan)
        console.print(Text(threads.describe() + ("; set [run] threads to choose"
                                                 if threads.why.startswith("auto") else ""),
                           style="dim"))
        warnings = [*contention(workers, shares, usable_cores()), unknown_gpus(config.run)]
    for warning in warnings:
        if isinstance(warning, str):
            console.print(Text("! " + warning, style="yellow"))
    if config.verify.share:
        console.print(Text("shared from your checkout (linked, watched): "
                           + ", ".join(config.verify.share), style="dim"))


LOG_TAIL_LINES = 30


def print_log_tail(console: Console, path: Path | str, lines: int = LOG_TAIL_LINES) -> None:
    """The end of a run's log, and where the whole log is."""
    from autoresearch.runner import log_tail

    tail = log_tail(Path(path), 16384).rstrip("\n").splitlines()[-lines:]
    # soft_wrap: a long path stays whole, to be copied.
    console.print(Text(f"last {len(tail)} lines of {path}:", style="bold"), soft_wrap=True)
    console.print(Text("\n".join(tail) if tail else "(the log is empty)", style="dim"))


def failure_line(reason: str, log_path: str | None, slot: str = "") -> str:
    """A crash's or timeout's reason as the live output says it: where it ran (`slot`, named
    when several run at once: a command that collides with itself fails in one of them) and the
    last line its command printed ("exit code 1" alone says nothing of why)."""
    from autoresearch.runner import log_tail
    from autoresearch.views.safe_console import terminal_safe

    lines = log_tail(Path(log_path), 2048).splitlines() if log_path else []
    last = next((line.strip() for line in reversed(lines) if line.strip()), "")
    where = f" in {slot}" if slot else ""
    return f"{reason}{where}" + (f": {terminal_safe(last)[:200]}" if last else "")


def show_failed_log(console: Console, history: History) -> None:
    """When a session stops on a failure (a crashed baseline, a streak of crashes), the log of
    the last failed run: the command's own words say why."""
    # The experiment the session stopped on: the last one decided. With several workers the
    # stop then ended the other slots' trials, recorded interrupted after it (they ran nothing
    # that failed).
    last = next((e for e in reversed(history.experiments) if e.status != "interrupted"), None)
    if last is None:
        return
    failed = [r for r in history.runs.get(last.id, []) if r.status in ("crash", "timeout")]
    if failed and failed[-1].log_path:
        print_log_tail(console, failed[-1].log_path)


def make_display(console: Console | None = None) -> Display:
    console = console or SafeConsole()
    return RichDisplay(console) if console.is_terminal else Display(console)
