"""`finalize --verify`: each new branch re-measured against the base, for its own effect.

Only unbiased measurements are set side by side. A kept candidate's own runs are the lucky ones
that selected it, and the session's baseline runs are from another time than today's (had the
machine drifted since, the drift would be taken for the branches' effects): neither is reused.
What may be reused is the headline: the session's best and its base, re-measured in interleaved
pairs at the session's end (roles "headline" and "headline-baseline"). When the headline covers
every target but the base (the common case: one branch, whose tree is the session's tip),
nothing is run again. Nor is it reused when the config measures something else since the
session ran (another verify command, budget or environment): everything is measured afresh.

Otherwise the base is measured again with every target that needs fresh runs, in rounds (base,
branch 1, branch 2, …, then in the reverse order, so that a linear drift cancels over every two
rounds). A branch's effect is the mean of its differences from the base's run of the same round,
with the t interval of those differences; targets with identical trees share their runs, so a
tree is never measured twice in one round. The session tip keeps the headline's pairs when it has
them (shown as reused), else it is measured like a branch.

A first run that fails is made once more at once (one failure may be chance). A branch that
fails both while the base succeeds crashes on its own (it needs another branch's change, such as
a helper it imports): it is reported so and not run again. Only a base that fails both means the
verify command no longer works, and stops --verify at once.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from autoresearch.evaluation_inputs import EvaluationInputs
from autoresearch.executor import Measurement, elsewhere
from autoresearch.finalize import FinalizeError, FinalizeResult
from autoresearch.finalize.groups import slug
from autoresearch.gitops import tree_of
from autoresearch.gitops.runner import git
from autoresearch.headline import runs_varied, why_no_spread
from autoresearch.ledger import Ledger, SessionRow
from autoresearch.policy import Interval, paired_interval
from autoresearch.resume_contract import (
    REMEASURE_FIX,
    environment_difference,
    measurement_changes,
    same_machine,
)
from autoresearch.stop_signals import stop_signals_as_interrupt
from autoresearch.views.summary import open_ledger, resolve_session

if TYPE_CHECKING:
    from autoresearch.config import Config

FRESH, HEADLINE = "fresh", "headline"  # where a target's runs come from
CONFIDENCE = 0.95
CRASHES_ALONE = "crashes on its own (needs an earlier branch?)"


class FinalizeInterrupted(FinalizeError):
    """Ctrl-C, SIGTERM or SIGHUP during --verify: its runs killed, its worktree removed."""

    exit_code = 130


@dataclass(frozen=True)
class Effect:
    """One target against the base; `improvement` > 0 is better whatever the direction."""

    name: str
    commit: str
    values: list[float]  # the target's own objective, run by run
    failures: list[str]
    mean: float | None
    improvement: float | None  # the mean of its paired differences from the base
    interval: Interval | None  # the t interval of those differences
    source: str = FRESH  # FRESH: measured now; HEADLINE: the headline's pairs, reused
    crashed_alone: bool = False  # its first run failed where the base's did not: not run again
    note: str = ""  # what went wrong with its runs, for the table
    pairs: tuple[tuple[float, float], ...] = ()  # (target, base) of each round or headline pair
    same_as_base: bool = False  # its files are the base's: measured as the base, no effect

    @property
    def reused(self) -> bool:
        return self.source == HEADLINE

    @property
    def seeds_shared(self) -> bool:
        """Every difference the same though the runs varied: each round's (or headline pair's)
        runs shared a seed, on purpose (its noise cancels in their difference), and on a target
        whose change does not interact with that noise nothing is left to spread."""
        iv = self.interval
        return iv is not None and iv.zero_noise and runs_varied(self.pairs)

    def no_spread(self) -> str | None:
        """Why the interval has no width when every difference was the same, as the headline
        says it of its pairs (headline.why_no_spread); None when it has one."""
        iv = self.interval
        if iv is None or not iv.zero_noise:
            return None
        unit = "pair" if self.reused else "round"
        shared = "each pair's two runs" if self.reused else "each round's base and branch runs"
        why = why_no_spread(self.pairs, shared=shared, measured=f"the {unit}s", what="effect")
        exact = "; the effect is exact for these seeds" if self.seeds_shared else ""
        return f"{iv.estimate:+.4g} in each of its {iv.pairs} {unit}s: {why}{exact}"


@dataclass(frozen=True)
class Verification:
    base: Effect
    effects: list[Effect]  # the branches, then the whole session
    rounds: int  # how many rounds of fresh runs were made (0: the headline's runs only)

    @property
    def base_sigma(self) -> float | None:
        """Sample standard deviation of the base's runs (None with fewer than two)."""
        return statistics.stdev(self.base.values) if len(self.base.values) >= 2 else None

    @property
    def incomplete(self) -> bool:
        """Some target has failed runs, or none that count."""
        return any(e.failures or e.improvement is None for e in self.effects)


