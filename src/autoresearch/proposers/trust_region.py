"""tune's local phase: a trust region around the incumbent, sampled by an Optuna sampler.

The ratchet keeps a change only when it measurably beats the incumbent, so proposals pay off where
the incumbent's neighbourhood still holds gains. A global model (TPE) moves most knobs at once
and, on a repository whose defaults are already sensible, lands far away and worse. The local
phase moves one to three knobs of the incumbent by a step bounded by a trust region, as TuRBO
does (Eriksson et al., 2019), adapted to a ratchet with a small budget:

- the region is a length on each knob's unit scale (its range on the scale it is searched on:
  logarithmic for log knobs, grid positions for integers and ordered choices);
- a keep widens it by half (the incumbent moved: larger steps may pay again), and so does a
  near miss: a local move measured better than the incumbent but not kept. TuRBO's rule
  assumes a noiseless objective; with noise such a step was most likely too small to be told
  from the noise, and shrinking would make the next steps harder still to see;
- `fail_tol` local failures since the last keep or halving (half the number of knobs, at
  least 3; a failure is a move measured worse, a crash or a timeout) halve it; after three
  halvings it has collapsed: the neighbourhood is exhausted at the scale the noise lets us
  resolve, so the proposer makes two global moves and restarts the region at its first length;
- steps are at least half the region's radius: a change too small to measure is a wasted run;
- a move is never a repeat: steps are at least one grid step, and within a region a direction
  (knob, up or down) already tried from the incumbent is drawn less often than an untried one,
  while the direction of the last keep or near miss is drawn more often (a line search);
- with siblings in flight, their directions count as tried, as if they had failed (the local
  counterpart of TPE's constant liar), so N slots explore N different directions. (Taking the
  candidate farthest from those in flight instead favoured three-knob moves, and with 4
  workers lost half the gain.)

Everything is drawn from one `random.Random(seed)`, so a session is reproducible under `seed`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.trial import FrozenTrial

from autoresearch.proposers.knob_space import KnobSpace, Scalar, is_number

if TYPE_CHECKING:
    from optuna.study import Study

Params = Mapping[str, Any]
Direction = tuple[str, int]  # (knob key, +1 up / -1 down / 0 for an unordered choice)

LENGTH_INIT = 0.3  # a first step of ±7.5-15 % of each knob's range (×1.4-2 on a 100× log range)
LENGTH_MAX = 0.8
LENGTH_MIN = LENGTH_INIT / 6  # three halvings without a keep: the region has collapsed
# How many knobs one local move changes: mostly one or two, so a keep says which knob helped.
MOVED_WEIGHTS = {1: 0.55, 2: 0.3, 3: 0.15}
MAX_MOVED = max(MOVED_WEIGHTS)
STEP_MIN_FRACTION = 0.5  # steps are at least half the radius: a tiny change measures as noise
GROW = 1.5  # on the synthetic benchmark, as much gain as doubling and more keeps
FAIL_TOL_MIN = 3
FAIL_TOL_PER_KNOB = 0.5
TRIED_WEIGHT = 0.1  # a direction already tried from this incumbent
MOMENTUM_WEIGHT = 3.0  # the direction of the last keep or near miss
GLOBAL_BURST = 2  # global moves after a collapse, before the region restarts around the incumbent
_TRIES = 200  # draws before widening the region for one ask


def _ordered(space: KnobSpace) -> bool:
    """Choices with an order (all numbers, e.g. batch sizes) move to a neighbouring choice."""
    return space.kind == "choice" and all(is_number(c) for c in space.choices)


def _positions(space: KnobSpace) -> list[Scalar]:
    return sorted(space.choices, key=float)  # type: ignore[arg-type]


def unit(space: KnobSpace, value: Scalar) -> float:
    """Where `value` lies on the knob's search scale, from 0 (low end) to 1 (high end).

    Unordered choices have no scale: every value is 0 there, and any change counts as one step.
    """
    if space.kind == "choice":
        if not _ordered(space) or len(space.choices) < 2:
            return 0.0
        order = _positions(space)
        index = next(i for i, c in enumerate(order) if space.index(c) == space.index(value))
        return index / (len(order) - 1)
    assert isinstance(value, int | float)
    if space.kind in ("log", "logint"):
        return (math.log(value) - math.log(space.low)) / (math.log(space.high) - math.log(space.low))
    return (float(value) - space.low) / (space.high - space.low)


def _from_unit(space: KnobSpace, u: float) -> Scalar:
    u = min(max(u, 0.0), 1.0)
    if space.kind == "choice":  # ordered choices (unordered ones never come here)
        order = _positions(space)
        return order[round(u * (len(order) - 1))]
    if space.kind in ("log", "logint"):
        lo, hi = math.log(space.low), math.log(space.high)
        return space.snap(math.exp(lo + u * (hi - lo)))
    return space.snap(space.low + u * (space.high - space.low))


def uniform(space: KnobSpace, rng: random.Random) -> Scalar:
    """A value drawn uniformly on the knob's search scale (any choice, for choices)."""
    if space.kind == "choice":
        return rng.choice(space.choices)
    return _from_unit(space, rng.random())


