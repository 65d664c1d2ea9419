"""What `check` says about the dry run's output: how long it took against the budget, the
metrics it printed (each with the line it was read from, and what is missing), a metric
printed several times or in several units, and, when the objective was not found, the numbers
the output did print with the [metric] lines that would read the likeliest one.
"""

from __future__ import annotations

import difflib
import math

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from autoresearch.config import CONFIG_NAME, Config
from autoresearch.metric_discovery import (
    Candidate,
    candidates,
    likely_objective,
    printed_units,
    required_unit,
    source_line,
)
from autoresearch.metrics import parse_metrics, printed_values
from autoresearch.results_tsv import memory_advice
from autoresearch.timeouts import describe, needed_timeout


def report_needs(config: Config, duration_s: float, text: str, console: Console) -> None:
    """What the dry run says about the timeout and results.tsv's memory column."""
    verify = config.verify
    overhead = duration_s - verify.budget_seconds
    if overhead > 0:
        console.print(f"  {duration_s:.1f} s = the {verify.budget_seconds:g} s budget + "
                      f"{overhead:.1f} s of startup and evaluation; "
                      + escape(describe(verify, overhead)))
    else:
        console.print("  " + escape(describe(verify, overhead)))
    needed = needed_timeout(verify.budget_seconds, overhead)
    if verify.timeout_seconds is not None and overhead > 0 and verify.timeout_seconds < needed:
        console.print(f"[yellow]![/] timeout_seconds = {verify.timeout_seconds:g} leaves "
                      f"{verify.timeout_seconds - verify.budget_seconds:.0f} s beyond the budget "
                      f"where this run needed {overhead:.0f} s, and a busy machine several times "
                      f"more: raise it to {needed:.0f} or remove it (the timeout is then sized "
                      "from the baseline's runs)")
    printed = parse_metrics(text, config.metric.format, config.metric.patterns or None)
    values = printed_values(text, config.metric.format, config.metric.name,
                            config.metric.patterns or None)
    if len(values) > 1:
        units = _units_printed(config, text, len(values))
        shown = ", ".join(f"{v:.6g}{f' {u}' if u else ''}"
                          for v, u in zip(values[-3:], units[-3:], strict=True))
        console.print(f"  {escape(config.metric.name)} was printed {len(values)} times "
                      f"({'… ' if len(values) > 3 else ''}{escape(shown)}): the last is the one "
                      "used, as for every metric (a final summary after running values)")
        if len(set(units)) > 1:
            console.print(f"[yellow]![/] {escape(_mixed_units(config.metric.name, units))}",
                          soft_wrap=True)
    advice = memory_advice(printed, config.recorded_metrics(), config.metric.memory)
    if advice:
        console.print(f"[yellow]![/] {escape(advice)}")


def _units_printed(config: Config, text: str, count: int) -> list[str | None]:
    """The unit printed after each of the objective's `count` values (None: none); only a
    regex reads a number that has text after it, so the other formats' values carry none."""
    pattern = config.metric.patterns.get(config.metric.name)
    units = printed_units(text, pattern) if config.metric.format == "regex" and pattern else []
    return units if len(units) == count else [None] * count


def _mixed_units(name: str, units: list[str | None]) -> str:
    """The warning for a metric printed in several units: 5 s and 120 ms are read as 5 and 120."""
    seen = ", ".join(dict.fromkeys(u or "no unit" for u in units))
    return (f"{name} was printed in different units ({seen}): its values are compared as "
            "plain numbers, as if in one unit (1.4 s after 908 ms reads as 1.4, far below 908); "
            "make the command print one unit (a benchmark tool's option, e.g. hyperfine "
            "--time-unit), or put the unit in its pattern under [metric] patterns, after the "
            "number's group (`…)[ \\t]*ms`), so that a value in another unit is a crash "
            "rather than a wrong number")


def suggest_metric(config: Config, console: Console, text: str, log: str) -> None:
    """The numbers the output printed last, and the [metric] lines that read the likeliest;
    `log` is where the whole output is kept, as the user can open it from where they stand."""
    found = candidates(text)
    if not found:
        return
    table = Table("name", "value", "format", "printed as", title="the numbers the command "
                  "printed last", title_justify="left")
    for c in found:
        table.add_row(c.name, f"{c.value:g}", c.format, escape(c.line))
    console.print(table)
    best = _closest(config.metric.name, found)
    if _printed_in_another_unit(config, best, console):
        return
    console.print(f"[yellow]→[/] to make {escape(best.name)} the objective, set under \\[metric] "
                  "in autoresearch.toml:")
    for line in best.toml_lines():
        console.print(f"    {escape(line)}", soft_wrap=True)  # copied as is: never wrapped
    console.print(f"  (the whole output is in {escape(log)}: `autoresearch init "
                  "--from-log` reads it too)", soft_wrap=True)


