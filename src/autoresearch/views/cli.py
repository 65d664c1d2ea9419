"""The `dashboard`, `report` and `finalize` commands, added to the main app by `register(app)`.

Heavy imports (uvicorn, Starlette, matplotlib) happen inside the commands, so `autoresearch run`
does not pay for them at start-up.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
import webbrowser
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote

import typer
from rich.table import Table
from rich.text import Text

from autoresearch.cli_options import ExecutorOpt, RayAddressOpt, RepoOpt
from autoresearch.dashboard.hosts import LOOPBACK_NAMES, is_loopback
from autoresearch.errors import AutoresearchError, PreconditionError
from autoresearch.gitops import common_root
from autoresearch.views.safe_console import SafeConsole

__all__ = ["dashboard", "dashboard_app", "finalize", "is_loopback", "register", "report"]

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from autoresearch.finalize.verify import Effect, Verification
    from autoresearch.state import SessionLock

# Nearly everything these commands print embeds untrusted text (file names, commit titles, metric
# names, paths): rich markup is off, so a `[/]` in any of them is shown as written rather than
# read as a tag (or crash the command after its work is done). Styling is opted into with
# rich Text. Escape sequences are removed as everywhere: views.safe_console.
console = SafeConsole(markup=False)
# What the session's own display prints when `report --verify` re-measures: that code writes
# rich markup (and escapes what it embeds), so it gets a console that reads markup.
display_console = SafeConsole()

TagOpt = Annotated[str | None, typer.Option("--tag", "-t", help="Session tag (default: the most "
                                            "recently active session).")]
TOKEN_ENV = "AUTORESEARCH_DASHBOARD_TOKEN"


def _root(repo: Path) -> Path:
    from autoresearch.gitops import repo_root

    # From inside a session worktree too: the ledger lives in the main working tree.
    return common_root(repo_root(repo.resolve()))


def _check_session(root: Path, tag: str | None) -> str:
    from autoresearch.views.summary import open_ledger, resolve_session

    ledger = open_ledger(root)
    try:
        return resolve_session(ledger, tag).tag
    finally:
        ledger.close()


def _session_to_show(root: Path, tag: str | None) -> str | None:
    """The session the dashboard opens on; None when the project has none yet and no --tag was
    given: the page waits for the first (a dashboard started before `autoresearch run` is a
    common first step). A directory that is no autoresearch project, or a --tag that names no
    session (a typo), is refused as before."""
    from autoresearch.config import CONFIG_NAME
    from autoresearch.views.summary import LedgerNotFoundError, SessionNotFoundError

    try:
        return _check_session(root, tag)
    except (LedgerNotFoundError, SessionNotFoundError):
        if tag is not None or not (root / CONFIG_NAME).is_file():
            raise
        return None


def _check_bindable(host: str, port: int) -> None:
    """Refuse, before anything is served, a --host this machine cannot listen on (a name that
    does not resolve, an address not its own) or a --port already taken: each said as itself."""
    bare = host.strip("[]")
    try:
        infos = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise PreconditionError(f"cannot resolve the host {host!r}: {exc.strerror}",
                                where="--host", fix="give an address of this machine, e.g. "
                                "--host 127.0.0.1 (the default) or --host 0.0.0.0 with --token"
                                ) from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise AutoresearchError(f"port {port} on {host} is already in use",
                                        where="--port", fix="pick another one, e.g. --port 8766 "
                                        "(or --port 0 for any)") from None
            raise PreconditionError(f"cannot listen on {host}: {exc.strerror}", where="--host",
                                    fix="give an address of this machine, e.g. --host 127.0.0.1 "
                                    "(the default) or --host 0.0.0.0 with --token") from None


def dashboard_app(root: Path, tag: str | None, token: str | None, host: str) -> Starlette:
    """The app `dashboard` serves when bound to `host`.

    Without a token only loopback hosts are answered: the usual names, any loopback literal (the
    middleware checks), and the very host this server was asked to bind.
    """
    from autoresearch.dashboard.app import create_app

    bound = host.strip().strip("[]").lower()
    return create_app(root, tag, token, allowed_hosts=None if token else [
        *LOOPBACK_NAMES, bound, f"[{bound}]"])


def dashboard(
    repo: RepoOpt = Path("."),
    tag: TagOpt = None,
    host: Annotated[str, typer.Option(help="Address to bind. Anything but loopback needs --token."
                                      )] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8765,
    token: Annotated[str | None, typer.Option(
        envvar=TOKEN_ENV, help="Access token every request must carry (required with a "
        "non-loopback --host).")] = None,
    open_browser: Annotated[bool, typer.Option("--open/--no-open",
                                               help="Open the page in a browser.")] = False,
) -> None:
    """Serve a live, read-only web dashboard of a session (127.0.0.1 by default)."""
    import uvicorn

    # Refused by policy, like the run's preconditions: exit 3.
    if not is_loopback(host) and not token:
        raise PreconditionError(
            f"refusing to serve the dashboard on {host} without an access token",
            where="--host",
            fix="add --token SECRET (every request must then carry it), or keep the default "
                "--host 127.0.0.1 and use an SSH tunnel",
        )
    if token is not None and len(token) < 8:
        raise PreconditionError("the access token is too short (use at least 8 characters)",
                                where="--token",
                                fix="e.g. python -c 'import secrets; print(secrets.token_urlsafe())'")
    root = _root(repo)
    shown = _session_to_show(root, tag)
    _check_bindable(host, port)
    app = dashboard_app(root, tag, token, host)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # Ends the open event streams, which would otherwise hold the shutdown.
            app.state.shutdown.set()
            super().handle_exit(sig, frame)

    server = Server(uvicorn.Config(
        app, host=host.strip("[]"), port=port, log_level="warning", access_log=False,
        timeout_graceful_shutdown=5,
    ))

    def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            time.sleep(0.05)
        bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
        shown_host = f"[{host.strip('[]')}]" if ":" in host else host
        url = f"http://{shown_host}:{bound}/" + (f"?token={quote(token, safe='')}" if token else "")
        if shown is None:
            console.print(f"dashboard at {url}: no session yet; the page shows the first one as "
                          "soon as `autoresearch run` starts it — Ctrl-C to stop",
                          soft_wrap=True, markup=False)
        else:
            console.print(Text.assemble("dashboard for session ", (shown, "bold"), f" at {url}",
                                        "" if tag else " (the latest session; the page lists the "
                                        "others)", " — Ctrl-C to stop"), soft_wrap=True)
        if open_browser:
            webbrowser.open(url)

    threading.Thread(target=announce, daemon=True).start()
    server.run()


def ledger_metric(root: Path, tag: str) -> str:
    from autoresearch.views.summary import open_ledger, resolve_session

    ledger = open_ledger(root)
    try:
        return resolve_session(ledger, tag).metric
    finally:
        ledger.close()


def report(
    repo: RepoOpt = Path("."),
    tag: TagOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Directory for the files "
                   "(default: .autoresearch/sessions/<tag>/report).")] = None,
    verify: Annotated[bool, typer.Option("--verify", help="Re-measure best vs baseline first "
                      "(interleaved pairs) when the session's headline is not verified yet.")
                      ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite progress.png, report.html "
                     "and report.md in --out DIR even when autoresearch report did not write "
                     "them (they are refused otherwise, before any file is written; a report's "
                     "own files are rewritten without it).")] = False,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Write progress.png, a self-contained report.html and report.md for a session."""
    from autoresearch.report import check_out_dir, write_report
    from autoresearch.views.format import fmt_signed, fmt_value

    root = _root(repo)
    _where_runs_go(root, executor, ray_address)
    out_dir = out.resolve() if out else None
    done = None  # the headline --verify measured now (it printed it already)
    if verify:
        check_out_dir(root, tag, out_dir, force=force)  # a refusal, before the long re-measure
        from autoresearch.scheduler import verify_headline_of
        from autoresearch.views.summary import open_ledger, resolve_session

        ledger = open_ledger(root)
        try:
            name = resolve_session(ledger, tag).tag
        finally:
            ledger.close()
        done = verify_headline_of(root, name, display_console, executor=executor,
                                  ray_address=ray_address)
        if done is not None:
            console.print(done.describe(ledger_metric(root, name)))
    files = write_report(root, tag, out_dir, force=force)
    s, conf = files.data.view.summary, files.data.view.confidence
    # With a verified headline the σ figure is the re-measured gain's (views.confidence).
    remeasured = f"; re-measured {fmt_signed(conf.improvement)}" if conf.verified_pairs else ""
    # Nothing kept: no improvement of +0 and no 0.0σ, only that there is nothing to compare.
    figure = (f"{fmt_signed(s.improvement)}{remeasured}, {conf.label}" if conf.compared
              else conf.label)
    console.print(Text.assemble("session ", (s.tag, "bold"), f": best {s.metric} "
                                f"{fmt_value(s.best)} vs baseline {fmt_value(s.baseline)} "
                                f"({figure}), {s.counts['keep']} kept of "
                                f"{s.counts['candidates']} candidates"))
    if s.verified and done is None:  # the session's runs can flatter the best; pairs do not
        console.print(f"verified: {s.verified}")
    elif done is None and s.best_id is not None and s.best_id != s.baseline_id:
        console.print("not verified: best vs baseline was not re-measured since the best was "
                      "kept (`autoresearch report --verify` re-measures it in interleaved pairs, "
                      "unless [decision] headline_pairs = 0 turns that off)")
    for path in (files.png, files.html, files.markdown):
        console.print(f"wrote {path}", soft_wrap=True)  # a path to copy: never broken
    if done is not None and (done.interval is None or done.failures):
        raise typer.Exit(1)  # asked to verify, and it could not: the report is written anyway


