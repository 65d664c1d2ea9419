"""`finalize --verify`: each new branch re-measured against the base, for its own effect.

A tree is never measured twice (targets with the same tree share their runs, and runs the session
already recorded of that tree are reused); what is still missing runs round-robin across the
targets, so that slow drift of the machine spreads evenly.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from autoresearch.evaluation_inputs import EvaluationInputs
from autoresearch.executor import Measurement, elsewhere
from autoresearch.finalize import FinalizeError, FinalizeResult
from autoresearch.finalize.groups import slug
from autoresearch.gitops import tree_of
from autoresearch.gitops.runner import git
from autoresearch.ledger import Ledger, SessionRow
from autoresearch.resume_contract import REMEASURE_FIX, environment_difference, same_machine
from autoresearch.stop_signals import stop_signals_as_interrupt
from autoresearch.views.summary import open_ledger, resolve_session


class FinalizeInterrupted(FinalizeError):
    """Ctrl-C, SIGTERM or SIGHUP during --verify: its runs killed, its worktree removed."""

    exit_code = 130


def _verify_command_fails(failed: list[tuple[str, Path]]) -> None:
    """Every target's first re-measurement failed: the verify command no longer works (a
    changed config, a missing tool or data), and the other rounds would only repeat it for
    as long as their timeouts, then report the session's old runs as if re-measured."""
    first = failed[0][1]
    raise FinalizeError(
        "--verify stopped: the verify command failed on every target of its first round ("
        + "; ".join(what for what, _ in failed) + ")",
        where=f"{first} (the first failed run's log)",
        fix="fix [verify] command in autoresearch.toml (`autoresearch check` dry-runs it), then "
        "run `autoresearch finalize --verify` again; the branches are written and unchanged")


@dataclass(frozen=True)
class Effect:
    """One branch re-measured against the base; `improvement` > 0 is better whatever the direction."""

    name: str
    commit: str
    values: list[float]
    failures: list[str]
    mean: float | None
    improvement: float | None
    in_sigma: float | None
    reused: int = 0  # of `values`, how many are recorded runs of the same tree (not re-run)


@dataclass(frozen=True)
class _Comparable:
    """What the re-measurement must share with the session's recorded runs, which it reuses and
    sets beside its own: the environment (its fingerprint) and the inputs outside the
    repository (their hashes)."""

    ledger_path: Path
    session: SessionRow

    @classmethod
    def of(cls, repo: Path, tag: str, inputs: EvaluationInputs) -> _Comparable:
        ledger = open_ledger(repo)
        try:
            session = resolve_session(ledger, tag)
            recorded = ledger.events(session.id, kind="inputs")
            if inputs and recorded and recorded[-1]["data"] is not None:
                inputs.check_same_as(recorded[-1]["data"])
            return cls(ledger.path, session)
        finally:
            ledger.close()

    def here(self, executor: object) -> None:
        """Runs on this machine: refused at once on another environment than the session's."""
        if elsewhere(executor) is None:
            with self._ledger() as ledger:
                same_machine(ledger, self.session, where=str(self.ledger_path), fix=REMEASURE_FIX)

    def measured(self, m: Measurement) -> None:
        """A run made elsewhere (a cluster's node): refused when measured in another one."""
        with self._ledger() as ledger:
            diffs = environment_difference(ledger, self.session, m.fingerprint,
                                           m.fingerprint_key)
        if diffs is not None:
            raise FinalizeError(
                f"--verify stopped: its {m.role} run of {m.commit[:10]} was measured in another "
                f"environment than session {self.session.tag!r} ({diffs}); its results would not "
                "be comparable with the session's", where=str(self.ledger_path),
                fix=REMEASURE_FIX + "; the branches are written and unchanged")

    def _ledger(self) -> contextlib.closing[Ledger]:
        return contextlib.closing(Ledger(self.ledger_path, readonly=True))


def recorded_runs(repo: Path, tag: str, metric: str) -> dict[str, list[float]]:
    """Tree -> the objective of every successful run the session recorded of a commit with that
    tree (oldest first): the session's own measurements of the same files."""
    ledger = open_ledger(repo)
    try:
        session = resolve_session(ledger, tag)
        tree_of_commit = {e.commit_sha: e.tree_sha for e in ledger.experiments(session.id)
                          if e.commit_sha and e.tree_sha}
        out: dict[str, list[float]] = {}
        for run in ledger.session_runs(session.id):
            tree = tree_of_commit.get(run.commit_sha)
            if tree and run.status == "ok" and metric in run.metrics:
                out.setdefault(tree, []).append(run.metrics[metric])
        return out
    finally:
        ledger.close()


