"""The offline proposer: Optuna's ask/tell over the repository's knobs, in memory.

Each proposal is either a local move (a trust region around the incumbent, `trust_region.py`)
or a global one (the configured sampler, TPE by default), on a schedule: local first, a global
move every few proposals, and a burst of global moves whenever the region collapses.
The study and its bookkeeping live in `tune_study.py`. Proposals only rewrite knob lines of the
incumbent's files, so a full parameter set determines the knob lines completely; that is what
lets us promise never to run the same configuration twice, in flight or in the past.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import os
import random
import threading
import warnings
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.samplers import BaseSampler
from optuna.trial import TrialState

from autoresearch.errors import ConfigError, ProposalError
from autoresearch.proposers.base import (
    ExperimentOutcome,
    Proposal,
    ProposalContext,
    Proposer,
)
from autoresearch.proposers.knob_discovery import discover_knobs, require_knobs
from autoresearch.proposers.knob_files import in_scope_files
from autoresearch.proposers.knob_render import render_value
from autoresearch.proposers.knob_report import describe_knobs
from autoresearch.proposers.knob_space import Scalar
from autoresearch.proposers.knobs import (
    Knob,
    KnobError,
    read_source,
    read_text,
    read_value,
    rewrite,
)
from autoresearch.proposers.options import TUNE_OPTIONS
from autoresearch.proposers.trust_region import Neighbourhood, TrustRegionSampler, uniform
from autoresearch.proposers.tune_study import UNNAMED, TuneStudy

_SAMPLERS = {"tpe": "TPE", "random": "random search", "gp": "Gaussian process", "cmaes": "CMA-ES"}
_REQUIRES = {"gp": ("torch", "scipy"), "cmaes": ("cmaes",)}
# Asking the model costs milliseconds; once it keeps suggesting tried points it has converged,
# and cheap local moves find something new faster than more asks would.
_MAX_ASKS = 4
_UNIFORM_TRIES = 1000
_ENUMERATE_LIMIT = 50_000  # below this many configurations, exhaustion is checked exactly
_STUCK_BURST = 3  # random proposals per burst while stuck (with the local phase off)
# After the start, one proposal in GLOBAL_EVERY is the global sampler's: enough to find a
# better basin when there is one, while most experiments go where gains are likely.
GLOBAL_EVERY = 4

if TYPE_CHECKING:
    from autoresearch.config import Config


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


def _bool_option(options: Mapping[str, Any], key: str, default: bool) -> bool:
    raw = options.get(key, default)
    if not isinstance(raw, bool):
        raise ConfigError(
            f"proposer option {key} must be true or false, got {raw!r}",
            where=_where(key),
            fix=f"{key} = true (or false), without quotes",
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
            # Batches of in-flight trials are handled by its acquisition function (qEI).
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup)
        if name == "cmaes":
            return optuna.samplers.CmaEsSampler(
                seed=seed, n_startup_trials=n_startup, warn_independent_sampling=False
            )
        # constant_liar: trials still RUNNING count as bad results, so N asks made before any
        # is told spread out instead of landing on the same promising point N times.
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=n_startup, constant_liar=True
        )


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


class TuneProposer(Proposer):
    """Optuna over the knobs, with a local phase around the incumbent.

    Options: sampler (tpe|random|gp|cmaes), seed, n_startup_trials, start (local|global),
    local (true|false). The first n_startup_trials candidates are local moves (start = "local")
    or the sampler's own start (start = "global"). With local = true (the default) the trust
    region then takes three proposals in four, the sampler the fourth; with local = false the
    sampler takes them all, with bursts of random points when the session is stuck.
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
        # Random search is asked for as a baseline: it gets no local phase.
        searching = sampler != "random"
        self._local_start = start == "local" and searching
        self._local_phase = _bool_option(self.options, "local", True) and searching
        offset = 0 if self._seed is None else self._seed
        self._local = TrustRegionSampler(seed=None if self._seed is None else offset + 2)
        # A plain random sampler, used in bursts to escape when stuck (local phase off).
        self._explorer = optuna.samplers.RandomSampler(
            seed=None if self._seed is None else offset + 1
        )
        self._rng = random.Random(self._seed)
        self._memory = TuneStudy(self.config.metric.direction)
        self._knobs: list[Knob] = []
        self._discovery_key: Hashable = None
        self._stuck_proposals = 0
        # The scheduler may ask from several slots at once; one study, one writer at a time.
        self._lock = threading.RLock()

    # -- memory ---------------------------------------------------------------------------------

    def observe(self, outcome: ExperimentOutcome) -> None:
        with self._lock:
            self._memory.absorb(outcome.summary, outcome.proposal)

    def resume(self, history: Sequence[ExperimentOutcome]) -> None:
        """Learn the session's decided experiments. Nothing is in flight at a (re)start: trials
        still RUNNING are closed; the session names the experiments it resumes in `in_flight`
        of the next context, and they become running trials again there."""
        with self._lock:
            for outcome in history:
                self._memory.absorb(outcome.summary, outcome.proposal)
            if self._memory.study is not None:
                self._memory.sync((), proposing="")

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
            self._knobs = knobs
            self._memory.adopt(knobs, ctx.direction, self._sampler)
        return self._knobs

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
        return describe_knobs(require_knobs(worktree, self.config), worktree, self.config.scope)

    # -- proposing ------------------------------------------------------------------------------

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        with self._lock:
            return self._propose(ctx)

    def _propose(self, ctx: ProposalContext) -> Proposal | None:
        memory = self._memory
        for summary in ctx.history:
            memory.absorb(summary)
        knobs = self._discover(ctx)
        if not knobs:
            raise ProposalError(
                "the tune proposer found no knobs to tune",
                where="autoresearch.toml → knobs, and the in-scope files",
                fix='declare knobs ("train.py:LR" = "log(1e-4, 1e-1)") or mark lines '
                "(LR = 0.02  # knob: log(1e-3, 1e-1))",
            )
        texts = {file: read_text(ctx.worktree / file) for file in {k.file for k in knobs}}
        current = {k.key: read_value(texts[k.file], k) for k in knobs}
        memory.claim(current)  # whatever the ledger says, the incumbent has been run
        memory.sync(ctx.in_flight, ctx.experiment_id)

        local, global_sampler, note = self._schedule(ctx.stuck)
        found = (
            (self._ask_local(current, local) if local else None)
            or self._ask(global_sampler)
            or (None if local else self._ask_local(current, "a local move (the sampler only "
                                                            "repeated tried points)"))
            or self._fallback()
        )
        if found is None:
            return None  # every configuration of a finite space has been tried
        params, how, number = found
        if number is not None:
            memory.track(ctx.experiment_id or f"{UNNAMED}{number}", number)
        return self._proposal(knobs, texts, current, params, f"{how}{note}")

    def _schedule(self, stuck: bool) -> tuple[str | None, BaseSampler, str]:
        """This proposal's move: (a label if it is local, else None; the global sampler to ask;
        a note for the rationale)."""
        memory = self._memory
        made = max(0, len(memory.records) - 1) + memory.pending_count()  # after the baseline
        if not self._local_phase and (stuck or made >= self._n_startup):
            return (None, *self._when_stuck(stuck))
        if made < self._n_startup:
            if self._local_start:
                return "local start: a neighbour of the incumbent", self._sampler, ""
            return None, self._sampler, ""
        region = memory.region
        if region.take_global():
            return None, self._sampler, (
                f"; the trust region collapsed (restart {region.restarts}): a global move "
                "before searching the incumbent's neighbourhood afresh"
            )
        if (made - self._n_startup) % GLOBAL_EVERY == GLOBAL_EVERY - 1:
            return None, self._sampler, f"; a global move (one in {GLOBAL_EVERY} after the start)"
        label = (
            f"local: trust region ±{region.length / 2:.0%} of each knob's range around the "
            "incumbent"
        )
        return label, self._sampler, ""

    def _when_stuck(self, stuck: bool) -> tuple[BaseSampler, str]:
        """Without a local phase: bursts of random points while the session is stuck."""
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
        return self._sampler, (
            f"; stuck, back to {_SAMPLERS[self._sampler_name]} after a random burst"
        )

    def _ask_local(
        self, current: Mapping[str, Any], label: str
    ) -> tuple[dict[str, Scalar], str, int | None] | None:
        """A move of one to three knobs of the incumbent, inside the trust region."""
        memory = self._memory
        center = memory.snapped(current)
        if center is None:  # the incumbent sits outside a space: start from a random point in it
            center = {
                k.key: k.space.snap(current[k.key])
                if k.space.contains(current[k.key])
                else uniform(k.space, self._rng)
                for k in self._knobs
            }
        self._local.neighbourhood = Neighbourhood(
            center, memory.spaces, memory.dists, memory.region, memory.is_new
        )
        found = self._ask(self._local, label)
        self._local.neighbourhood = None
        return found

    def _ask(
        self, sampler: BaseSampler, label: str | None = None
    ) -> tuple[dict[str, Scalar], str, int | None] | None:
        study = self._memory.study
        assert study is not None
        if label is None:
            label = (
                "random exploration" if sampler is self._explorer else _SAMPLERS[self._sampler_name]
            )
        previous = study.sampler
        study.sampler = sampler
        try:
            for _ in range(1 if sampler is self._local else _MAX_ASKS):
                trial = study.ask(self._memory.dists)
                params = {k.key: k.space.snap(trial.params[k.key]) for k in self._knobs}
                if self._memory.claim(params):
                    # The trial keeps the sampler's unsnapped values (Optuna cannot change a
                    # suggested value); they differ from the written ones by < 1e-4 relative.
                    return params, f"{label} (trial {trial.number})", trial.number
                # A repeat: close it as failed, which every sampler ignores, and ask again.
                trial.set_user_attr("tune", "repeat")
                study.tell(trial.number, state=TrialState.FAIL)
        finally:
            study.sampler = previous
        return None

    def _fallback(self) -> tuple[dict[str, Scalar], str, int | None] | None:
        """A new configuration when the samplers only repeat themselves; None when none is left."""
        sizes = [k.space.size() for k in self._knobs]
        if (
            all(s is not None for s in sizes)
            and math.prod(s or 0 for s in sizes) <= _ENUMERATE_LIMIT
        ):
            grid = list(itertools.product(*(list(k.space.values()) for k in self._knobs)))
            self._rng.shuffle(grid)
            for combo in grid:
                params = {k.key: v for k, v in zip(self._knobs, combo, strict=True)}
                if self._memory.claim(params):
                    return params, "an untried configuration (the space is nearly exhausted)", None
            return None
        for _ in range(_UNIFORM_TRIES):
            params = {k.key: uniform(k.space, self._rng) for k in self._knobs}
            if self._memory.claim(params):
                return params, "uniform random configuration (neighbours were all tried)", None
        return None

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

    def replay(self, before: Mapping[str, str | None], after: Mapping[str, str | None],
               worktree: Path) -> Proposal | None:
        """A tune change is a set of knob values: on a newer incumbent, the knobs it set take
        its values and every other line keeps the incumbent's (a knob the keep set too takes
        this change's value, which is then measured against the keep, and the hypothesis says
        from which of the keep's values). None when the change is more than knob values (an
        edit of another line, a file made or removed) or a knob's line is gone from the
        incumbent."""
        with self._lock:
            knobs = list(self._knobs)
        names = [k.name for k in knobs]
        edits: dict[str, str | None] = {}
        changes: list[str] = []
        for file, new in after.items():
            old, mine = before.get(file), [k for k in knobs if k.file == file]
            if old is None or new is None or not mine:
                return None
            try:
                current = read_text(worktree / file)
                changed = [k for k in mine if not _same(read_value(new, k), read_value(old, k))]
                assignments = {k.name: read_value(new, k) for k in changed}
                if not assignments or rewrite(old, assignments, path=file) != new:
                    return None  # not only knob values: git's conflict stands
                edits[file] = rewrite(current, assignments, path=file)
                for k in changed:
                    label = k.name if names.count(k.name) == 1 else k.key
                    was, now = read_source(current, k), read_source(edits[file] or "", k)
                    if was != now:
                        changes.append(f"{label} {was} → {now}")
            except (KnobError, OSError, ValueError):  # a knob's line gone, the file too
                return None
        if not edits:
            return None
        return Proposal(hypothesis="tune: " + (", ".join(changes) or "no knob left to change"),
                        edits=edits, rationale="replayed onto a newer incumbent")

    def _rationale(self, how: str) -> str:
        best = self._memory.best_value()
        shown = "" if best is None else f", best {best:.6g}"
        return f"{how}; {self._memory.measured()} measured configuration(s) so far{shown}"

    def describe(self) -> str:
        seed = "" if self._seed is None else f", seed {self._seed}"
        knobs = f", {len(self._knobs)} knobs" if self._knobs else ""
        local = ", local phase" if self._local_phase else ""
        return f"tune ({_SAMPLERS[self._sampler_name]}{local}{seed}{knobs})"

    def close(self) -> None:
        with self._lock:
            self._memory.close()
            self._discovery_key = None