def _where_runs_go(root: Path, executor: str | None, ray_address: str | None) -> None:
    """--executor and --ray-address are checked as `run` checks them, before anything is done
    (a --ray-address the runs would not use was refused only once the branches were written)."""
    if executor is not None or ray_address is not None:
        from autoresearch.config import CONFIG_NAME, load_config

        load_config(root / CONFIG_NAME).with_run(executor=executor, ray_address=ray_address)


def finalize(
    repo: RepoOpt = Path("."),
    tag: TagOpt = None,
    prefix: Annotated[str, typer.Option(help="Branch name prefix; {tag} is replaced.")
                      ] = "autoresearch-final/{tag}/",
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Re-measure each branch "
                                         "against the base and report its own effect.")] = False,
    repeats: Annotated[int | None, typer.Option(min=1, help="Runs per branch with --verify "
                                                "(default: the baseline's repeats).")] = None,
    force: Annotated[bool, typer.Option(help="Replace branches a previous finalize created "
                                        "with other content.")] = False,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Split a session's kept commits into independent branches from its base (never pushes)."""
    from autoresearch.finalize.lock import FinalizeLock

    root = _root(repo)
    _where_runs_go(root, executor, ray_address)  # refused before any branch is written
    # One finalize of a session at a time: two would write the same branches and measure in
    # the same worktree, each removing the other's checkout under its runs.
    name = _check_session(root, tag)
    with (FinalizeLock(root, name),
          _session_idle(root, name) if verify else nullcontext() as session_lock):
        verification = _finalize_locked(root, tag, prefix=prefix, force=force,
                                        verify=verify, repeats=repeats,
                                        run={"executor": executor, "ray_address": ray_address},
                                        session_lock=session_lock)
    if verification is not None and verification.incomplete:
        raise typer.Exit(1)  # asked to verify, and some branch could not be: the table says which