def _grid_neighbour(space: KnobSpace, value: Scalar, sign: int) -> Scalar | None:
    """The next value on a discrete space's grid in direction `sign`, or None at the end."""
    values = _positions(space) if space.kind == "choice" else list(space.values())
    index = next(i for i, v in enumerate(values) if space.snap(v) == space.snap(value))
    target = index + sign
    return values[target] if 0 <= target < len(values) else None


def step(space: KnobSpace, value: Scalar, radius: float, sign: int, rng: random.Random) -> Scalar:
    """`value` moved in direction `sign` by between half and all of `radius` (unit scale).

    The move always changes the value: at least one grid step on discrete spaces, and the other
    way when `value` sits at the end it would move past. Unordered choices ignore the radius
    and go to another choice.
    """
    if space.kind == "choice" and not _ordered(space):
        others = [c for c in space.choices if space.index(c) != space.index(value)]
        return rng.choice(others) if others else value
    for direction in (sign, -sign):
        u = unit(space, value) + direction * rng.uniform(STEP_MIN_FRACTION * radius, radius)
        moved = _from_unit(space, u)
        if moved != value:
            return moved
        if space.size() is not None:  # a step smaller than the grid rounds back: take one
            neighbour = _grid_neighbour(space, value, direction)
            if neighbour is not None:
                return neighbour
    return value  # a space of one value: nothing can move


Position = tuple[float | None, ...]


def position(spaces: Mapping[str, KnobSpace], params: Params) -> Position:
    """Where a configuration lies: each knob's unit-scale value (an unordered choice's index);
    None for a knob that is missing or outside its space. Values are snapped first, so a
    sampler's raw suggestion and the value written to the file are the same point."""
    out: list[float | None] = []
    for key, space in spaces.items():
        value = params.get(key)
        if key not in params or not space.contains(value):
            out.append(None)
        elif space.kind == "choice" and not _ordered(space):
            out.append(float(space.index(value) or 0))
        else:
            out.append(unit(space, space.snap(value)))
    return tuple(out)


def moves(spaces: Mapping[str, KnobSpace], a: Position, b: Position) -> list[Direction]:
    """The (knob, direction) moves that take the configuration at `a` to the one at `b`."""
    found: list[Direction] = []
    for (key, space), x, y in zip(spaces.items(), a, b, strict=True):
        if x is None or y is None or abs(x - y) < 1e-12:
            continue
        unordered = space.kind == "choice" and not _ordered(space)
        found.append((key, 0 if unordered else (1 if y > x else -1)))
    return found


def moves_between(spaces: Mapping[str, KnobSpace], a: Params, b: Params) -> list[Direction]:
    """The (knob, direction) moves that take configuration `a` to `b`."""
    return moves(spaces, position(spaces, a), position(spaces, b))


@dataclass
class TrustRegion:
    """The region's length and its success/failure bookkeeping (TuRBO's, for a ratchet)."""

    dims: int
    length: float = LENGTH_INIT
    failures: int = 0
    restarts: int = 0
    global_due: int = 0  # global moves owed since the region last collapsed
    momentum: tuple[Direction, ...] = ()  # the moves of the last keep or near miss

    @property
    def fail_tol(self) -> int:
        """Local failures in a row before halving: more knobs, more directions to try first."""
        return max(FAIL_TOL_MIN, math.ceil(self.dims * FAIL_TOL_PER_KNOB))

    def success(self, moves: Sequence[Direction]) -> None:
        self.length = min(GROW * self.length, LENGTH_MAX)
        self.failures = 0
        self.momentum = tuple(moves)

    def failure(self) -> None:
        self.failures += 1
        if self.failures >= self.fail_tol:
            self.length /= 2
            self.failures = 0
            self.momentum = ()
            if self.length < LENGTH_MIN:
                # Collapsed: go global for a while, then search the neighbourhood afresh.
                self.length = LENGTH_INIT
                self.restarts += 1
                self.global_due = GLOBAL_BURST

    def near_miss(self, moves: Sequence[Direction]) -> None:
        """A local move measured better than the incumbent, but not by enough to be kept: the
        direction looks right and the step was too small to tell from the noise, so the region
        widens and the direction is favoured, as after a keep."""
        self.length = min(GROW * self.length, LENGTH_MAX)
        self.momentum = tuple(moves)

    def take_global(self) -> bool:
        """Whether a global move is due after a collapse (and count it as made)."""
        if self.global_due <= 0:
            return False
        self.global_due -= 1
        return True


