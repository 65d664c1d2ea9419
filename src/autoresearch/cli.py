"""The `autoresearch` command line: init, check, run, status, results (+ dashboard, report, finalize)."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.text import Text

from autoresearch import __version__
from autoresearch.cli_options import ExecutorOpt, RayAddressOpt, RepoOpt, parse_duration
from autoresearch.config import CONFIG_NAME, load_config
from autoresearch.errors import (
    AutoresearchError,
    LedgerEmptyError,
)
from autoresearch.gitops import repo_root
from autoresearch.state import StatePaths, default_tag, path_for_user, validate_tag
from autoresearch.stop_signals import OUTPUT_CLOSED_EXIT, OutputClosed, QuietOnClosedPipe
from autoresearch.user_errors import user_error
from autoresearch.views.safe_console import SafeConsole

if TYPE_CHECKING:
    from autoresearch.config import Config
    from autoresearch.display import Display
    from autoresearch.session import Session

app = typer.Typer(
    name="autoresearch",
    help="Autonomous research loops: propose a change, measure it under a fixed budget, keep it "
    "only if it honestly beats the incumbent.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Untrusted text (hypotheses, log tails, names) is printed as text: views.safe_console.
console = SafeConsole()
err = SafeConsole(stderr=True)

TagOpt = Annotated[str | None, typer.Option("--tag", "-t", help="Session tag (default: the "
                                            "latest session, or today's date for a new one).")]
# Commands that only read a session: there is no new one to name.
ReadTagOpt = Annotated[str | None, typer.Option("--tag", "-t", help="Session tag (default: the "
                                                "latest session).")]


def _root(repo: Path) -> Path:
    return repo_root(repo.resolve())


def resolve_tag(root: Path, tag: str | None, *, must_exist: bool) -> str:
    """An explicit tag, else the latest session in the ledger, else today's date."""
    if tag is not None:  # an explicit empty tag is a mistake, not "the default"
        return validate_tag(tag)
    from autoresearch.ledger import Ledger

    paths = StatePaths(root, "_")
    if paths.ledger.exists():
        try:
            ledger = Ledger(paths.ledger, readonly=True)  # a damaged one is refused here
        except LedgerEmptyError:
            ledger = None
        if ledger is not None:
            try:
                latest = ledger.latest_session()
            finally:
                ledger.close()
            if latest is not None:
                return latest.tag
    if must_exist:
        raise AutoresearchError("no session has run in this repository yet",
                                where=str(paths.ledger), fix="start one with `autoresearch run`")
    return default_tag()


def refuse_unusable_ledger(root: Path) -> None:
    """Raise the ledger's error now if it is damaged or too new (an empty one is fine)."""
    from autoresearch.ledger import Ledger

    path = StatePaths(root, "_").ledger
    if path.exists():
        with contextlib.suppress(LedgerEmptyError):
            Ledger(path, readonly=True).close()