def remeasure(
    repo: Path,
    result: FinalizeResult,
    *,
    repeats: int | None = None,
    log: Callable[[str], None] | None = None,
    run: Mapping[str, str | None] | None = None,
) -> tuple[Effect, list[Effect], float | None]:
    """Measure the base, every new branch and the session tip `repeats` times each.

    The same tree is never measured twice: targets with identical trees (a single branch is the
    session's tip) share their runs, and runs the session already recorded of that tree (its
    baseline repeats, the headline's re-measurements) are reused, the most recent first. What is
    still missing runs round-robin (base, branch 1, …, tip, base, …) so that slow drift of the
    machine spreads evenly instead of favouring whatever ran first. Returns the baseline, the
    per-target effects (branches, then the whole session) and the σ used.

    The runs are made as the session made its own, so that the two can be put together: by the
    executor `run` names (`--executor`, `--ray-address`, else `[run]`), with `[verify] share`
    linked and `[verify] inputs` held to the session's, in the session's environment.
    """
    from autoresearch import gitops, shared_paths
    from autoresearch.config import CONFIG_NAME, load_config
    from autoresearch.executor import RunRequest, make_executor, new_run_id
    from autoresearch.history import run_seed
    from autoresearch.state import StatePaths

    say = log or (lambda _msg: None)
    config = load_config(repo / CONFIG_NAME).with_run(**(run or {}))
    n = repeats or max(2, config.decision.baseline_repeats(config.verify.budget_seconds))
    paths = StatePaths(repo, result.tag)
    work = paths.state_dir / "finalize" / result.tag
    worktree = work / "worktree"
    targets = [("base", result.base_commit)] + [(g.branch, g.tip) for g in result.groups]
    targets.append((f"all changes ({paths.branch})", result.session_tip))
    tree_of_target = {name: tree_of(repo, sha) for name, sha in targets}
    known = recorded_runs(repo, result.tag, config.metric.name)
    by_tree: dict[str, list[float]] = {}  # each distinct tree's values, shared by its targets
    failures: dict[str, list[str]] = {}
    reused: dict[str, int] = {}
    todo: list[tuple[int, str, str]] = []  # the first target of each tree still short of n runs
    for i, (name, sha) in enumerate(targets):
        tree = tree_of_target[name]
        if tree in by_tree:
            continue
        by_tree[tree], failures[tree] = known.get(tree, [])[-n:], []
        reused[tree] = len(by_tree[tree])
        if reused[tree]:
            say(f"{name}: reusing {reused[tree]} recorded run(s) of the same files")
        if reused[tree] < n:
            todo.append((i, name, sha))
    if todo:
        shared = shared_paths.collect(repo, config)
        inputs = EvaluationInputs.collect(repo, config.verify.inputs)
        comparable = _Comparable.of(repo, result.tag, inputs)
        gitops.remove_worktree(repo, worktree)
        work.mkdir(parents=True, exist_ok=True)
        git(repo, "worktree", "add", "--detach", "--force", str(worktree), result.base_commit)
        done = 0  # runs made by this re-measurement
        try:
            # SIGTERM and SIGHUP stop like Ctrl-C: the run's tree is killed and the worktree
            # removed below, rather than the process ending with both left behind.
            # Where the session measured (this machine or its Ray cluster): the recorded runs
            # reused above and these must be comparable.
            with stop_signals_as_interrupt(), contextlib.closing(make_executor(
                    config, shared=shared, inputs=inputs)) as executor:
                comparable.here(executor)
                for round_ in range(n):
                    round_logs: list[tuple[str, Path]] = []  # (target, log) of failed runs
                    ran = 0
                    for i, name, sha in todo:
                        tree = tree_of_target[name]
                        if len(by_tree[tree]) >= n:
                            continue
                        log_path = work / "logs" / f"{i:02d}-{slug(name)}-{round_}.log"
                        m = executor.run(RunRequest(
                            commit=sha, worktree=worktree, role="finalize", log_path=log_path,
                            run_id=new_run_id(paths.repo_key, result.tag),
                            seed=run_seed(f"{result.tag}-finalize", round_)))
                        comparable.measured(m)
                        ran += 1
                        done += 1
                        if m.objective is not None:
                            by_tree[tree].append(m.objective)
                            say(f"{name}: {config.metric.name} = {m.objective:.6g}")
                        else:
                            failures[tree].append(f"{m.status}: {m.reason}")
                            round_logs.append((f"{name}: {m.status} ({m.reason})", log_path))
                            say(f"{name}: {m.status} ({m.reason})")
                    if round_ == 0 and ran and len(round_logs) == ran:
                        _verify_command_fails(round_logs)
        except KeyboardInterrupt:
            raise FinalizeInterrupted(
                f"interrupted during --verify after {done} completed run(s): nothing was re-measured to "
                "the end", where=str(work),
                fix="the branches are written and unchanged; run `autoresearch finalize "
                "--verify` again to re-measure") from None
        finally:
            gitops.remove_worktree(repo, worktree)
    base_vals = by_tree[tree_of_target["base"]]
    sigma = result_sigma(base_vals)
    sign = config.metric.sign
    base_mean = sum(base_vals) / len(base_vals) if base_vals else None

    def effect(name: str, sha: str) -> Effect:
        tree = tree_of_target[name]
        vals = by_tree[tree]
        mean = sum(vals) / len(vals) if vals else None
        imp = sign * (mean - base_mean) if mean is not None and base_mean is not None else None
        ratio = imp / sigma if imp is not None and sigma else None
        return Effect(name, sha, vals, failures[tree], mean, imp, ratio, reused[tree])

    return effect(*targets[0]), [effect(name, sha) for name, sha in targets[1:]], sigma


def result_sigma(values: list[float]) -> float | None:
    """Sample standard deviation of the base's re-measurements (None with fewer than two)."""
    return statistics.stdev(values) if len(values) >= 2 else None