@dataclass
class Neighbourhood:
    """What the sampler needs for one ask: the incumbent, the spaces, what counts as new."""

    center: dict[str, Scalar]
    spaces: dict[str, KnobSpace]
    distributions: dict[str, BaseDistribution]
    region: TrustRegion
    is_new: Callable[[dict[str, Scalar]], bool] = field(default=lambda _params: True)


class TrustRegionSampler(BaseSampler):
    """Optuna sampler proposing a move of one to three knobs of the incumbent, within the region.

    The proposer sets `neighbourhood` before each ask. The directions already tried are read
    from the study itself (every trial one to three moves away from the incumbent), so a study
    rebuilt from the ledger on resume carries the same memory.
    """

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._fallback = RandomSampler(seed=seed)
        self.neighbourhood: Neighbourhood | None = None
        # The directions tried around one center, grown as trials are added: a trial's params
        # never change once set and trials are never removed, so each is looked at once per
        # center (rescanning every trial made each local ask grow with the session: ~50 ms
        # under a profiler at 2,250 experiments).
        self._cached: tuple[Study, Position] | None = None
        self._tried: set[Direction] = set()
        self._counted: set[int] = set()

    def reseed_rng(self) -> None:
        self._rng.seed()
        self._fallback.reseed_rng()

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        hood = self.neighbourhood
        return {} if hood is None else dict(hood.distributions)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        hood = self.neighbourhood
        if hood is None or not search_space:
            return {}
        center = position(hood.spaces, hood.center)
        if self._cached is None or self._cached[0] is not study or self._cached[1] != center:
            self._cached, self._tried, self._counted = (study, center), set(), set()
        tried = self._tried  # in flight included: as a constant liar, assume they fail
        counted = self._counted
        for other in study.get_trials(deepcopy=False):
            if other.number in counted or other.number == trial.number or not other.params:
                continue  # (the trial being asked has no params yet: it is looked at later)
            counted.add(other.number)
            moved = moves(hood.spaces, center, position(hood.spaces, other.params))
            if 0 < len(moved) <= MAX_MOVED:  # a local move away from the incumbent
                tried.update(moved)
        found = self._draw(hood, tried)
        return {k: v for k, v in found.items() if k in search_space}

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        hood = self.neighbourhood
        if hood is not None and param_name in hood.center:
            return hood.center[param_name]
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    # -- drawing --------------------------------------------------------------------------------

    def _draw(self, hood: Neighbourhood, tried: set[Direction]) -> dict[str, Scalar]:
        """A new configuration near the center; the region widens for this ask if needed."""
        radius = hood.region.length / 2
        while True:
            for _ in range(_TRIES):
                candidate = self._candidate(hood, tried, radius)
                if hood.is_new(candidate):
                    return candidate
            if radius >= 1.0:
                return self._candidate(hood, tried, radius)  # the caller sees it is not new
            radius = min(2 * radius, 1.0)

    def _candidate(
        self, hood: Neighbourhood, tried: set[Direction], radius: float
    ) -> dict[str, Scalar]:
        movable = [k for k, s in hood.spaces.items() if s.size() != 1]
        counts = list(MOVED_WEIGHTS)
        n = self._rng.choices(counts, weights=[MOVED_WEIGHTS[c] for c in counts])[0]
        options: list[Direction] = []
        weights: list[float] = []
        for key in movable:
            space = hood.spaces[key]
            for sign in (0,) if space.kind == "choice" and not _ordered(space) else (1, -1):
                options.append((key, sign))
                weight = TRIED_WEIGHT if (key, sign) in tried else 1.0
                if (key, sign) in hood.region.momentum:
                    weight = MOMENTUM_WEIGHT
                weights.append(weight)
        params = dict(hood.center)
        moved: set[str] = set()
        while options and len(moved) < n:
            i = self._rng.choices(range(len(options)), weights=weights)[0]
            key, sign = options[i]
            params[key] = step(hood.spaces[key], hood.center[key], radius, sign, self._rng)
            moved.add(key)
            keep = [j for j, (k, _) in enumerate(options) if k != key]
            options = [options[j] for j in keep]
            weights = [weights[j] for j in keep]
        return params