@app.command()
def init(
    repo: RepoOpt = Path("."),
    template: Annotated[str | None, typer.Option(help="Start from a template: gpt.")] = None,
    metric: Annotated[str | None, typer.Option(help="Objective metric name.")] = None,
    direction: Annotated[str | None, typer.Option(help="minimize or maximize.")] = None,
    command: Annotated[str | None, typer.Option(help="The verify command.")] = None,
    scope: Annotated[list[str] | None, typer.Option(help="Glob the proposer may change (repeat).")] = None,
    protected: Annotated[list[str] | None, typer.Option(help="Glob that must never change (repeat).")] = None,
    budget: Annotated[float | None, typer.Option(help="Fixed budget per run, seconds.")] = None,
    metric_format: Annotated[str | None, typer.Option("--format", help="kv | metric-line | json | regex")] = None,
    pattern: Annotated[str | None, typer.Option(help=(
        "Regex for the objective, one group capturing the number (implies --format regex).")
        )] = None,
    from_log: Annotated[Path | None, typer.Option("--from-log", help=(
        "A file holding the command's output: list the numbers it printed last and take the "
        "objective from them (with --metric NAME when not on a terminal)."))] = None,
    force: Annotated[bool, typer.Option(help=(
        "Overwrite existing files (without it, a program.md already there is kept and only "
        "autoresearch.toml is written)."))] = False,
    commit: Annotated[bool, typer.Option(help="Commit the written files.")] = False,
) -> None:
    """Write a commented autoresearch.toml and a program.md skeleton (or a whole template)."""
    from autoresearch.scaffold import Answers, scaffold

    root = _root(repo)
    answers = Answers(metric=metric, direction=direction, command=command, scope=scope,
                      protected=protected, budget=budget, metric_format=metric_format,
                      pattern=pattern, from_log=from_log)
    written = scaffold(root, answers, template=template, force=force,
                       interactive=sys.stdin.isatty() and sys.stdout.isatty(), commit=commit,
                       console=console, here=repo.resolve())
    for path in written:  # absolute: from a subdirectory, the config lands at the root
        console.print(f"wrote {path}", soft_wrap=True)
    me = launcher_command()
    console.print(f"next: review autoresearch.toml, then `{me} check` and `{me} run`"
                  + ("" if commit else " (commit the new files first)"))