def _printed_in_another_unit(config: Config, best: Candidate, console: Console) -> bool:
    """Say so when the objective was printed, but in another unit than its pattern requires
    (908.4 ms in the log init read, 1.405 s now): a pattern for the new unit is no fix."""
    metric = config.metric
    wanted = required_unit(metric.patterns.get(metric.name, "")) if metric.format == "regex" \
        else None
    if best.name != metric.name or wanted is None or best.unit == wanted:
        return False
    console.print(f"[yellow]→[/] {escape(metric.name)} was printed in {escape(best.unit or 'no unit')} "
                  f"({escape(best.line)}), but its pattern reads it only in {escape(wanted)}: the "
                  "command changed its unit (as tools that pick it by the value's size do), and a "
                  "value in another unit is no number to compare with the others; make the "
                  f"command print {escape(wanted)} always (e.g. hyperfine --time-unit)",
                  soft_wrap=True)
    return True


def _closest(name: str, found: list[Candidate]) -> Candidate:
    """The candidate the config most likely meant: the nearest name, else the likeliest
    objective (a validation loss or accuracy first)."""
    near = difflib.get_close_matches(name, [c.name for c in found], n=1, cutoff=0.5)
    if near:
        return next(c for c in found if c.name == near[0])
    return likely_objective(found)


def metrics_table(config: Config, console: Console, text: str,
                   metrics: dict[str, float], *, failed: bool = False) -> list[str]:
    """Each recorded metric's parsed value, and the line it was read from; then a ✗ line for
    each other metric that is missing or not finite (the objective's is the dry run's own ✗).
    `failed`: the command exited non-zero or timed out, so what it did not print is that
    failure's doing, not a problem of its own (a crash showed under five more ✗ lines)."""
    problems: list[str] = []
    table = Table("metric", "value", "role", "read from")
    for name in config.recorded_metrics():
        value = metrics.get(name)
        role = ("objective" if name == config.metric.name else
                "held-out" if name in config.metric.heldout else "recorded")
        shown = "[red]missing[/]" if value is None else f"{value:.6g}"
        line = None if value is None else source_line(
            text, config.metric.format, name, config.metric.patterns.get(name))
        table.add_row(escape(name), shown, role, escape(line or ""))
    console.print(table)
    if failed:
        if len(metrics) < len(config.recorded_metrics()):
            console.print("  (what is missing above is the failed run's doing: fix that first)")
        return problems
    for problem in config.guards_missing_from(metrics):
        problems.append(problem)
        fix = ("print it, or fix the name" if problem.endswith("not in the output") else
               "the unchanged code must print a finite value")
        console.print(f"[red]✗[/] {escape(problem)} — {fix}: a guard whose metric is missing "
                      "or not finite fails every candidate, so each would-be keep would be "
                      "discarded"
                      f"\n  where: {CONFIG_NAME} → {escape(problem.split(':', 1)[0])}")
    for broken in config.guards_broken_by(metrics):
        # A warning, not a failure: a change meant to bring it within bounds can still pass.
        at, what = broken.split(": ", 1)
        console.print(f"[yellow]![/] {escape(what)}: every candidate that keeps it fails this "
                      "guard, so each such would-be keep would be discarded"
                      f"\n  where: {CONFIG_NAME} → {escape(at)}"
                      "\n  fix:   move the bound past the unchanged code's value, or make the "
                      "code meet it first", soft_wrap=True)
    guarded = {g.metric for g in config.guards}
    for name in config.recorded_metrics():
        value = metrics.get(name)
        if name == config.metric.name or name in guarded:  # said above, when it is a problem
            continue
        if value is None:
            problem = f"metric {name!r} ({_declared_at(config, name)}) is not in the output"
            fix = "print it, or fix the name"
        elif not math.isfinite(value):
            problem = f"metric {name!r} ({_declared_at(config, name)}) is {value}"
            fix = "the command printed a value that is not a number it can record"
        else:
            continue
        problems.append(problem)
        console.print(f"[red]✗[/] {escape(problem)} — {fix}")
    return problems


def _declared_at(config: Config, name: str) -> str:
    """Where in autoresearch.toml a recorded metric is asked for (metric.record, guards[0])."""
    metric = config.metric
    if name in metric.heldout:
        return "metric.heldout"
    if name in metric.record:
        return "metric.record"
    if name == metric.memory:
        return "metric.memory"
    return next(f"guards[{i}]" for i, g in enumerate(config.guards) if g.metric == name)
