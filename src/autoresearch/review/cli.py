"""`autoresearch review`, added to the main command line by `register(app)`."""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from autoresearch.errors import PreconditionError
from autoresearch.proposers.base import Meter, Usage
from autoresearch.views.safe_console import SafeConsole

if TYPE_CHECKING:
    from autoresearch.ledger import Ledger
    from autoresearch.review.change import Change

# Findings quote code and model text: printed as text (views.safe_console).
console = SafeConsole()
err = SafeConsole(stderr=True)

FORMATS = ("terminal", "markdown", "sarif", "github", "json")


def _roots(repo: Path, diff: str | None) -> tuple[Path, Path | None]:
    """The tree to review, and where the ledger lives (the main working tree; None outside git)."""
    from autoresearch.gitops import common_root, repo_root

    try:
        root = repo_root(repo.resolve())
    except PreconditionError:
        if diff is not None:
            return repo.resolve(), None  # a diff can be reviewed against a plain directory
        raise
    return root, common_root(root)


def review(
    repo: Annotated[Path, typer.Option("--repo", "-C", help="The repository (default: here).")]
    = Path("."),
    base: Annotated[str | None, typer.Option(
        help="Review what --head adds over its merge base with this revision (default: the "
        "default branch).")] = None,
    head: Annotated[str | None, typer.Option(help="The revision to review (default: HEAD).")]
    = None,
    diff: Annotated[str | None, typer.Option(
        help="Review a unified diff file ('-' reads standard input) against the working tree.")]
    = None,
    session: Annotated[str | None, typer.Option(
        help="Review the kept commits of a research session (its branch against its base).")]
    = None,
    reviewers: Annotated[str | None, typer.Option(
        help="Comma-separated reviewers to run (default: the scale rule chooses); "
        "--list-reviewers names them.")] = None,
    offline: Annotated[bool, typer.Option(help="Offline reviewers only, even with a model "
                                          "configured.")] = False,
    llm: Annotated[bool, typer.Option(help="Require the LLM reviewers (an error when no model "
                                      "is configured).")] = False,
    max_usd: Annotated[float | None, typer.Option(
        # \[: the help is rich markup, where a bare [review] is a tag and vanishes.
        min=0, help="Stop asking models once this review could cost more (default: "
        "\\[review] max_usd, 1.00).")] = None,
    inline_cap: Annotated[int | None, typer.Option(
        min=0, help="At most this many inline findings (default 10); the rest go to the "
        "summary.")] = None,
    fail_on: Annotated[str | None, typer.Option(
        help="Exit 1 when a finding of this colour is present (yellow: red or yellow), or a "
        "reviewer failed.")] = None,
    output_format: Annotated[str, typer.Option(
        "--format", help="What standard output shows: terminal, markdown, sarif, github, json.")]
    = "terminal",
    # The four output files: missing directories created, each path checked before the review
    # starts (output_files.py).
    sarif: Annotated[Path | None, typer.Option(
        help="Also write SARIF 2.1.0 here (missing directories are created).")] = None,
    markdown: Annotated[Path | None, typer.Option(
        help="Also write Markdown here (missing directories are created).")] = None,
    github: Annotated[Path | None, typer.Option(
        help="Also write the JSON body of a GitHub pull-request review here (missing "
        "directories are created).")] = None,
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Also write the whole review as JSON here (missing directories are "
        "created).")] = None,
    previous: Annotated[Path | None, typer.Option(
        help="An earlier review's --json or --sarif file: its findings are not posted inline "
        "again.")]
    = None,
    record: Annotated[bool, typer.Option(help="Record the review in .autoresearch/ledger.db "
                                         "(and do not post again what earlier reviews of the "
                                         "same branch reported).")] = True,
    list_reviewers: Annotated[bool, typer.Option(help="List the reviewers and exit.")] = False,
) -> None:
    """Review a change with parallel reviewers; verified, ranked red/yellow/purple. Never
    approves: it points at code for the person who decides."""
    from autoresearch.review import change as changes
    from autoresearch.review.output_files import check_output_paths, write_output
    from autoresearch.review.outputs.github import review_body
    from autoresearch.review.outputs.jsonout import read_previous, to_json
    from autoresearch.review.outputs.markdown import render_markdown
    from autoresearch.review.outputs.sarif import render_sarif
    from autoresearch.review.outputs.terminal import print_review
    from autoresearch.review.pipeline import run_review
    from autoresearch.review.protected import configured_protected
    from autoresearch.review.registry import load_reviewers
    from autoresearch.review.settings import cli_settings, load_review_config
    from autoresearch.review.store import open_ledger, record_review
    from autoresearch.stop_signals import describe_interrupt, stop_signals_as_interrupt

    if list_reviewers:
        _list(load_reviewers())
        return
    if output_format not in FORMATS:
        raise typer.BadParameter(f"use one of {', '.join(FORMATS)}", param_hint="--format")
    if fail_on not in (None, "red", "yellow"):
        raise typer.BadParameter("use red or yellow", param_hint="--fail-on")
    inputs = [name for name, given in (("--diff", diff), ("--session", session),
                                       ("--base/--head", base or head)) if given]
    if len(inputs) > 1:
        raise typer.BadParameter(f"{' and '.join(inputs)} name different changes: pass one")
    if offline and llm:
        raise typer.BadParameter("--offline and --llm contradict each other")
    outputs = {"--sarif": sarif, "--markdown": markdown, "--github": github, "--json": json_out}
    # Before anything runs: a path found unwritable after the model calls would waste them.
    check_output_paths(outputs, diff)
    root, state_root = _roots(repo, diff)
    config, proposer = load_review_config(root)
    names = [n.strip() for n in reviewers.split(",") if n.strip()] if reviewers else None
    settings = cli_settings(config, proposer, reviewers=names, offline=offline,
                            require_llm=llm, max_usd=max_usd, inline_cap=inline_cap,
                            protected=configured_protected(root))
    if diff is not None:
        change = changes.from_diff_file(root, diff)
    elif session is not None:
        change = changes.from_session(root, session)
    else:
        change = changes.from_range(root, base, head)
    if not change.files:
        # Still a (empty) review: CI gets its SARIF and GitHub files whatever the change.
        err.print(escape(f"nothing to review: {change.subject.label} changes no file"))
    known: set[str] = set()
    if previous is not None:
        known |= read_previous(previous)
    ledger = open_ledger(state_root) if record and state_root is not None else None
    if ledger is not None:
        known |= ledger.reported_fingerprints(change.subject.key)
    # Each model call is noted here the moment it returns: a review cut short still records
    # what its calls cost (budget.py; the llm proposer bills through the same Meter).
    paid: list[Usage] = []
    started_at = time.time()
    try:
        # SIGTERM and SIGHUP stop the review like Ctrl-C: its analyzers killed, its temporary
        # files removed, no finding recorded (the default would end it with both left behind).
        with stop_signals_as_interrupt(), (
                err.status("reviewing", spinner="dots") if err.is_terminal else nullcontext()):
            result = run_review(change, settings, known=known, meter=Meter(record=paid.append))
    except KeyboardInterrupt as exc:
        _interrupted(ledger, change, list(paid), settings.max_usd, started_at,
                     describe_interrupt(exc))
        sys.stdout.flush()
        sys.stderr.flush()
        # Reviewer threads may be inside a model call: end the process without waiting for them.
        os._exit(130)
    if ledger is not None:
        try:
            record_review(ledger, result)
        finally:
            ledger.close()
    rendered: dict[str, Any] = {}

    def form(name: str) -> str:
        if name not in rendered:
            if name == "markdown":
                rendered[name] = render_markdown(result)
            elif name == "sarif":
                rendered[name] = json.dumps(render_sarif(result, root), indent=2) + "\n"
            elif name == "github":
                rendered[name] = json.dumps(review_body(result, change), indent=2) + "\n"
            else:
                rendered[name] = json.dumps(to_json(result), indent=2) + "\n"
        return str(rendered[name])

    for option, path in outputs.items():
        if path is not None:
            write_output(path, form(option.removeprefix("--")))
    if output_format == "terminal":
        print_review(result, console)
    else:
        sys.stdout.write(form(output_format))
    code = _exit_code(result, fail_on)
    if code:
        raise typer.Exit(code)