@contextmanager
def _session_idle(root: Path, tag: str) -> Iterator[SessionLock]:
    """Hold the session's own lock while finalize --verify measures, as `report --verify` does:
    beside a running session its runs and the session's would slow each other (each measuring
    the other's load), and measure a best that the session may replace meanwhile. A `run` of the
    session started meanwhile is refused (exit 4) until finalize ends. Yields the lock: held by
    this process, it tells the slots' removal that no session runs (slots.remove_finished_slots)."""
    from autoresearch.errors import SessionLockedError
    from autoresearch.state import SessionLock, StatePaths

    lock = SessionLock(StatePaths(root, tag).lock)
    try:
        lock.acquire()
    except SessionLockedError as exc:
        raise SessionLockedError(
            f"session {tag} is running (process {lock.recorded_pid() or '(starting)'}): "
            "finalize --verify would measure beside its runs, each slowing the other, and "
            "re-measure a best the session may still replace", where=exc.where,
            fix="run finalize --verify once the session has stopped, or finalize without "
                "--verify now (it writes the branches from the session as it stands)") from None
    try:
        yield lock
    finally:
        lock.release()


def _finalize_locked(root: Path, tag: str | None, *, prefix: str, force: bool, verify: bool,
                     repeats: int | None, run: dict[str, str | None],
                     session_lock: SessionLock | None = None) -> Verification | None:
    from autoresearch.finalize import finalize as run_finalize
    from autoresearch.finalize.verify import remeasure
    from autoresearch.slots import remove_finished_slots

    result = run_finalize(root, tag, prefix=prefix, force=force)
    table = Table(title=f"session {result.tag}: {len(result.groups)} independent change(s) from "
                  f"base {result.base_commit[:10]}", title_justify="left")
    table.add_column("branch", overflow="fold")
    table.add_column("experiments")
    table.add_column("files", overflow="fold")
    for g in result.groups:
        ids = ", ".join(c.exp_id or c.sha[:10] for c in g.commits)
        table.add_row(g.branch + (" (unchanged)" if g.existed else ""), ids, ", ".join(g.files))
    console.print(table)
    console.print(Text.assemble(("✓", "green"), " no two branches touch the same file; together "
                                f"they reproduce the session's final tree {result.session_tree[:10]}"))
    for w in result.warnings:
        console.print(Text.assemble(("warning:", "yellow"), f" {w}"))
    verification = None
    if verify:
        console.print("re-measuring each branch against the base …")
        verification = remeasure(root, result, repeats=repeats,
                                 log=lambda m: console.print(f"  {m}", style="dim"), run=run)
        _print_effects(verification)
    if (slots := remove_finished_slots(root, result.tag, held=session_lock)) is not None:
        console.print(slots)
    console.print("nothing was pushed or merged; review with `git log -p <branch>`")
    return verification