@dataclass
class _Arm:
    """A distinct tree measured in this verification: its runs, round by round."""

    index: int
    name: str
    commit: str
    values: dict[int, float] = field(default_factory=dict)  # round -> objective
    failures: list[str] = field(default_factory=list)
    crashed_alone: bool = False
    whole_session: bool = False  # the session tip's tree: it needs no other change

    @property
    def note(self) -> str:
        if self.crashed_alone:
            alone = "fails where the base does not" if self.whole_session else CRASHES_ALONE
            return f"{alone}: {self.failures[0]}"
        return f"{len(self.failures)} run(s) failed: {self.failures[0]}" if self.failures else ""


@dataclass(frozen=True)
class _Comparable:
    """What the fresh runs must share with the session's recorded ones, which may stand beside
    them (the headline's): the environment (its fingerprint) and the inputs outside the
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


def headline_pairs(repo: Path, tag: str, config: Config, base_tree: str
                   ) -> dict[str, list[tuple[float, float]]]:
    """Tree -> the (best, baseline) pairs of the newest headline that re-measured a commit with
    that tree against one with the base's tree, in the same metric. The only recorded runs that
    are re-measurements: every other run of the session took part in selecting what it ran."""
    ledger = open_ledger(repo)
    try:
        session = resolve_session(ledger, tag)
        # The config measures something else now (another metric, command, budget or
        # environment since the session ran): everything is measured afresh.
        if session.metric != config.metric.name or measurement_changes(session.config, config):
            return {}
        found = [e["data"] for e in ledger.events(session.id, kind="headline") if e["data"]]
    finally:
        ledger.close()
    out: dict[str, list[tuple[float, float]]] = {}
    for data in reversed(found):  # newest first: the first seen of a tree is kept
        pairs = [(float(best), float(baseline)) for best, baseline in data.get("pairs", [])]
        best_tree = _tree_or_none(repo, str(data.get("best_commit") or ""))
        baseline_tree = _tree_or_none(repo, str(data.get("baseline_commit") or ""))
        if best_tree and baseline_tree == base_tree and pairs:
            out.setdefault(best_tree, pairs)
    return out


def _tree_or_none(repo: Path, commit: str) -> str | None:
    if not commit:
        return None
    return git(repo, "rev-parse", "--verify", "--quiet", f"{commit}^{{tree}}",
               check=False).strip() or None


def remeasure(
    repo: Path,
    result: FinalizeResult,
    *,
    repeats: int | None = None,
    log: Callable[[str], None] | None = None,
    run: Mapping[str, str | None] | None = None,
) -> Verification:
    """Measure every new branch and the session tip against the base, `repeats` times each
    (see the module docstring for what is reused and how the rest is paired).

    The runs are made as the session made its own, so that the two can be put together: by the
    executor `run` names (`--executor`, `--ray-address`, else `[run]`), with `[verify] share`
    linked and `[verify] inputs` held to the session's, in the session's environment.
    """
    from autoresearch.config import CONFIG_NAME, load_config

    say = log or (lambda _msg: None)
    config = load_config(repo / CONFIG_NAME).with_run(**(run or {}))
    n = repeats or max(2, config.decision.baseline_repeats(config.verify.budget_seconds))
    targets = [(g.branch, g.tip) for g in result.groups]
    targets.append((f"all changes ({_session_branch(repo, result.tag)})", result.session_tip))
    tree = {sha: tree_of(repo, sha) for sha in [result.base_commit] + [s for _, s in targets]}
    base_tree, tip_tree = tree[result.base_commit], tree[result.session_tip]
    # Every pair the headline measured (at least n): one left out would narrow the interval on
    # less data while the table says "its n pairs".
    reusable = {t: pairs for t, pairs in headline_pairs(
        repo, result.tag, config, base_tree).items() if len(pairs) >= n}
    arms: dict[str, _Arm] = {base_tree: _Arm(0, "base", result.base_commit)}
    for i, (name, sha) in enumerate(targets, start=1):
        if tree[sha] not in reusable and tree[sha] not in arms:
            arms[tree[sha]] = _Arm(i, name, sha, whole_session=tree[sha] == tip_tree)
    rounds = 0
    if len(arms) > 1:  # some target needs fresh runs: so does the base, beside them
        rounds = n
        _measure(repo, result.tag, config, list(arms.values()), n, say)
    direction = config.metric.direction
    effects = []
    for name, sha in targets:
        if tree[sha] in arms:
            effects.append(_fresh_effect(name, sha, arms[tree[sha]], arms[base_tree], direction))
        else:
            say(f"{name}: reusing the headline's {len(reusable[tree[sha]])} interleaved pair(s) "
                "with the base, measured at the session's end")
            effects.append(_headline_effect(name, sha, reusable[tree[sha]], direction))
    if rounds:
        base = _effect_of_runs("base", result.base_commit, arms[base_tree], FRESH)
    else:
        pairs = reusable[tree[targets[-1][1]]]
        say(f"base: reusing the headline's {len(pairs)} run(s) of the base")
        base = Effect("base", result.base_commit, [b for _, b in pairs], [],
                      statistics.fmean(b for _, b in pairs), None, None, HEADLINE)
    return Verification(base, effects, rounds)


def _session_branch(repo: Path, tag: str) -> str:
    from autoresearch.state import StatePaths

    return StatePaths(repo, tag).branch


def _fresh_effect(name: str, sha: str, arm: _Arm, base: _Arm, direction: str) -> Effect:
    """A target measured now: its differences from the base's run of the same round."""
    effect = _effect_of_runs(name, sha, arm, FRESH)
    if arm is base:
        # The target is the base's files (its changes undo each other): measured as the base,
        # its effect is none by construction, not a difference with no spread.
        return replace(effect, improvement=0.0 if effect.values else None, same_as_base=True)
    pairs = [(arm.values[r], base.values[r]) for r in sorted(arm.values) if r in base.values]
    interval = paired_interval(pairs, direction, CONFIDENCE) if pairs else None
    return Effect(name, sha, effect.values, effect.failures, effect.mean,
                  interval.estimate if interval else None, interval, FRESH, arm.crashed_alone,
                  arm.note, tuple(pairs))


