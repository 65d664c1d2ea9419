"""`autoresearch check`: validate the contract and dry-run the verify command once.

The dry run happens in a temporary worktree at HEAD, so the user's checkout is never touched.
Each problem carries the exit code `check` ends with: 2 for anything the config must fix (a
protected file inside the scope, a knob that can't be found), else 1.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from autoresearch import gitops
from autoresearch.config import CONFIG_NAME, Config, load_config
from autoresearch.errors import AutoresearchError, ConfigError, LedgerEmptyError
from autoresearch.executor import classify
from autoresearch.metrics import format_metric_help
from autoresearch.readiness import check_preconditions, proposer_readiness
from autoresearch.runner import RunSpec, log_tail, run_command
from autoresearch.statuses import happened


class Problem(str):
    """One problem `check` found; `exit_code` is 2 when the config must change, else 1."""

    exit_code: int = 1

    @classmethod
    def of(cls, error: AutoresearchError) -> Problem:
        problem = cls(error.render())
        problem.exit_code = 2 if isinstance(error, ConfigError) else 1
        return problem


def exit_code(problems: list[str]) -> int:
    """What `check` exits with: 0 when all is well, 2 when any problem is the config's."""
    return max((getattr(p, "exit_code", 1) for p in problems), default=0)


def run_checkup(root: Path, console: Console) -> list[str]:
    """Print what was checked; returns the problems found (empty when all is well)."""
    problems: list[str] = []
    config = load_config(root / CONFIG_NAME)  # a ConfigError here is the whole answer
    console.print(f"[green]✓[/] {CONFIG_NAME} is valid: objective {config.metric.name} "
                  f"({config.metric.direction}), budget "
                  f"{config.verify.budget_seconds:g} s, " + (
                      f"timeout {config.verify.timeout_seconds:g} s"
                      if config.verify.timeout_seconds else "timeout sized from the runs"))
    try:
        files = check_preconditions(root, config)
        console.print(f"[green]✓[/] scope matches {len(files)} file(s): "
                      + escape(", ".join(files[:8])) + (" …" if len(files) > 8 else ""))
    except AutoresearchError as exc:
        problems.append(Problem.of(exc))
        console.print(f"[red]✗[/] {escape(exc.render())}")
    problems += _check_ledger(root, console)
    problems += _check_proposer(root, config, console)
    if gitops.head_commit(root) is None:
        return problems
    problems += _dry_run(root, config, console)
    if problems:
        console.print(f"[red]{len(problems)} problem(s) found[/]")
    else:
        console.print("[green]ready:[/] `autoresearch run` will start with the baseline")
    return problems


def _check_ledger(root: Path, console: Console) -> list[str]:
    """A ledger that `run` would refuse (damaged, from a newer release) is a problem here too."""
    from autoresearch.ledger import Ledger
    from autoresearch.state import StatePaths

    path = StatePaths(root, "_").ledger
    if not path.exists():
        return []
    try:
        ledger = Ledger(path, readonly=True)
    except LedgerEmptyError:
        return []
    except AutoresearchError as exc:
        console.print(f"[red]✗[/] {escape(exc.render())}")
        return [Problem.of(exc)]
    try:
        tags = [s.tag for s in ledger.sessions()]
    finally:
        ledger.close()
    console.print(f"[green]✓[/] ledger {escape(str(path.relative_to(root)))} is sound"
                  + (f": {len(tags)} session(s), latest {escape(tags[-1])}" if tags else ""))
    return []


def _check_proposer(root: Path, config: Config, console: Console) -> list[str]:
    """Load the proposer and ask it whether it can work here (tune: are there knobs?)."""
    from autoresearch.proposers.registry import load_proposer

    try:
        proposer, why = load_proposer(config)
    except AutoresearchError as exc:
        console.print(f"[red]✗[/] proposer: {escape(exc.render())}")
        return [Problem.of(exc)]
    except Exception as exc:  # noqa: BLE001 - a broken plugin must show up here, not mid-run
        console.print(f"[red]✗[/] proposer failed to load: {escape(str(exc))}")
        return [f"proposer failed to load: {exc}"]
    described = proposer.describe()
    try:
        ready = proposer_readiness(proposer, root)
    except AutoresearchError as exc:
        console.print(f"[red]✗[/] proposer {escape(proposer.name)} cannot work here: "
                      f"{escape(exc.render())}")
        return [Problem.of(exc)]
    finally:
        proposer.close()
    found = f"; {ready}" if ready else ""
    console.print(f"[green]✓[/] proposer {escape(described)} ({escape(why)}){escape(found)}")
    return []


def _report_needs(config: Config, duration_s: float, log: Path, console: Console) -> None:
    """What the dry run says about the timeout and results.tsv's memory column."""
    from autoresearch.metrics import parse_metrics
    from autoresearch.results_tsv import memory_advice
    from autoresearch.timeouts import describe, needed_timeout

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
    printed = parse_metrics(log.read_text(encoding="utf-8", errors="replace"),
                            config.metric.format, config.metric.patterns or None)
    advice = memory_advice(printed, config.recorded_metrics(), config.metric.memory)
    if advice:
        console.print(f"[yellow]![/] {escape(advice)}")


def _dry_run(root: Path, config: Config, console: Console) -> list[str]:
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="autoresearch-check-") as tmp:
        worktree = Path(tmp) / "wt"
        gitops.git(root, "worktree", "add", "--detach", "--force", str(worktree), "HEAD")
        try:
            log = Path(tmp) / "check.log"
            console.print(f"… running `{escape(config.verify.command)}` once "
                          f"(budget {config.verify.budget_seconds:g} s)")
            outcome = run_command(RunSpec(
                command=config.verify.expanded_command(), cwd=worktree, log_path=log,
                timeout_s=config.verify.timeout, budget_s=config.verify.budget_seconds,
                env=dict(config.verify.env), run_id=f"ar-check-{Path(tmp).name}",
            ))
            status, reason, objective, metrics = classify(
                config, outcome.exit_code, outcome.timed_out, outcome.interrupted, log)
            if status != "ok":
                problems.append(f"the verify command {happened(status)}: {reason}")
                console.print(f"[red]✗[/] verify command {status}: {escape(reason)}")
                if config.metric.name not in metrics:
                    console.print("    expected: " + escape(format_metric_help(
                        config.metric.format, config.metric.name,
                        config.metric.patterns.get(config.metric.name))))
                console.print(Text(log_tail(log, 2000), style="dim"))
            else:
                console.print(f"[green]✓[/] verify command ran in {outcome.duration_s:.1f} s")
                _report_needs(config, outcome.duration_s, log, console)
            table = Table("metric", "value", "role")
            for name in config.recorded_metrics():
                value = metrics.get(name)
                role = ("objective" if name == config.metric.name else
                        "held-out" if name in config.metric.heldout else "recorded")
                shown = "[red]missing[/]" if value is None else f"{value:.6g}"
                table.add_row(name, shown, role)
                if value is None and name != config.metric.name:
                    problems.append(f"metric {name} is not in the output")
                elif value is not None and not math.isfinite(value):
                    problems.append(f"metric {name} is {value}")
            console.print(table)
            if objective is not None and outcome.duration_s > config.verify.budget_seconds * 1.5 + 30:
                console.print("[yellow]![/] the run took much longer than its budget: does the "
                              "command honour AUTORESEARCH_TIME_BUDGET?")
        finally:
            gitops.remove_worktree(root, worktree)
    return problems
