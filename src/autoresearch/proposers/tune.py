"""The offline proposer: Optuna's ask/tell over the repository's knobs, in memory.

Every experiment the ledger knows becomes a finished trial (on resume and after each verdict), so
a restarted session keeps its memory. Proposals only rewrite knob lines of the incumbent's files,
so a full parameter set determines the knob lines completely; that is what lets us promise never
to run the same configuration twice.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import os
import random
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState, create_trial

from autoresearch.errors import ConfigError, ProposalError
from autoresearch.proposers.base import (
    ExperimentOutcome,
    ExperimentSummary,
    Proposal,
    ProposalContext,
    Proposer,
)
from autoresearch.proposers.knobs import (
    Knob,
    KnobSpace,
    Scalar,
    describe_knobs,
    discover_knobs,
    in_scope_files,
    read_source,
    read_text,
    read_value,
    render_value,
    require_knobs,
    rewrite,
)
from autoresearch.proposers.options import TUNE_OPTIONS

_SAMPLERS = {"tpe": "TPE", "random": "random search", "gp": "Gaussian process", "cmaes": "CMA-ES"}
_REQUIRES = {"gp": ("torch", "scipy"), "cmaes": ("cmaes",)}
_STATES = {
    "keep": TrialState.COMPLETE,
    "discard": TrialState.COMPLETE,
    "crash": TrialState.FAIL,
    "timeout": TrialState.FAIL,
    "pruned": TrialState.PRUNED,
}
# Asking the model costs milliseconds; once it keeps suggesting tried points it has converged,
# and cheap local moves find something new faster than more asks would.
_MAX_ASKS = 4
_NEIGHBOUR_TRIES = 200
_UNIFORM_TRIES = 1000
_ENUMERATE_LIMIT = 50_000  # below this many configurations, exhaustion is checked exactly
_STUCK_BURST = 3  # random proposals per burst while the session is stuck

if TYPE_CHECKING:
    from autoresearch.config import Config

Signature = tuple[Hashable, ...]


def _where(key: str) -> str:
    return f"autoresearch.toml → proposer.{key}"


def _int_option(options: Mapping[str, Any], key: str, default: int | None) -> int | None:
    raw = options.get(key, default)
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise ConfigError(
            f"proposer option {key} must be a non-negative integer, got {raw!r}", where=_where(key)
        )
    return raw


def _build_sampler(name: str, seed: int | None, n_startup: int) -> BaseSampler:
    """The sampler named in the options; raise ConfigError when its dependencies are missing."""
    missing = [m for m in _REQUIRES.get(name, ()) if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f'sampler = "{name}" needs {" and ".join(missing)}, which is not installed',
            where=_where("sampler"),
            fix=f'pip install {" ".join(missing)}, or use sampler = "tpe"',
        )
    # Some samplers flag parts of themselves as experimental; that is noise for our users.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "gp":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup)
        if name == "cmaes":
            return optuna.samplers.CmaEsSampler(
                seed=seed, n_startup_trials=n_startup, warn_independent_sampling=False
            )
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup)


def _distribution(space: KnobSpace) -> BaseDistribution:
    if space.kind == "choice":
        return CategoricalDistribution(space.choices)
    if space.integer:
        return IntDistribution(
            int(space.low), int(space.high), log=space.kind == "logint", step=int(space.step or 1)
        )
    return FloatDistribution(space.low, space.high, log=space.kind == "log", step=space.step)


def _value_key(space: KnobSpace, value: Any) -> Hashable:
    """What makes two values the same configuration: equal once snapped (choices by position,
    so True and 1 stay apart); values outside the space compare as written."""
    if space.contains(value):
        snapped = space.snap(value)
        return ("choice", space.index(snapped)) if space.kind == "choice" else ("num", snapped)
    return ("raw", type(value).__name__, repr(value))


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


@dataclass(frozen=True)
class _Record:
    """One past experiment as the study sees it. state None: remembered, never a trial."""

    params: dict[str, Any]
    state: TrialState | None
    value: float | None


def _record(summary: ExperimentSummary, params: dict[str, Any]) -> _Record:
    state = _STATES.get(summary.status)
    value = summary.objective
    if state is TrialState.COMPLETE and (value is None or not math.isfinite(value)):
        state = None  # measured nothing usable: nothing to teach the model
    return _Record(params, state, value if state is TrialState.COMPLETE else None)


class TuneProposer(Proposer):
    """Optuna over the knobs.

    Options: sampler (tpe|random|gp|cmaes), seed, n_startup_trials, start (local|global).
    With start = "local" (the default) the first n_startup_trials candidates are neighbours of
    the incumbent (one or two knobs moved): a repository's defaults are usually sensible, and
    a handful of global random draws from a 10-dimensional space mostly lands far worse. The
    sampler's model then takes over with those results.
    """

    name = "tune"
    known_options = TUNE_OPTIONS

    def __init__(self, config: Config, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(config, options)
        # The CLI draws its own display; Optuna's per-trial INFO lines would interleave with it.
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = str(self.options.get("sampler", "tpe")).lower()
        if sampler not in _SAMPLERS:
            raise ConfigError(
                f"unknown tune sampler {sampler!r}",
                where=_where("sampler"),
                fix=f"use one of: {', '.join(_SAMPLERS)}",
            )
        self._sampler_name = sampler
        self._seed = _int_option(self.options, "seed", None)
        n_startup = _int_option(self.options, "n_startup_trials", 5) or 0
        self._sampler = _build_sampler(sampler, self._seed, n_startup)
        self._n_startup = n_startup
        start = str(self.options.get("start", "local")).lower()
        if start not in ("local", "global"):
            raise ConfigError(f"unknown tune start {start!r}", where=_where("start"),
                              fix='use "local" (neighbours of the incumbent first) or "global"')
        self._local_start = start == "local" and sampler != "random"
        # A plain random sampler, used in bursts to escape when the session is stuck.
        self._explorer = optuna.samplers.RandomSampler(
            seed=None if self._seed is None else self._seed + 1
        )
        self._rng = random.Random(self._seed)
        self._records: list[_Record] = []
        self._absorbed: set[str] = set()
        self._knobs: list[Knob] = []
        self._discovery_key: Hashable = None
        self._space_key: Hashable = None
        self._study: optuna.Study | None = None
        self._dists: dict[str, BaseDistribution] = {}
        self._seen: set[Signature] = set()
        self._pending: dict[Signature, int] = {}  # asked trials awaiting their verdict
        self._stuck_proposals = 0
        self._direction: str = self.config.metric.direction

    # -- memory ---------------------------------------------------------------------------------

    def observe(self, outcome: ExperimentOutcome) -> None:
        self._absorb(outcome.summary, outcome.proposal)

    def _absorb(self, summary: ExperimentSummary, proposal: Proposal | None = None) -> None:
        """Remember one experiment once (observe and ctx.history may both report it)."""
        if summary.id in self._absorbed:
            return
        self._absorbed.add(summary.id)
        params = summary.params or (proposal.params if proposal is not None else None)
        if not params:
            return  # not a knob experiment (e.g. another proposer's code change)
        record = _record(summary, dict(params))
        self._records.append(record)
        if self._study is not None:
            self._fold(self._study, record)

    def _fold(self, study: optuna.Study, record: _Record) -> None:
        """Mark the record's configuration as tried and give the study its trial."""
        sig = self._signature(record.params)
        if sig is not None:
            self._seen.add(sig)
        number = self._pending.pop(sig, None) if sig is not None else None
        if number is not None:
            if record.state is TrialState.COMPLETE:
                study.tell(number, record.value)
            else:
                study.tell(number, state=record.state or TrialState.FAIL)
            return
        trial = self._frozen(record)
        if trial is not None:
            study.add_trial(trial)

    def _frozen(self, record: _Record) -> FrozenTrial | None:
        if record.state is None:
            return None
        params: dict[str, Any] = {}
        for knob in self._knobs:
            value = record.params.get(knob.key)
            if knob.key not in record.params or not knob.space.contains(value):
                return None  # outside today's space: Optuna would reject it
            params[knob.key] = knob.space.snap(value)
        return create_trial(
            state=record.state, value=record.value, params=params, distributions=self._dists
        )

    def _signature(self, params: Mapping[str, Any]) -> Signature | None:
        if any(k.key not in params for k in self._knobs):
            return None
        return tuple(_value_key(k.space, params[k.key]) for k in self._knobs)

    # -- knobs ----------------------------------------------------------------------------------

    def _discover(self, ctx: ProposalContext) -> list[Knob]:
        """Knobs of the incumbent's checkout, rediscovered only when an in-scope file changed."""
        stamps: list[tuple[str, int, int]] = []
        for rel in ctx.scope_files:
            try:
                st = os.stat(ctx.worktree / rel)
                stamps.append((rel, st.st_mtime_ns, st.st_size))
            except OSError:
                stamps.append((rel, -1, -1))
        key = (str(ctx.worktree), tuple(stamps), tuple(sorted(self.config.knobs.items())))
        if key != self._discovery_key:
            knobs = discover_knobs(
                ctx.worktree,
                self.config.knobs,
                list(ctx.scope_files),
                protected=self.config.all_protected,
            )
            self._discovery_key = key
            self._use_knobs(knobs, ctx.direction)
        return self._knobs

    def _use_knobs(self, knobs: list[Knob], direction: str) -> None:
        """Adopt a knob set; a different set of spaces means a new study rebuilt from memory."""
        self._knobs = knobs
        space_key = tuple((k.key, k.space) for k in knobs)
        if space_key == self._space_key and self._study is not None:
            return
        self._space_key = space_key
        self._dists = {k.key: _distribution(k.space) for k in knobs}
        self._direction = direction
        self._seen = set()
        self._pending = {}
        study = optuna.create_study(
            direction="maximize" if direction == "maximize" else "minimize", sampler=self._sampler
        )
        for record in self._records:
            self._fold(study, record)
        self._study = study

    def initial_params(self, worktree: Path) -> dict[str, Scalar]:
        """The knobs' values in `worktree`: what the loop records as the baseline's params."""
        files = in_scope_files(worktree, self.config.scope)
        knobs = discover_knobs(
            worktree, self.config.knobs, files, protected=self.config.all_protected
        )
        texts = {file: read_text(worktree / file) for file in {k.file for k in knobs}}
        return {k.key: read_value(texts[k.file], k) for k in knobs}

    def check_ready(self, worktree: Path) -> str:
        """The knobs tune would search in `worktree`, checked before anything runs (`check`,
        `run`): a ConfigError saying how to fix it when there are none or one is broken."""
        return describe_knobs(require_knobs(worktree, self.config))

    # -- proposing ------------------------------------------------------------------------------

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        for summary in ctx.history:
            self._absorb(summary)
        knobs = self._discover(ctx)
        if not knobs:
            raise ProposalError(
                "the tune proposer found no knobs to tune",
                where="autoresearch.toml → knobs, and the in-scope files",
                fix='declare knobs ("train.py:LR" = "log(1e-4, 1e-1)") or mark lines '
                "(LR = 0.02  # knob: log(1e-3, 1e-1))",
            )
        study = self._study
        assert study is not None
        texts = {file: read_text(ctx.worktree / file) for file in {k.file for k in knobs}}
        current = {k.key: read_value(texts[k.file], k) for k in knobs}
        incumbent = self._signature(current)
        if incumbent is not None:
            self._seen.add(incumbent)  # whatever the ledger says, the incumbent has been run

        sampler, note = self._strategy(ctx.stuck)
        found = (
            (None if ctx.stuck else self._local(study, current))
            or self._ask(study, sampler)
            or self._fallback(current)
        )
        if found is None:
            return None  # every configuration of a finite space has been tried
        params, how = found
        return self._proposal(knobs, texts, current, params, f"{how}{note}")

    def _strategy(self, stuck: bool) -> tuple[BaseSampler, str]:
        if not stuck:
            self._stuck_proposals = 0
            return self._sampler, ""
        n = self._stuck_proposals
        self._stuck_proposals += 1
        if self._sampler_name == "random":
            return self._sampler, "; stuck, and already sampling at random"
        # Alternate bursts: random points to leave the basin, then the model again on what
        # they taught it, rather than letting the model keep refining a stale optimum.
        if (n // _STUCK_BURST) % 2 == 0:
            left = _STUCK_BURST - 1 - n % _STUCK_BURST
            return self._explorer, (
                f"; stuck after {self.config.decision.stuck_after} discards in a row, so "
                f"exploring at random ({left} more random proposal(s) in this burst)"
            )
        return (
            self._sampler,
            f"; stuck, back to {_SAMPLERS[self._sampler_name]} after a random burst",
        )

    def _ask(
        self, study: optuna.Study, sampler: BaseSampler
    ) -> tuple[dict[str, Scalar], str] | None:
        label = "random exploration" if sampler is self._explorer else _SAMPLERS[self._sampler_name]
        previous = study.sampler
        study.sampler = sampler
        try:
            for _ in range(_MAX_ASKS):
                trial = study.ask(self._dists)
                params = {k.key: k.space.snap(trial.params[k.key]) for k in self._knobs}
                sig = self._signature(params)
                assert sig is not None
                if sig not in self._seen:
                    # The trial keeps the sampler's unsnapped values (Optuna cannot change a
                    # suggested value); they differ from the written ones by < 1e-4 relative.
                    self._pending[sig] = trial.number
                    self._seen.add(sig)
                    return params, f"{label} (trial {trial.number})"
                # A repeat: close it as failed, which every sampler ignores, and ask again.
                study.tell(trial.number, state=TrialState.FAIL)
        finally:
            study.sampler = previous
        return None

    def _local(
        self, study: optuna.Study, current: Mapping[str, Any]
    ) -> tuple[dict[str, Scalar], str] | None:
        """During the start, a neighbour of the incumbent, told to the study as its trial."""
        if not self._local_start:
            return None
        if len(self._records) > self._n_startup:  # the baseline plus the local start
            return None
        found = self._neighbour(current)
        if found is None:
            return None
        study.enqueue_trial(found, skip_if_exists=False)
        trial = study.ask(self._dists)
        sig = self._signature(found)
        assert sig is not None
        self._pending[sig] = trial.number
        return found, f"local start: a neighbour of the incumbent (trial {trial.number})"

    def _neighbour(self, current: Mapping[str, Any]) -> dict[str, Scalar] | None:
        """The incumbent with one or two knobs moved, never a configuration tried before."""
        start = {
            k.key: k.space.snap(current[k.key])
            if k.space.contains(current[k.key])
            else _uniform(k.space, self._rng)
            for k in self._knobs
        }
        for _ in range(_NEIGHBOUR_TRIES):
            params = dict(start)
            for knob in self._rng.sample(
                self._knobs, k=min(len(self._knobs), self._rng.randint(1, 2))
            ):
                params[knob.key] = _perturb(knob.space, params[knob.key], self._rng)
            if self._claim(params):
                return params
        return None

    def _fallback(self, current: Mapping[str, Any]) -> tuple[dict[str, Scalar], str] | None:
        """A new configuration when the sampler only repeats itself; None when none is left."""
        params = self._neighbour(current)
        if params is not None:
            return (
                params,
                "random neighbour of the incumbent (the sampler only repeated tried points)",
            )
        sizes = [k.space.size() for k in self._knobs]
        if (
            all(s is not None for s in sizes)
            and math.prod(s or 0 for s in sizes) <= _ENUMERATE_LIMIT
        ):
            grid = list(itertools.product(*(list(k.space.values()) for k in self._knobs)))
            self._rng.shuffle(grid)
            for combo in grid:
                params = {k.key: v for k, v in zip(self._knobs, combo, strict=True)}
                if self._claim(params):
                    return params, "an untried configuration (the space is nearly exhausted)"
            return None
        for _ in range(_UNIFORM_TRIES):
            params = {k.key: _uniform(k.space, self._rng) for k in self._knobs}
            if self._claim(params):
                return params, "uniform random configuration (neighbours were all tried)"
        return None

    def _claim(self, params: Mapping[str, Any]) -> bool:
        sig = self._signature(params)
        if sig is None or sig in self._seen:
            return False
        self._seen.add(sig)
        return True

    def _proposal(
        self,
        knobs: Sequence[Knob],
        texts: Mapping[str, str],
        current: Mapping[str, Any],
        params: dict[str, Scalar],
        how: str,
    ) -> Proposal:
        names = [k.name for k in knobs]
        changes: list[str] = []
        per_file: dict[str, dict[str, Scalar]] = {}
        for knob in knobs:
            value = params[knob.key]
            if _same(value, current[knob.key]):
                continue
            old = read_source(texts[knob.file], knob)
            new = render_value(value, old, knob.dialect)
            label = knob.name if names.count(knob.name) == 1 else knob.key
            changes.append(f"{label} {old} → {new}")
            per_file.setdefault(knob.file, {})[knob.name] = value
        edits: dict[str, str | None] = {}
        for file, assignments in per_file.items():
            try:
                edits[file] = rewrite(texts[file], assignments, path=file)
            except ValueError as exc:
                raise ProposalError(
                    f"tune could not write its proposal to {file}: {exc}",
                    where=file,
                    fix="use a choice(...) of plain literals for this knob",
                ) from None
        if not edits:  # unreachable: the incumbent's configuration is always marked as tried
            raise ProposalError("tune proposed the incumbent's own configuration", where="tune")
        return Proposal(
            hypothesis="tune: " + ", ".join(changes),
            edits=edits,
            params=dict(params),
            rationale=self._rationale(how),
        )

    def _rationale(self, how: str) -> str:
        values = [r.value for r in self._records if r.value is not None]
        sign = -1.0 if self._direction == "maximize" else 1.0
        best = f", best {min(values, key=lambda v: sign * v):.6g}" if values else ""
        return f"{how}; {len(values)} measured configuration(s) so far{best}"

    def describe(self) -> str:
        seed = "" if self._seed is None else f", seed {self._seed}"
        knobs = f", {len(self._knobs)} knobs" if self._knobs else ""
        return f"tune ({_SAMPLERS[self._sampler_name]}{seed}{knobs})"

    def close(self) -> None:
        self._study = None
        self._pending = {}
        self._space_key = None


def _bounds(space: KnobSpace) -> tuple[float, float]:
    """The space's ends on the scale it is searched on (log for log spaces)."""
    if space.kind in ("log", "logint"):
        return math.log(space.low), math.log(space.high)
    return space.low, space.high


def _from_scale(space: KnobSpace, t: float) -> Scalar:
    return space.snap(math.exp(t) if space.kind in ("log", "logint") else t)


def _uniform(space: KnobSpace, rng: random.Random) -> Scalar:
    if space.kind == "choice":
        return rng.choice(space.choices)
    lo, hi = _bounds(space)
    return _from_scale(space, rng.uniform(lo, hi))


def _perturb(space: KnobSpace, value: Scalar, rng: random.Random) -> Scalar:
    """A nearby value: another choice, or a gaussian step of 15 % of the range (search scale)."""
    if space.kind == "choice":
        others = [c for c in space.choices if not _same(c, value)]
        return rng.choice(others) if others else value
    lo, hi = _bounds(space)
    assert isinstance(value, int | float)
    t = math.log(value) if space.kind in ("log", "logint") else float(value)
    t = min(max(t + rng.gauss(0.0, 0.15 * (hi - lo)), lo), hi)
    moved = _from_scale(space, t)
    if _same(moved, value) and space.integer:
        # Small steps round back onto an integer; move one grid step instead.
        step = int(space.step or 1)
        candidate = int(value) + rng.choice((-step, step))
        return (
            candidate
            if space.low <= candidate <= space.high
            else int(value) - (candidate - int(value))
        )
    return moved