def _effect_of_runs(name: str, sha: str, arm: _Arm, source: str) -> Effect:
    values = [arm.values[r] for r in sorted(arm.values)]
    mean = statistics.fmean(values) if values else None
    return Effect(name, sha, values, list(arm.failures), mean, None, None, source,
                  arm.crashed_alone, arm.note)


def _headline_effect(name: str, sha: str, pairs: list[tuple[float, float]],
                     direction: str) -> Effect:
    interval = paired_interval(pairs, direction, CONFIDENCE)
    values = [best for best, _ in pairs]
    return Effect(name, sha, values, [], statistics.fmean(values), interval.estimate, interval,
                  HEADLINE, pairs=tuple(pairs))


def _measure(repo: Path, tag: str, config: Config, arms: list[_Arm], n: int,
             say: Callable[[str], None]) -> None:
    """Run `n` rounds of the arms (the base first) in one worktree, each arm once a round, the
    order reversed every other round; fills each arm's values and failures."""
    from autoresearch import gitops, shared_paths
    from autoresearch.executor import RunRequest, make_executor, new_run_id
    from autoresearch.history import run_seed
    from autoresearch.state import StatePaths

    paths = StatePaths(repo, tag)
    work = paths.state_dir / "finalize" / tag
    worktree = work / "worktree"
    shared = shared_paths.collect(repo, config)
    inputs = EvaluationInputs.collect(repo, config.verify.inputs)
    comparable = _Comparable.of(repo, tag, inputs)
    _fresh_worktree(repo, worktree, arms[0].commit)
    done = 0  # runs made by this re-measurement
    try:
        # SIGTERM and SIGHUP stop like Ctrl-C: the run's tree is killed and the worktree
        # removed below, rather than the process ending with both left behind.
        # Where the session measured (this machine or its Ray cluster): the headline's runs
        # reused beside these must be comparable with them.
        with stop_signals_as_interrupt(), contextlib.closing(make_executor(
                config, shared=shared, inputs=inputs)) as executor:
            comparable.here(executor)
            def run(arm: _Arm, round_: int, again: bool = False) -> tuple[str, Path] | None:
                """One run of `arm` for `round_`; (what failed, its log) when it failed."""
                nonlocal done
                name = f"{arm.index:02d}-{slug(arm.name)}-{round_}{'-again' if again else ''}"
                log_path = work / "logs" / f"{name}.log"
                m = executor.run(RunRequest(
                    commit=arm.commit, worktree=worktree, role="finalize", log_path=log_path,
                    run_id=new_run_id(paths.repo_key, tag),
                    seed=run_seed(f"{tag}-finalize", round_)))  # again: the round's seed
                comparable.measured(m)
                done += 1
                if m.objective is not None:
                    arm.values[round_] = m.objective
                    say(f"{arm.name}: {config.metric.name} = {m.objective:.6g}")
                    return None
                arm.failures.append(f"{m.status} ({m.reason})")
                say(f"{arm.name}: {m.status} ({m.reason})")
                return f"{arm.name}: {m.status} ({m.reason})", log_path

            for round_ in range(n):
                failed: list[tuple[str, Path]] = []  # (target, log) of this round's failed runs
                for arm in arms if round_ % 2 == 0 else reversed(arms):
                    if not arm.crashed_alone and (failure := run(arm, round_)) is not None:
                        failed.append(failure)
                if round_ == 0 and failed:
                    # Once more at once: one failed run may be chance (a flaky test, a busy
                    # machine); two in a row are the target's own.
                    say(f"{len(failed)} first run(s) failed: each is run once more, to tell a "
                        "failure of its own from one by chance")
                    failed = [failure for arm in arms if arm.failures
                              if (failure := run(arm, round_, again=True)) is not None]
                if round_ == 0:
                    _after_first_round(arms, failed)
    except KeyboardInterrupt:
        raise FinalizeInterrupted(
            f"interrupted during --verify after {done} completed run(s): nothing was re-measured "
            "to the end", where=str(work),
            fix="the branches are written and unchanged; run `autoresearch finalize "
            "--verify` again to re-measure") from None
    finally:
        gitops.remove_worktree(repo, worktree)


