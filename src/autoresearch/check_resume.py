"""`autoresearch check` on the session `run` would resume: what `run` without --tag does, whether
it would refuse the config, and whether the proposer can work on the session's own files.

`run` without --tag resumes the latest session. A session whose baseline passed goes on from its
incumbent (its last kept commit, or its base), not from HEAD: the proposer then works on the
incumbent's files (session.py checks its readiness in the slot that holds them), so `check` asks
the proposer on those files too, or it says ready where `run` refuses.

The same holds for what a resume must still agree with (resume_contract): the thread count the
session's runs got (its pinned "auto" figure, read here, never pinned) and the content of its
`[verify] inputs`. `check` asks the very functions `run` refuses with, on a read-only ledger.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from autoresearch import gitops, resources
from autoresearch.check_together import check_tempdir
from autoresearch.config import CONFIG_NAME, Config
from autoresearch.errors import AutoresearchError, PreconditionError
from autoresearch.evaluation_inputs import EvaluationInputs
from autoresearch.executor import local_run_env, threads_given
from autoresearch.globs import select
from autoresearch.ledger import ExperimentRow, Ledger, SessionRow, TrialStatus
from autoresearch.resume_contract import measurement_changes, same_inputs, threads_at_start
from autoresearch.slots import Resources
from autoresearch.state import StatePaths, default_tag


@contextlib.contextmanager
def resumed_session(root: Path) -> Iterator[tuple[Ledger, SessionRow] | None]:
    """The ledger, opened read-only, and the session `run` without --tag would resume in it;
    None when there is none."""
    path = StatePaths(root, "_").ledger
    if not path.exists():
        yield None
        return
    try:
        ledger = Ledger(path, readonly=True)
    except AutoresearchError:  # empty, or already reported by the ledger's own check
        yield None
        return
    try:
        latest = ledger.latest_session()
        yield None if latest is None else (ledger, latest)
    finally:
        ledger.close()


def latest_session(root: Path) -> tuple[SessionRow, list[ExperimentRow]] | None:
    """The session `run` without --tag would resume, and its experiments; None when none."""
    with resumed_session(root) as found:
        return None if found is None else (found[1], found[0].experiments(found[1].id))


def baseline_passed(experiments: list[ExperimentRow]) -> bool:
    return any(e.kind == "baseline" and e.status == TrialStatus.KEEP for e in experiments)


def check_resume(root: Path, config: Config, console: Console) -> list[str]:
    """`run` without --tag resumes the latest session, which refuses a config that changed what
    it measures (resume_contract): a problem here too, before the night."""
    found = latest_session(root)
    if found is None or not baseline_passed(found[1]):
        return []
    session = found[0]
    changes = measurement_changes(session.config, config)
    if not changes:
        return []
    console.print(f"[red]✗[/] {CONFIG_NAME} changed what session {escape(session.tag)} measures "
                  f"since it last ran ({escape('; '.join(changes))}): `run` would refuse to "
                  "resume it; start a new one with --tag NEW, or set those back")
    return [f"{CONFIG_NAME} changed what session {session.tag} measures: " + "; ".join(changes)]


def session_thread_plan(root: Path, config: Config) -> resources.ThreadPlan:
    """The thread plan `run` without --tag gives its runs (session.py): the resumed session's
    "auto" figure as pinned when it started (or a new session's, measured now), with the user's
    `[verify] env` over it. Nothing is pinned: only `run` does that."""
    found = latest_session(root)
    tag = default_tag() if found is None else found[0].tag
    pin = StatePaths(root, tag).session_dir / "threads.json"
    return resources.effective(resources.session_threads(config.run, pin, readonly=True),
                               config.verify.env)


def check_resumed_threads(root: Path, config: Config, first: Resources,
                          console: Console) -> list[str]:
    """`run` refuses to resume a session whose runs would get another thread count than its
    runs got (resume_contract.threads_at_start, on slot-1's share, before anything runs):
    another --workers under "auto", another [run] threads. The same refusal here."""
    with resumed_session(root) as found:
        if found is None:
            return []
        ledger, row = found
        try:
            threads_at_start(ledger, row, threads_given(local_run_env(first,
                                                                      config.verify.env)))
        except PreconditionError as exc:
            return [_refusal(row.tag, exc, console)]
    return []


def check_resumed_inputs(root: Path, inputs: EvaluationInputs, console: Console) -> list[str]:
    """`run` refuses to resume a session whose `[verify] inputs` differ from the content it
    recorded (resume_contract.same_inputs): the same refusal here. A session that recorded none
    has them recorded by `run` (nothing to compare, and `check` writes nothing)."""
    if not inputs:
        return []
    with resumed_session(root) as found:
        if found is None:
            return []
        ledger, row = found
        recorded = ledger.events(row.id, kind="inputs")
        if not recorded or recorded[-1]["data"] is None:
            return []  # same_inputs would record them: not check's to do
        try:
            same_inputs(ledger, row, inputs)
        except PreconditionError as exc:
            return [_refusal(row.tag, exc, console)]
    return []


def _refusal(tag: str, exc: PreconditionError, console: Console) -> str:
    """Say a refusal of `run`'s as a ✗ problem: what, where, and the fix, as `run` says it."""
    said = f"`autoresearch run` would refuse to resume session {tag}: {exc.render()}"
    console.print(f"[red]✗[/] {escape(said)}")
    return said


def what_run_does(root: Path) -> str:
    """`run` without --tag resumes the latest session: say so, since a resumed session measures
    from its own base (a session whose baseline never passed starts again from HEAD)."""
    # The first session's tag is today's date: name it, so `status` and `show` can be found.
    new = f"start session {default_tag()} (today's date; --tag NAME to choose) with the baseline"
    found = latest_session(root)
    if found is None:
        return new
    latest, experiments = found
    if not baseline_passed(experiments):
        return (f"resume session {latest.tag}, whose baseline has not passed yet: it starts "
                "again from your HEAD")
    # Counted as `run` and `status` count them: the baseline included, interrupted ones not
    # (they are run again).
    done = sum(1 for e in experiments if e.status != TrialStatus.INTERRUPTED)
    return (f"resume session {latest.tag} ({done} experiment(s) so far, the baseline included; "
            f"measured from its base {latest.base_commit[:10]}); --tag NEW starts a new session "
            "from your HEAD")


@dataclass(frozen=True)
class ResumedIncumbent:
    """The session `run` would resume and the commit whose files it goes on from."""

    tag: str
    commit: str


def resumed_incumbent(root: Path) -> ResumedIncumbent | None:
    """The incumbent of the session `run` without --tag resumes from it (its baseline passed);
    None when `run` starts from HEAD (no session, or its baseline has not passed)."""
    found = latest_session(root)
    if found is None or not baseline_passed(found[1]):
        return None
    session, experiments = found
    # As recovery decides it: the ledger's last kept experiment (decided last), else the base.
    kept = [e for e in experiments if e.status == TrialStatus.KEEP and e.commit_sha]
    last = max(kept, key=lambda e: (e.finished_at or 0, e.seq)) if kept else None
    commit = last.commit_sha if last is not None and last.commit_sha else session.base_commit
    return ResumedIncumbent(session.tag, commit)


@contextlib.contextmanager
def readiness_tree(root: Path) -> Iterator[tuple[Path, ResumedIncumbent | None]]:
    """Where to ask the proposer whether it can work: the checkout, or when `run` would resume
    a session whose incumbent's files differ from HEAD's, a temporary worktree holding them
    (with that session). The dry run's worktree holds HEAD, so it cannot serve."""
    resumed = resumed_incumbent(root)
    head = gitops.head_commit(root)
    if resumed is None or head is None or (
            gitops.tree_of(root, resumed.commit) == gitops.tree_of(root, head)):
        yield root, None
        return
    with check_tempdir() as tmp:
        worktree = Path(tmp) / "incumbent"
        gitops.ensure_detached_worktree(root, worktree, resumed.commit)
        try:
            yield worktree, resumed
        finally:
            gitops.remove_worktree(root, worktree)


def only_in_head(root: Path, config: Config, resumed: ResumedIncumbent,
                 error: AutoresearchError) -> str | None:
    """Why the proposer cannot work on the incumbent when it can on HEAD: the files it needs
    (in the scope, or named by the error) that HEAD has and the incumbent lacks, said with the
    way to use them; None when there are none."""
    incumbent = set(gitops.tracked_files(root, resumed.commit))
    added = [f for f in gitops.tracked_files(root) if f not in incumbent]
    said = error.render()
    missing = sorted(set(select(added, config.scope)) | {f for f in added if f in said})
    if not missing:
        return None
    shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
    return (f"{shown} {'is' if len(missing) == 1 else 'are'} in your HEAD but not in session "
            f"{resumed.tag}'s incumbent {resumed.commit[:10]}, whose files `run` resumes from; "
            "`autoresearch run --tag NEW` starts a new session from HEAD that has "
            f"{'it' if len(missing) == 1 else 'them'}")