def _runs_cell(e: Effect) -> str:
    if e.reused:
        return f"{len(e.values)} reused (headline)"
    return f"{len(e.values)} fresh" + (f" ({len(e.failures)} failed)" if e.failures else "")


def _print_effects(v: Verification) -> None:
    from autoresearch.views.format import fmt_signed, fmt_value

    table = Table(title="each change's own effect (improvement > 0 is better)",
                  title_justify="left")
    table.add_column("branch", overflow="fold")
    table.add_column("runs", justify="right")
    for col in ("mean", "improvement", "95% interval"):
        table.add_column(col, justify="right", overflow="fold")
    table.add_row("base", _runs_cell(v.base), fmt_value(v.base.mean), "", "")
    for e in v.effects:
        table.add_row(e.name, _runs_cell(e), fmt_value(e.mean), fmt_signed(e.improvement),
                      _interval_cell(e))
    console.print(table)
    for e in v.effects:
        if e.note:
            console.print(Text.assemble((f"{e.name}:", "yellow"), f" {e.note}"))
        if e.same_as_base:
            console.print(Text.assemble((f"{e.name}:", "yellow"), " its files are the base's "
                                        "(its changes undo each other): measured as the base, "
                                        "it has no effect of its own"))
        if (why := e.no_spread()) is not None:
            console.print(Text.assemble((f"{e.name}:", "yellow"), f" {why}"))
    for line in _noise_footer(v):
        console.print(line)


def _noise_footer(v: Verification) -> list[str]:
    """Where each row's numbers come from, and the base's noise, as they were measured."""
    from autoresearch.views.format import fmt_value

    lines = []
    if v.rounds:
        lines.append(f"fresh: measured now in {v.rounds} round(s) of base and branches (the "
                     "order reversed every other round); a branch's improvement is the mean of "
                     "its differences from the base's run of the same round, and its interval "
                     "the t interval of those differences")
    if any(e.reused for e in [v.base, *v.effects]):
        lines.append("reused (headline): the session's best and base re-measured in "
                     "interleaved pairs at the session's end, not run again; the improvement is "
                     "the mean of those pairs' differences")
    kind = "headline" if v.base.reused else "fresh"
    lines.append(f"noise: σ of the base's {len(v.base.values)} {kind} run(s) = "
                 f"{fmt_value(v.base_sigma, 4)}")
    return lines


def _interval_cell(e: Effect) -> str:
    from autoresearch.finalize.verify import CRASHES_ALONE
    from autoresearch.views.format import fmt_signed

    iv = e.interval
    if e.same_as_base:
        return "— (the base's files)"
    if iv is None:
        return CRASHES_ALONE if e.crashed_alone else "—"
    if iv.pairs < 2:
        return "— (1 pair)"
    # Identical differences: an interval of no width would claim a certainty nothing measured.
    # Runs that varied with their shared seed (the pairing cancelled it: below the table), or
    # runs that were identical (a fixed seed: the noise is hidden).
    if iv.zero_noise:
        return "no spread (seeds shared)" if e.seeds_shared else "σ = 0 (hidden)"
    return f"[{fmt_signed(iv.low)}, {fmt_signed(iv.high)}]"


def register(app: typer.Typer) -> None:
    """Add `dashboard`, `report` and `finalize` to the main command line."""
    app.command("dashboard")(dashboard)
    app.command("report")(report)
    app.command("finalize")(finalize)
