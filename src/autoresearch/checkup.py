"""`autoresearch check`: validate the contract and dry-run the verify command once (and, with
several workers, once per slot at the same time: `check_together`).

The dry run happens in a temporary worktree at HEAD, so the user's checkout is never touched.
Each problem carries the exit code `check` ends with: 2 for anything the config must fix (a
protected file inside the scope, a knob that can't be found), else 1.
"""

from __future__ import annotations

import contextlib
import shlex
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from autoresearch import gitops, resources, shared_paths
from autoresearch.budget import unreachable_spend_limit
from autoresearch.check_output import metrics_table, report_needs, suggest_metric
from autoresearch.check_resume import (
    ResumedIncumbent,
    check_resume,
    check_resumed_inputs,
    check_resumed_threads,
    latest_session,
    only_in_head,
    readiness_tree,
    session_thread_plan,
    what_run_does,
)
from autoresearch.check_together import check_tempdir, run_together, sweep_stale_worktrees
from autoresearch.config import ALWAYS_PROTECTED, CONFIG_NAME, Config, load_config
from autoresearch.errors import (
    AutoresearchError,
    ConfigError,
    LedgerEmptyError,
    PreconditionError,
)
from autoresearch.evaluation_inputs import EvaluationInputs
from autoresearch.executor import (
    LocalExecutor,
    Measurement,
    RunRequest,
    elsewhere,
    make_executor,
)
from autoresearch.gitops.runner import git
from autoresearch.metrics import format_metric_help
from autoresearch.readiness import (
    check_preconditions,
    proposer_readiness,
    protected_matching_nothing,
)
from autoresearch.runner import log_tail
from autoresearch.slots import contention, plan_resources, unknown_gpus
from autoresearch.state import StatePaths, default_tag, keep_in_state, path_for_user
from autoresearch.statuses import happened
from autoresearch.verify_targets import failure_hints, unguarded_evaluation


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