def _interrupted(ledger: Ledger | None, change: Change, paid: list[Usage], max_usd: float | None,
                 started_at: float, why: str) -> None:
    """Say what an interrupted review leaves: nothing, or (with model calls already paid for and
    a ledger to record in) a review with no finding that carries their cost."""
    from autoresearch.review.store import interrupted_review, record_review

    cost = sum(u.cost_usd for u in paid)
    recorded = False
    if ledger is not None:
        try:
            if paid:
                record_review(ledger, interrupted_review(change, paid, max_usd=max_usd,
                                                         started_at=started_at, why=why))
                recorded = True
        finally:
            ledger.close()
    if recorded:
        err.print(f"interrupted: no finding was recorded; the {len(paid)} model call(s) that "
                  f"had returned (${cost:.4f}) are recorded in the ledger")
    elif paid:
        err.print(f"interrupted: nothing was recorded; the {len(paid)} model call(s) that had "
                  f"returned cost ${cost:.4f}")
    else:
        err.print("interrupted: nothing was recorded")


def _exit_code(result: Any, fail_on: str | None) -> int:
    if fail_on is None:
        return 0
    colours = ("red",) if fail_on == "red" else ("red", "yellow")
    new = sum(result.count(c) for c in colours)
    failed = [r.name for r in result.failed]
    if new:
        err.print(f"[red]--fail-on {fail_on}: {new} finding(s) of that colour or worse[/]")
    if failed:
        err.print(f"[red]--fail-on {fail_on}: reviewer(s) failed: {', '.join(failed)}[/]")
    return 1 if new or failed else 0


def _list(available: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(box=None, header_style="dim")
    for column in ("name", "kind", "angle", "what it does"):
        table.add_column(column)
    for name, reviewer in available.items():
        table.add_row(name, reviewer.kind, reviewer.angle, reviewer.description)
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add `review` to the main command line."""
    app.command("review")(review)
