"""tune's memory: an Optuna study kept in step with the ledger and with the experiments in flight.

Every decided experiment the ledger knows becomes a finished trial (on resume and after each
verdict), so a restarted session keeps its memory. Each proposal is a trial left RUNNING until
its experiment is decided; the trial is found again by the experiment's id, so outcomes may
arrive in any order. Siblings in flight that this process did not propose (after a resume) are
added as RUNNING trials too, so the samplers see every point being measured (TPE's constant
liar counts them as bad results, which keeps it from proposing them again), and a RUNNING trial
whose experiment is neither in flight nor decided any more is closed, never left behind.

The trust region of the local phase is replayed from the same records, in the same order, so it
is a function of the ledger: a resumed session continues with the region it had.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState, create_trial

from autoresearch.proposers.base import ExperimentSummary, InFlight, Proposal
from autoresearch.proposers.knob_space import KnobSpace, Scalar
from autoresearch.proposers.knobs import Knob
from autoresearch.proposers.trust_region import MAX_MOVED, TrustRegion, moves_between

Signature = tuple[Hashable, ...]
UNNAMED = "#"  # the key prefix of a trial proposed without an experiment id

_STATES = {
    "keep": TrialState.COMPLETE,
    "discard": TrialState.COMPLETE,
    "crash": TrialState.FAIL,
    "timeout": TrialState.FAIL,
    "pruned": TrialState.PRUNED,
}
# Not decided yet: such a summary must not be remembered as final.
_UNDECIDED = ("proposed", "running")
# A result that says the incumbent's neighbourhood was worse in that direction.
_LOCAL_FAILURES = ("discard", "crash", "timeout", "pruned")


def distribution(space: KnobSpace) -> BaseDistribution:
    if space.kind == "choice":
        return CategoricalDistribution(space.choices)
    if space.integer:
        return IntDistribution(
            int(space.low), int(space.high), log=space.kind == "logint", step=int(space.step or 1)
        )
    return FloatDistribution(space.low, space.high, log=space.kind == "log", step=space.step)


def _state(study: optuna.Study, number: int) -> TrialState:
    return study.get_trials(deepcopy=False)[number].state


def _value_key(space: KnobSpace, value: Any) -> Hashable:
    """What makes two values the same configuration: equal once snapped (choices by position,
    so True and 1 stay apart); values outside the space compare as written."""
    if space.contains(value):
        snapped = space.snap(value)
        return ("choice", space.index(snapped)) if space.kind == "choice" else ("num", snapped)
    return ("raw", type(value).__name__, repr(value))


@dataclass(frozen=True)
class Record:
    """One decided experiment as the study sees it. state None: remembered, never a trial."""

    id: str
    status: str
    params: dict[str, Any]
    state: TrialState | None
    value: float | None
    delta: float | None = None  # the candidate's mean minus the incumbent's, when judged


def _record(summary: ExperimentSummary, params: dict[str, Any]) -> Record:
    state = _STATES.get(summary.status)
    value = summary.objective
    if state is TrialState.COMPLETE and (value is None or not math.isfinite(value)):
        state = None  # measured nothing usable: nothing to teach the model
    value = value if state is TrialState.COMPLETE else None
    return Record(summary.id, summary.status, params, state, value, summary.delta)


class TuneStudy:
    """The study, the configurations already tried, the trials in flight, the trust region."""

    def __init__(self, direction: str) -> None:
        self.direction = direction
        self.records: list[Record] = []
        self._absorbed: set[str] = set()
        self.knobs: list[Knob] = []
        self.spaces: dict[str, KnobSpace] = {}
        self.dists: dict[str, BaseDistribution] = {}
        self.study: optuna.Study | None = None
        self.seen: set[Signature] = set()
        self.pending: dict[str, int] = {}  # experiment id -> its RUNNING trial's number
        self.region = TrustRegion(dims=0)
        self._space_key: Hashable = None
        self._last_kept: dict[str, Any] | None = None

    # -- what the ledger says -------------------------------------------------------------------

    def absorb(self, summary: ExperimentSummary, proposal: Proposal | None = None) -> None:
        """Remember one decided experiment once (observe and ctx.history may both report it)."""
        if summary.id in self._absorbed or summary.status in _UNDECIDED:
            return
        self._absorbed.add(summary.id)
        params = summary.params or (proposal.params if proposal is not None else None)
        if not params:
            self.pending.pop(summary.id, None)  # not a knob experiment after all
            return
        record = _record(summary, dict(params))
        self.records.append(record)
        if self.study is not None:
            self._fold(self.study, record)

    def adopt(self, knobs: list[Knob], direction: str, sampler: BaseSampler) -> None:
        """Use a knob set; a different set of spaces means a new study rebuilt from memory."""
        self.knobs = knobs
        space_key = tuple((k.key, k.space) for k in knobs)
        if space_key == self._space_key and self.study is not None:
            return
        self._space_key = space_key
        self.spaces = {k.key: k.space for k in knobs}
        self.dists = {k.key: distribution(k.space) for k in knobs}
        self.direction = direction
        self.seen = set()
        self.pending = {}
        self.region = TrustRegion(dims=len(knobs))
        self._last_kept = None
        study = optuna.create_study(
            direction="maximize" if direction == "maximize" else "minimize", sampler=sampler
        )
        for record in self.records:
            self._fold(study, record)
        self.study = study

    def _fold(self, study: optuna.Study, record: Record) -> None:
        """Mark the record's configuration as tried, tell the study, move the trust region."""
        sig = self.signature(record.params)
        if sig is not None:
            self.seen.add(sig)
        self._steer(record)
        number = self.pending.pop(record.id, None)
        if number is None and sig is not None:
            # Proposed without an experiment id (a caller other than the session): by value.
            key = next((k for k, n in self.pending.items()
                        if k.startswith(UNNAMED) and self._sig_of(study, n) == sig), None)
            number = None if key is None else self.pending.pop(key)
        if number is not None and _state(study, number) is TrialState.RUNNING:
            if record.state is TrialState.COMPLETE:
                study.tell(number, record.value)
            else:
                study.tell(number, state=record.state or TrialState.FAIL)
            return
        trial = self._frozen(record)
        if trial is not None:
            study.add_trial(trial)

    def _sig_of(self, study: optuna.Study, number: int) -> Signature | None:
        params = study.get_trials(deepcopy=False)[number].params
        snapped = self.snapped(params)
        return None if snapped is None else self.signature(snapped)

    def _steer(self, record: Record) -> None:
        """TuRBO's bookkeeping: a keep widens the region, a local failure counts toward shrinking."""
        if record.status == "keep":
            if self._last_kept is not None:
                self.region.success(moves_between(self.spaces, self._last_kept, record.params))
            self._last_kept = record.params
        elif record.status in _LOCAL_FAILURES and self._last_kept is not None:
            moved = moves_between(self.spaces, self._last_kept, record.params)
            if not 0 < len(moved) <= MAX_MOVED:
                return  # a global move: it says nothing about the neighbourhood
            sign = -1.0 if self.direction == "maximize" else 1.0
            if record.status == "discard" and record.delta is not None and sign * record.delta < 0:
                # Better than the incumbent but not by enough to be kept: the direction looks
                # right and the step was too small to tell from the noise.
                self.region.near_miss(moved)
            else:
                self.region.failure()

    def _frozen(self, record: Record) -> FrozenTrial | None:
        state = record.state
        if state is None:
            return None
        params = self.snapped(record.params)
        if params is None:
            return None  # outside today's space: Optuna would reject it
        return create_trial(
            state=state,
            value=record.value if state is TrialState.COMPLETE else None,
            params=params,
            distributions=self.dists,
        )

    # -- configurations -------------------------------------------------------------------------

    def snapped(self, params: Mapping[str, Any]) -> dict[str, Scalar] | None:
        """`params` on the knobs' canonical values, or None when one is missing or outside."""
        out: dict[str, Scalar] = {}
        for knob in self.knobs:
            value = params.get(knob.key)
            if knob.key not in params or not knob.space.contains(value):
                return None
            out[knob.key] = knob.space.snap(value)
        return out

    def signature(self, params: Mapping[str, Any]) -> Signature | None:
        if any(k.key not in params for k in self.knobs):
            return None
        return tuple(_value_key(k.space, params[k.key]) for k in self.knobs)

    def is_new(self, params: Mapping[str, Any]) -> bool:
        sig = self.signature(params)
        return sig is not None and sig not in self.seen

    def claim(self, params: Mapping[str, Any]) -> bool:
        """Mark `params` as tried; False when it already was."""
        sig = self.signature(params)
        if sig is None or sig in self.seen:
            return False
        self.seen.add(sig)
        return True

    # -- trials in flight -----------------------------------------------------------------------

    def track(self, key: str, number: int) -> None:
        """Trial `number` is the one experiment `key` will be told to."""
        self.pending[key] = number

    def running(self, key: str, params: Mapping[str, Any]) -> int | None:
        """A RUNNING trial for `params` (a configuration proposed elsewhere, now in flight)."""
        assert self.study is not None
        snapped = self.snapped(params)
        if snapped is None:
            return None
        trial = create_trial(state=TrialState.RUNNING, params=snapped, distributions=self.dists)
        self.study.add_trial(trial)
        number = len(self.study.trials) - 1
        self.pending[key] = number
        return number

    def sync(self, in_flight: Sequence[InFlight], proposing: str) -> None:
        """Match the RUNNING trials to what the session says is in flight right now.

        Siblings not yet known become RUNNING trials; a RUNNING trial whose experiment is neither
        in flight nor the one being proposed was abandoned (interrupted, or lost to a kill) and
        is closed as failed, which every sampler ignores. Its configuration stays tried.
        """
        assert self.study is not None
        live = {f.id for f in in_flight}
        for key, number in list(self.pending.items()):
            if key in live or key == proposing:
                continue
            del self.pending[key]
            if _state(self.study, number) is TrialState.RUNNING:
                self.study.tell(number, state=TrialState.FAIL)
        for sibling in in_flight:
            if sibling.id in self.pending or sibling.id in self._absorbed:
                continue
            if sibling.params:
                self.claim(sibling.params)
                self.running(sibling.id, sibling.params)

    def pending_count(self) -> int:
        return len(self.pending)

    def best_value(self) -> float | None:
        values = [r.value for r in self.records if r.value is not None]
        if not values:
            return None
        sign = -1.0 if self.direction == "maximize" else 1.0
        return min(values, key=lambda v: sign * v)

    def measured(self) -> int:
        return sum(r.value is not None for r in self.records)

    def close(self) -> None:
        self.study = None
        self.pending = {}
        self._space_key = None