def run_checkup(root: Path, console: Console, workers: int | None = None,
                **run: str | None) -> list[str]:
    """Print what was checked; returns the problems found (empty when all is well). `workers`
    (and `run`: executor, ray_address) override `[run]` as `run --workers` does: the slots'
    shares are checked for them, and the dry run is made where `run` would make it."""
    problems: list[str] = []
    # A ConfigError here is the whole answer.
    config = load_config(root / CONFIG_NAME).with_run(workers=workers, **run)
    console.print(f"[green]✓[/] {CONFIG_NAME} is valid: objective {escape(config.metric.name)} "
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
    if gitops.head_commit(root) is not None:
        for warning in protected_matching_nothing(root, config) + unguarded_evaluation(
                config.verify.command, config.scope, config.protected, list(ALWAYS_PROTECTED),
                gitops.tracked_files(root)):
            console.print(f"[yellow]![/] {escape(warning)}", soft_wrap=True)
        if submodules := _submodules(root):
            console.print(
                f"[yellow]![/] the repository has submodules ({escape(', '.join(submodules[:5]))}"
                "): the worktrees experiments run in hold the commit's own files, not the "
                "submodules' (they are empty directories there). A verify command that needs "
                "them fails: vendor what it needs into the repository, or have the command "
                "fetch them (`git submodule update --init` in the worktree)")
    problems += _check_inputs(root, config, console)
    problems += _check_ledger(root, console)
    problems += _check_session_branch(root, console)
    problems += check_resume(root, config, console)
    problems += _check_proposer(root, config, console)
    problems += _check_review_gate(config, console)
    if gitops.head_commit(root) is not None:  # else the preconditions said so: nothing to run
        problems += _dry_run(root, config, console, problems)
    if problems:
        console.print(f"[red]{len(problems)} problem(s) found[/]")
    else:
        console.print(f"[green]ready:[/] `autoresearch run` will {what_run_does(root)}")
    return problems


def _submodules(root: Path) -> list[str]:
    """The paths of HEAD's submodules (gitlinks), if any."""
    if not (root / ".gitmodules").exists():
        return []
    out = git(root, "ls-files", "--stage", "-z", check=False)
    return [entry.split("\t", 1)[1] for entry in out.split("\0")
            if entry.startswith("160000 ") and "\t" in entry]


def _check_inputs(root: Path, config: Config, console: Console) -> list[str]:
    """[verify] inputs: each must exist outside the repository, as `run` requires."""
    if not config.verify.inputs:
        return []
    try:
        inputs = EvaluationInputs.collect(root, config.verify.inputs)
    except AutoresearchError as exc:
        console.print(f"[red]✗[/] {escape(exc.render())}")
        return [Problem.of(exc)]
    # A resumed session's must hold what it recorded when it started, or `run` refuses.
    if changed := check_resumed_inputs(root, inputs, console):
        return changed
    console.print(f"[green]✓[/] {len(config.verify.inputs)} evaluation input(s) outside the "
                  f"repository, {len(inputs.files)} file(s), held fixed for the session")
    return []


def _check_session_branch(root: Path, console: Console) -> list[str]:
    """`run` without --tag starts today's session when the ledger has none, and refuses to when
    its branch exists already (session.py): the same refusal here, with the same fix."""
    if latest_session(root) is not None:  # run resumes that one, whose branch is its own
        return []
    paths = StatePaths(root, default_tag())
    if not gitops.ref_exists(root, f"refs/heads/{paths.branch}"):
        return []
    error = PreconditionError(
        f"branch {paths.branch} exists but this repo's ledger has no session {paths.tag!r}",
        where=str(root),
        fix=f"pick another --tag, or delete the branch: git branch -D {paths.branch}")
    console.print(f"[red]✗[/] {escape(error.render())}")
    return [Problem.of(error)]


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
    console.print(f"[green]✓[/] ledger {escape(path_for_user(path, root))} is sound"
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
    resumed: ResumedIncumbent | None = None
    try:
        # On the files `run` gives it: a resumed session's incumbent's, not HEAD's.
        with readiness_tree(root) as (tree, resumed):
            ready = proposer_readiness(proposer, tree)
    except AutoresearchError as exc:
        where = "here" if resumed is None else (
            f"on session {resumed.tag}'s incumbent {resumed.commit[:10]}, where `run` resumes")
        console.print(f"[red]✗[/] proposer {escape(proposer.name)} cannot work {escape(where)}: "
                      f"{escape(exc.render())}")
        hint = None if resumed is None else only_in_head(root, config, resumed, exc)
        if hint:
            console.print(f"[yellow]→[/] {escape(hint)}", soft_wrap=True)
        return [Problem.of(exc)]
    finally:
        proposer.close()
    # A readiness line may end in warnings (`\n! ...`, tune: a knob's value outside its
    # space): each is said on its own `!` line, as the other warnings are.
    head, *warnings = (ready or "").split("\n! ")
    found = f"; {head}" if head else ""
    console.print(f"[green]✓[/] proposer {escape(described)} ({escape(why)}){escape(found)}")
    for warning in warnings:
        console.print(f"[yellow]![/] {escape(warning)}")
    unreachable = unreachable_spend_limit(config, proposer.name)  # tune spends nothing on models
    if unreachable:
        console.print(f"[yellow]![/] {escape(unreachable)}")
    return []


def _check_review_gate(config: Config, console: Console) -> list[str]:
    """`[review] gate`: the reviewers exist and the LLM ones (if any) have a model and a key."""
    if config.review.gate == "off":
        return []
    from autoresearch.review.gate import check_gate, gate_warnings

    try:
        described = check_gate(config.review, config.proposer)
    except AutoresearchError as exc:
        console.print(f"[red]✗[/] review gate: {escape(exc.render())}")
        return [Problem.of(exc)]
    console.print(f"[green]✓[/] {escape(described)} (each would-be keep is reviewed first)")
    # An unpriced model, or a cap no call fits under: the gate works, but not as it reads.
    for warning in gate_warnings(config.review, config.proposer, config.limits.max_usd):
        console.print(f"[yellow]![/] {escape(warning)}")
    return []


def _dry_run(root: Path, config: Config, console: Console, reported: list[str]) -> list[str]:
    """One run of the verify command at HEAD, made by the same executor `run` uses, with the
    share and the resources slot-1 of a session gets (a resumed session's threads: the count
    its runs got, or `run` refuses)."""
    problems: list[str] = []
    threads = session_thread_plan(root, config)
    workers = config.run.workers
    shares = plan_resources(config.run, workers, threads)
    shared = _collect_share(root, config, console, reported, problems)
    # Where `run` makes its runs (with the share, which a cluster's node links into its own
    # clone); a cluster that cannot be joined is the whole answer.
    executor = make_executor(config, workers=workers, shared=shared)
    remote = elsewhere(executor)
    if remote is None:
        console.print(f"[green]✓[/] {escape(threads.describe())}" + (
            "; set \\[run] threads to choose" if threads.why.startswith("auto") else ""))
        console.print(f"[green]✓[/] {workers} worker{'s' * (workers > 1)}: " + "; ".join(
            f"slot-{i + 1} {escape(r.describe())}" for i, r in enumerate(shares)))
        warnings = [*contention(workers, shares, resources.usable_cores()),
                    unknown_gpus(config.run)]
    else:
        console.print(f"[green]✓[/] {escape(remote[0])}")
        warnings = [remote[1]]
    if isinstance(executor, LocalExecutor):  # runs made elsewhere are checked run by run
        problems += check_resumed_threads(root, config, shares[0], console)
    for warning in warnings:
        if warning:
            console.print(f"[yellow]![/] {escape(warning)}")
    alone: Measurement | None = None  # the single run, when it passed cleanly
    sweep_stale_worktrees(root)  # of checks killed before they could remove theirs
    with contextlib.closing(executor), check_tempdir() as tmp:
        worktree = Path(tmp) / "wt"
        head = gitops.rev_parse(root, "HEAD")
        try:  # a stop inside `git worktree add` too leaves nothing registered
            gitops.ensure_detached_worktree(root, worktree, head)
            _link_share(shared, worktree, console)
            log = Path(tmp) / "check.log"
            console.print(f"… running `{escape(config.verify.command)}` once "
                          f"(budget {config.verify.budget_seconds:g} s, as slot-1 runs it)")
            m = executor.run(RunRequest(  # the share is linked and checked here
                commit=head, worktree=worktree, role="check", log_path=log,
                run_id=f"ar-check-{Path(tmp).name}", seed=0, resources=shares[0]))
            status, reason, objective, metrics = m.status, m.reason, m.objective, m.metrics
            text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
            kept = keep_in_state(root, log, "check.log")
            if status != "ok":
                problems.append(f"the verify command {happened(status)}: {reason}")
                console.print(f"[red]✗[/] verify command {status}: {escape(reason)}")
                console.print(Text(log_tail(log, 2000), style="dim"))
                console.print(f"    the whole output: {path_for_user(kept, root)}", soft_wrap=True)
                _explain_failure(root, config, console, text, worktree, kept,
                                 metrics if m.exit_code == 0 else None,
                                 node_python=_node_python(executor, remote))
            else:
                console.print(f"[green]✓[/] verify command ran in {m.duration_s:.1f} s")
                report_needs(config, m.duration_s, text, console)
            problems += metrics_table(config, console, text, metrics,
                                       failed=status != "ok" and m.exit_code != 0)
            if objective is not None and m.duration_s > config.verify.budget_seconds * 1.5 + 30:
                console.print("[yellow]![/] the run took much longer than its budget: does the "
                              "command honour AUTORESEARCH_TIME_BUDGET?")
            if shared.changed():
                problems.append("the run changed shared data: " + ", ".join(shared.changed()))
                console.print(f"[red]✗[/] the run wrote to shared files (your checkout's own): "
                              f"{escape(', '.join(shared.changed()))}")
            elif status == "ok":
                alone = m
        finally:
            gitops.remove_worktree(root, worktree)
    if workers > 1 and alone is not None:
        problems += run_together(root, config, shares, alone, console)
    return problems


def _collect_share(root: Path, config: Config, console: Console, reported: list[str],
                   problems: list[str]) -> shared_paths.SharedData:
    """`[verify] share` resolved in the checkout (nothing, with the problem said, when it cannot
    be)."""
    try:
        return shared_paths.collect(root, config)
    except AutoresearchError as exc:
        problem = Problem.of(exc)
        if problem not in reported:  # the preconditions may have said it already
            console.print(f"[red]✗[/] {escape(exc.render())}")
            problems.append(problem)
        return shared_paths.SharedData()


def _link_share(shared: shared_paths.SharedData, worktree: Path, console: Console) -> None:
    """Link `[verify] share` into the dry run's worktree, as every session worktree gets it."""
    shared.link(worktree)
    if shared:
        console.print(f"[green]✓[/] {len(shared)} shared file(s) linked from your checkout: "
                      + escape(", ".join(f.path for f in shared.files[:8]))
                      + (" …" if len(shared) > 8 else ""))


def _node_python(executor: object, remote: object) -> str | None:
    """What `{python}` is where the dry run ran, when that is not here (a Ray node)."""
    ask = getattr(executor, "node_python", None)
    found = ask() if remote is not None and callable(ask) else None
    return found if isinstance(found, str) else None


def _commit_command(root: Path, missing: str) -> str:
    """The git command that commits `missing` (relative to the repository `root`) typed where
    the user stands: git reads a path relative to the working directory."""
    here = path_for_user(Path(missing), root)
    if Path(here).is_absolute():  # outside the repository: git must be told which one
        where = shlex.quote(str(root))
        return f"git -C {where} add {shlex.quote(missing)} && git -C {where} commit"
    return f"git add {shlex.quote(here)} && git commit"


def _explain_failure(root: Path, config: Config, console: Console, text: str, worktree: Path,
                     kept: Path, metrics: dict[str, float] | None, *,
                     node_python: str | None = None) -> None:
    """Say what to change when the failure has a known cause: data the worktree lacks, or a
    metric printed in a shape the config does not read (`metrics` when the command exited 0:
    a command that failed was not expected to print its metric)."""
    hint = shared_paths.suggest_share(root, config, text, worktree)
    if hint is not None and not hint.ignored:
        # Neither committed nor ignored: most often a file the user forgot to commit (the
        # evaluation script itself), which sharing would keep outside the commit runs measure.
        console.print(
            f"[yellow]→[/] the command failed on {escape(hint.missing)}: your checkout has it, "
            "but it is not committed, and experiments run in worktrees made from the commit. "
            f"Commit it: {escape(_commit_command(root, hint.missing))} (if it is "
            "data to keep out of git instead, add it to .gitignore, commit that, and share it "
            "with every worktree: under \\[verify] in autoresearch.toml, add "
            f"{escape(hint.line)})", soft_wrap=True)
    elif hint is not None:
        shown = ", ".join(hint.files[:6]) + (" …" if len(hint.files) > 6 else "")
        console.print(
            f"[yellow]→[/] the command failed on {escape(hint.missing)}: your checkout has it, "
            "but git ignores it, so the worktree experiments run in does not. Bring it into "
            "every worktree: in autoresearch.toml, under \\[verify], add")
        console.print(f"    {escape(hint.line)}", soft_wrap=True)  # copied as is: never wrapped
        console.print(f"  (links {len(hint.files)} file(s): {escape(shown)}; see \"Data git does "
                      "not track\" in the README)")
    for line in failure_hints(root, config.verify.command, text, node_python=node_python):
        console.print(f"[yellow]→[/] {escape(line)}", soft_wrap=True)
    if metrics is not None and config.metric.name not in metrics:
        metric = config.metric
        console.print("    " + escape(format_metric_help(
            metric.format, metric.name, metric.patterns.get(metric.name))).replace(
                "expected", f"{metric.format} format: expected", 1))
        suggest_metric(config, console, text, path_for_user(kept, root))