@app.command()
def check(
    repo: RepoOpt = Path("."),
    workers: Annotated[int | None, typer.Option("--workers", "-w", min=1, max=64, help=(
        "Check the slots' shares for this many workers, as `run --workers N` would run "
        "(default: \\[run] workers, 1)."))] = None,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Validate the config, dry-run the verify command once, and report problems."""
    from autoresearch.checkup import exit_code, run_checkup
    from autoresearch.stop_signals import stop_signals_as_interrupt

    root = _root(repo)
    # SIGTERM and SIGHUP stop the dry run as Ctrl-C does, so its temporary worktree is removed
    # (killed by them, it stayed registered in `git worktree list` until the next check).
    with stop_signals_as_interrupt():
        code = exit_code(run_checkup(root, console, workers, ray_address=ray_address,
                                     executor=executor))
    if code:
        raise typer.Exit(code)


@app.command()
def run(
    repo: RepoOpt = Path("."),
    tag: TagOpt = None,
    iterations: Annotated[int | None, typer.Option("--iterations", "-n", min=1, help=(
        "Stop after N experiments in the session in total (the baseline counts); "
        "a resumed run completes the same N, remembered when -n is not given again."))] = None,
    until: Annotated[str | None, typer.Option(help=(
        "Be done after this long (8h, 90m): no experiment starts that would end past it, the "
        "verification of the best included."))] = None,
    workers: Annotated[int | None, typer.Option("--workers", "-w", min=1, max=64, help=(
        # \[: the help is rich markup, where a bare [run] is a tag and vanishes.
        "Experiments in flight at once, each in its own worktree slot (default: \\[run] "
        "workers, 1)."))] = None,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Start or resume a session: baseline first, then the loop."""
    root = _root(repo)
    code = run_session(root, tag, iterations, None if until is None else parse_duration(until),
                       workers=workers, executor=executor,
                       ray_address=ray_address)
    if code:
        raise typer.Exit(code)


def run_session(root: Path, tag: str | None, iterations: int | None,
                until_s: float | None, workers: int | None = None,
                **run: str | None) -> int:
    """Open (or resume) a session, loop until a limit, print the summary; returns an exit code."""
    from autoresearch import budget, run_limit, scheduler
    from autoresearch.display import make_display, show_failed_log
    from autoresearch.session import Session, SessionStopped
    from autoresearch.stop_signals import (
        describe_interrupt,
        output_closed,
        stop_signals_as_interrupt,
    )
    from autoresearch.views.format import fmt_duration

    config = load_config(root / CONFIG_NAME).with_run(**run)  # --executor, --ray-address
    tag_ = resolve_tag(root, tag, must_exist=False)
    display = make_display(console)
    session = Session(root, config, tag_, display, workers=workers)
    started = time.time()
    with stop_signals_as_interrupt():  # SIGTERM and SIGHUP stop like Ctrl-C
        session.open()
        exit_code = 0
        status = "stopped"
        reason: str | None = None
        try:  # from here on, any stop (Ctrl-C, a signal, a closed pipe) closes the session
            resumed = _announce(session, config, display, tag_)
            given = iterations
            iterations, taken = run_limit.for_this_run(session.ledger, session.row, iterations,
                                                       resumed)
            if taken:
                console.print(escape(taken))
            unreachable = budget.unreachable_spend_limit(config, session.proposer.name)
            if unreachable:
                console.print(Text("! " + unreachable, style="yellow"))
            experiments = run_limit.ExperimentLimit.of(given, taken, iterations,
                                                       config.limits.max_experiments)
            worked = session.worked_seconds()
            limits = scheduler.effective_limits(config, iterations, until_s, started, worked)
            display.start()
            reason = scheduler.run(session, limits)
            status = "finished"
            # Said once every experiment in flight is recorded, and the headline verified: the
            # spend when the limit was seen is less than the session's (status says the latter).
            if budget.is_spend_stop(reason):
                reason = session.spend_limit_reached() or reason
            at_limit = experiments.count is not None and resumed >= experiments.count
            reached = reason == f"reached {experiments.count} experiments"
            reason = experiments.explain(reason, resumed)
            if reached and (skipped := len(session.history.experiments)
                            - session.history.counted()):
                # The summary below counts every experiment: "reached 22" beside "23
                # experiments" would read as a miscount.
                reason += (f" (not counting {skipped} interrupted, which "
                           f"{'is' if skipped == 1 else 'are'} run again)")
            if (not at_limit and until_s is None and config.limits.max_hours and resumed
                    and session.history.counted() == resumed and "time limit" in reason):
                reason += (f", before this run started: [limits] max_hours counts the "
                           f"session's time at work ({fmt_duration(worked)} so far of "
                           f"{fmt_duration(config.limits.max_hours * 3600)}); raise it, "
                           "or give this run its own limit with --until")
        except SessionStopped as stop:
            reason, exit_code = stop.reason, stop.exit_code
            status = "paused" if exit_code else "finished"
            if exit_code:
                show_failed_log(console, session.history)  # why it stopped, in the command's own words
        except AutoresearchError as exc:
            reason = f"error: {exc.what}"  # recorded for status; the error itself is printed
            raise
        except KeyboardInterrupt as exc:
            reason = f"interrupted ({describe_interrupt(exc)}); run the same command to resume"
            exit_code = 130
            if output_closed(exc):  # stdout goes nowhere now: say it where it can be read
                err.print(f"[yellow]stopped: {escape(reason)}[/]")
        finally:
            display.stop()
            session.close(status, stop_reason=reason)
        assert reason is not None  # every way out of the block above that gets here set it
        style = "green" if exit_code == 0 else ("yellow" if exit_code == 130 else "red")
        console.print(f"[{style}]stopped: {escape(reason)}[/]")
        _print_summary(root, tag_)
        kept = session.history.incumbent is not None and session.history.incumbent.kind != "baseline"
        console.print(f"results: {path_for_user(session.paths.results_tsv, root)}; " + (
            f"best commit on branch {session.paths.branch}" if kept else
            f"nothing kept yet: the branch {session.paths.branch} is at the base"))
    return exit_code


def _announce(session: Session, config: Config, display: Display, tag: str) -> int:
    """The session's first lines (what it is, what it resumes, what the user must know) and the
    live tally primed from the ledger; returns how many experiments it resumes after."""
    from autoresearch.display import print_resources, shorten_readiness
    from autoresearch.readiness import protected_matching_nothing
    from autoresearch.views.format import count_key

    # Everything loaded so far lives for the whole session: keep the collector off it, so
    # full collections stay short and don't land in the middle of an experiment.
    gc.freeze()
    history = session.history
    base = history.baseline
    if base is not None:
        display.tally.baseline = base.objective
        inc = history.incumbent
        display.tally.best = inc.objective if inc else None
    for e in history.experiments:
        display.tally.add(count_key(e.kind, e.status))
    resumed = history.counted()
    slots = f"; {session.workers} workers" if session.workers > 1 else ""
    # A readiness line may end in warnings (`\n! ...`, tune: a knob's value outside its space):
    # only the line is shortened to fit the header, each warning is said whole on its own line.
    ready, *ready_warnings = (session.readiness or "").split("\n! ")
    console.print(f"session [bold]{escape(tag)}[/] on branch {escape(session.paths.branch)}"
                  + (f" (resuming after {resumed} experiment{'s' if resumed != 1 else ''})"
                     if resumed else "") + slots
                  + f"; {escape(session.proposer_why)}"
                  + (f"; {escape(shorten_readiness(ready))}" if ready else "")
                  + (f"; {escape(session.review_gate)}" if config.review.gate != "off" else ""))
    for notice in [*ready_warnings, *session.notices]:
        console.print(f"[yellow]! {escape(notice)}[/]")
    print_resources(console, config, session.executor, session.workers, session.thread_plan,
                    [slot.resources for slot in session.slots.all])
    for warning in protected_matching_nothing(session.root, config):
        console.print(Text("! " + warning, style="yellow"))
    return resumed


def _print_summary(root: Path, tag: str) -> None:
    """The session as `status` and the report tell it (one read model), after a run."""
    from autoresearch.views.summary import build_view, open_ledger, resolve_session
    from autoresearch.views.terminal import render_summary

    ledger = open_ledger(root)
    try:
        render_summary(build_view(ledger, resolve_session(ledger, tag)), console)
    finally:
        ledger.close()


@app.command()
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="Where to create the demo project.")] = Path("autoresearch-demo"),
    iterations: Annotated[int, typer.Option("--iterations", "-n", min=1, help="Experiments in total (baseline included).")] = 5,
    budget: Annotated[float, typer.Option(help="Training budget per run, seconds.")] = 20.0,
) -> None:
    """A short research session on the built-in GPT workload, offline, no API key needed."""
    from autoresearch.scaffold_demo import create_demo, prepare_demo_data
    from autoresearch.stop_signals import stop_signals_as_interrupt

    root = create_demo(directory.resolve(), budget, console)
    refuse_unusable_ledger(root)  # before the data preparation, not after it
    stage = "while preparing the data"
    try:
        # SIGTERM and SIGHUP stop it like Ctrl-C, from the preparation through the session's
        # start (the session installs its own handler): a stop between the two is not a death
        # by signal, and nothing is recorded yet.
        with stop_signals_as_interrupt():
            prepare_demo_data(root, console)
            stage = "after the data was prepared"
            code = run_session(root, "demo", iterations, None)
    except KeyboardInterrupt:
        console.print(f"[yellow]stopped {stage}; run the same command to go on[/]")
        raise typer.Exit(130) from None
    me = launcher_command()
    console.print(f"explore it: cd {directory} && {me} status && {me} report")
    activate = Path(sys.executable).parent / "activate"
    if me != "autoresearch" and activate.is_file():
        console.print(f"(to type plain `autoresearch` in this shell: source {activate})")
    if code:
        raise typer.Exit(code)