def _fresh_worktree(repo: Path, worktree: Path, commit: str) -> None:
    """The measuring worktree, made anew: what an earlier finalize left there (killed, or broken
    by another finalize before there was a lock) is removed first."""
    from autoresearch import gitops

    gitops.remove_worktree(repo, worktree)
    worktree.parent.mkdir(parents=True, exist_ok=True)
    git(repo, "worktree", "add", "--detach", "--force", str(worktree), commit)


def _after_first_round(arms: list[_Arm], failed: list[tuple[str, Path]]) -> None:
    """`failed`: the first round's runs that failed again when run once more. A base among them:
    the verify command no longer works (a changed config, a missing tool or data), and the other
    rounds would only repeat it for as long as their timeouts. A branch that failed twice where
    the base did not crashes on its own (it needs another branch's change): not run again."""
    base = arms[0]
    if 0 not in base.values:
        _verify_command_fails(failed, everywhere=len(failed) == len(arms))
    for arm in arms[1:]:
        arm.crashed_alone = 0 not in arm.values


def _verify_command_fails(failed: list[tuple[str, Path]], *, everywhere: bool) -> None:
    first = failed[0][1]
    which = "on every target of its first round, twice" if everywhere else (
        "on the base in its first round, twice: there is nothing to compare the branches with")
    raise FinalizeError(
        f"--verify stopped: the verify command failed {which} ("
        + "; ".join(what for what, _ in failed) + ")",
        where=f"{first} (the first failed run's log)",
        fix="fix [verify] command in autoresearch.toml (`autoresearch check` dry-runs it), then "
        "run `autoresearch finalize --verify` again; the branches are written and unchanged")