def launcher_command() -> str:
    """How to call this autoresearch from anywhere: `autoresearch` when that is the one on PATH,
    else its absolute path (after `make demo` it lives in .venv/bin, not on PATH)."""
    import shutil

    mine = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    on_path = shutil.which("autoresearch")
    if mine is not None and mine.name == "autoresearch" and mine.is_file():
        if on_path and Path(on_path).resolve() == mine:
            return "autoresearch"
        return os.fspath(mine)
    candidate = Path(sys.executable).parent / "autoresearch"
    if on_path and (not candidate.is_file() or Path(on_path).resolve() == candidate.resolve()):
        return "autoresearch"
    return os.fspath(candidate) if candidate.is_file() else f"{sys.executable} -m autoresearch"


@app.command()
def status(repo: RepoOpt = Path("."), tag: ReadTagOpt = None) -> None:
    """Show a session while it runs and after."""
    from autoresearch.views.terminal import render_status

    root = _root(repo)
    render_status(root, resolve_tag(root, tag, must_exist=True), console)


@app.command()
def results(
    repo: RepoOpt = Path("."),
    tag: ReadTagOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Every experiment of a session (a table, or JSON with --json)."""
    from autoresearch.views.export import results_json
    from autoresearch.views.summary import open_ledger, resolve_session
    from autoresearch.views.terminal import render_results

    root = _root(repo)
    tag_ = resolve_tag(root, tag, must_exist=True)
    if as_json:
        ledger = open_ledger(root)
        try:
            data = results_json(ledger, resolve_session(ledger, tag_))
        finally:
            ledger.close()
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        render_results(root, tag_, console)


@app.command()
def show(
    experiment: Annotated[str, typer.Argument(
        help="An experiment id, e.g. mar5-0007, or its number, e.g. 7 (in the latest session, "
             "or the --tag one).")],
    tag: Annotated[str | None, typer.Option("--tag", "-t", help="The session of a bare number "
                                            "(default: the latest session).")] = None,
    full: Annotated[bool, typer.Option(
        "--full", help="Print the hypothesis, rationale and decision whole, however long (without "
                       "it, text over 4,000 characters or 40 lines shows its head and what is "
                       "left).")] = False,
    repo: RepoOpt = Path("."),
) -> None:
    """Everything about one experiment: hypothesis, decision, runs, spend, diff and log tail."""
    from autoresearch.views.terminal import render_experiment

    render_experiment(_root(repo), experiment, console, tag, full=full)


@app.command()
def version() -> None:
    """Print the version."""
    console.print(__version__)


def _register_optional() -> None:
    """Commands that live beside their feature (dashboard, report, finalize)."""
    try:
        from autoresearch.views.cli import register
    except ImportError:
        return
    register(app)
    # The `review` command lives beside its feature too (review/cli.py).
    from autoresearch.review.cli import register as register_review

    register_review(app)


_register_optional()


def _std_streams_open() -> None:
    """Descriptors 0-2 that the shell closed (`autoresearch run >&- 2>night.log`) are opened
    on /dev/null: Python leaves sys.stdout None, so the first print was a traceback, and the
    next file opened (the ledger) would take the number 1 and receive every print."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: `fd` itself
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", closefd=False,  # noqa: SIM115
                                    encoding="utf-8", errors="replace"))


def main(argv: list[str] | None = None) -> Any:
    from autoresearch.strays import adopt_orphans

    # Orphans of every run and agent call come back to this process (Linux), and die when the
    # call that left them ends (see `strays`).
    adopt_orphans()
    _std_streams_open()
    stdout = sys.stdout
    sys.stdout = QuietOnClosedPipe(stdout)
    try:
        return app(args=argv, standalone_mode=True)
    except OutputClosed:
        # The reader of our output went away (`| head`, a pager quit): stop quietly, as `cat`
        # does; what was recorded before printing began (a review) is complete.
        sys.exit(OUTPUT_CLOSED_EXIT)
    except Exception as exc:
        shown = user_error(exc)
        if shown is None:
            raise
        err.print(Text.assemble(("error: ", "bold red"), shown.render()), soft_wrap=True)
        sys.exit(shown.exit_code)
    finally:
        sys.stdout = stdout
