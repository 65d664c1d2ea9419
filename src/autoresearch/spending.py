"""The sequential design: how much false-keep risk each look at a candidate may spend.

A candidate is looked at after each of its runs (looks 1 … max_runs). Looking again until the
numbers happen to clear a fixed bar keeps null changes far more often than the bar's nominal rate
(five uncorrected looks at a 2.3 % bar keep about 5 %), so the total rate `alpha` is *spent* over
the looks (Lan & DeMets' error spending): by look m the design may have kept a null change with
probability at most α(t_m) = alpha · t_m^rho, where t_m is the look's information fraction (the
precision of the estimate at look m over the precision at the last look). rho = 1 spends evenly
(Pocock-like), rho = 3 saves the rate for the late looks (O'Brien–Fleming-like).

The boundaries are computed exactly for the looks the candidate actually had: the standardised
effects Z_1, Z_2, … of one candidate are correlated (each look adds runs to the last; their
correlation is √(I_j / I_k)), and a candidate below the futility bound is discarded at once
(binding futility), so the boundary of look k is the z that makes

    P(no keep and no futility stop at looks 1 … k−1, then Z_k ≥ b_k | no effect) = α(t_k) − α(t_{k−1})

computed by numerical integration over the looks (the Armitage–McPherson–Rowe recursion, as in
Jennison & Turnbull, *Group Sequential Methods*, ch. 19).

The information expected at the last look can grow while a candidate is judged (an interleaved
pair adds an incumbent run, so the last look will be more precise than first planned). Each look's
fraction is taken against the last look's information *as it was known at that look*, and a
boundary once applied is never recomputed on a later look's terms: recomputing the earlier looks
with the larger final information makes them look stricter than they were, so the recursion
credits them with less spent rate than they really spent and the later looks overspend (three
incumbent runs, then pairs, a well-measured σ: a null change was kept 1.7 % of the time at a
nominal 1 %; 1.03 % since). A later look spends what is left up to α(t) on its own scale, nothing
when the earlier looks already spent that much; a final below the look's own information is
raised to it.

The z boundary is then used as a nominal p-value against a Student t on the look's degrees of
freedom, so an estimated σ is not trusted as if it were known. A keep needs `min_runs` candidate
runs; the rate those looks would have spent goes to the first look that may keep.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import optimize, special

_GRID = 161  # points per look (odd: Simpson's rule)
_SPAN = 8.0  # grid half-width in standard deviations


@dataclass(frozen=True)
class Design:
    alpha: float = 0.01  # false-keep rate per candidate, over all its looks
    max_runs: int = 10  # the candidate's runs at most (its last look)
    min_runs: int = 2  # the first look at which a keep is possible
    rho: float = 2.0  # shape of the spending function α·t^rho
    # Futility: a candidate goes on only while its z is within a margin of what a true
    # improvement of `effect` σ would show at this look (effect·√information): far below that,
    # more runs are unlikely to make it a keep. At the first look the margin is `margin`, so a
    # null change usually stops after one run; after it, `late_margin`, wider: every futility
    # look is another chance to drop a true improvement on an unlucky run (with 1.6 at every
    # look, a quarter of true 2σ improvements were dropped at looks 2 to 7).
    effect: float = 2.0
    margin: float = 1.5
    late_margin: float = 2.2

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 0.5:
            raise ValueError(f"alpha must be in (0, 0.5), got {self.alpha}")
        if not 1 <= self.min_runs <= self.max_runs:
            raise ValueError(f"need 1 ≤ min_runs ({self.min_runs}) ≤ max_runs ({self.max_runs})")
        if self.rho <= 0:
            raise ValueError(f"rho must be positive, got {self.rho}")

    def last(self, look: int) -> bool:
        return look >= self.max_runs

    def futility_bound(self, look: int, information: float) -> float:
        """Below this z after `look` (with `information`, in units of 1/σ² of one run), the
        candidate is discarded without more runs."""
        if self.last(look):
            return -math.inf
        margin = self.margin if look <= 1 else self.late_margin
        return self.effect * math.sqrt(information) - margin

    def spent(self, fraction: float) -> float:
        return self.alpha * float(min(1.0, max(0.0, fraction)) ** self.rho)

    def boundary(self, information: Sequence[float], final: float | Sequence[float]) -> float:
        """The z a keep needs at the latest look, given the information of every look so far
        (`information[j]` for look j + 1, in units of 1/σ² of one run: 1/(1/m + 1/n) for m
        candidate and n incumbent runs) and the information expected at the last look: one
        value, or the value as known at each look (`final[j]` for look j + 1).
        inf when no keep is possible at this look."""
        look = len(information)
        if look < self.min_runs or look > self.max_runs:
            return math.inf
        finals = [final] * look if isinstance(final, (int, float)) else list(final)
        if len(finals) != look:
            raise ValueError(f"{look} looks but {len(finals)} final informations")
        info = tuple(round(i, 6) for i in information)
        known = tuple(round(max(f, i), 6) for f, i in zip(finals, info, strict=True))
        return float(_boundaries(self, info, known)[-1])


@lru_cache(maxsize=4096)
def _boundaries(design: Design, info: tuple[float, ...],
                finals: tuple[float, ...]) -> tuple[float, ...]:
    """z boundaries of looks 1 … len(info), given each look's information and the last look's
    information as known at each look. The recursion runs on the absolute information scale
    (S_j = Z_j·√I_j has independent increments of variance I_j − I_{j−1}); the finals only
    set how much of α each look may have spent by then."""
    fixed = float(-special.ndtri(design.alpha))
    bounds: list[float] = []
    spent = 0.0
    grid: np.ndarray | None = None  # S values of the continuation region at the previous look
    density: np.ndarray | None = None  # sub-density of S there (mass not yet stopped)
    previous = 0.0
    for j, (absolute, final) in enumerate(zip(info, finals, strict=True), start=1):
        step = absolute - previous
        if step <= 0.0:
            raise ValueError("each look must add information")
        sd = math.sqrt(step)

        def upper(s: float, g: np.ndarray | None = grid, d: np.ndarray | None = density,
                  sd: float = sd) -> float:
            """P(reaching this look and S_j ≥ s)."""
            if g is None or d is None:
                return float(special.ndtr(-s / sd))
            return float(_simpson(g, d * special.ndtr((g - s) / sd)))

        target = design.alpha if design.last(j) else design.spent(absolute / final)
        can_keep = j >= design.min_runs
        root = math.sqrt(absolute)
        low = design.futility_bound(j, absolute) * root
        if can_keep and target - spent > 1e-12:
            budget = target - spent
            reach = upper(-math.inf if math.isinf(low) else low)
            if budget >= reach:
                # Everything still going on could keep; but never on less evidence than one
                # test at the full rate would need.
                high = max(low, fixed * root)
            else:
                start = low if math.isfinite(low) else -_SPAN * root
                high = float(optimize.brentq(lambda s, b=budget: upper(s) - b, start,
                                             _SPAN * root + 10.0, xtol=1e-9))
            spent += min(budget, reach)
            bounds.append(high / root)
        else:
            high = math.inf
            bounds.append(math.inf)
        if design.last(j):
            break
        low = min(low, high)  # a futility bound above the keep bound: everything stops here
        # The mass that goes on: S_j in [low, high), carried to the next look.
        top = min(high, _SPAN * root)
        bottom = max(low, -_SPAN * root)
        if top <= bottom:
            grid, density = np.array([bottom, bottom + 1e-9]), np.zeros(2)
        else:
            new_grid = np.linspace(bottom, top, _GRID)
            if grid is None or density is None:
                new_density = np.exp(-0.5 * (new_grid / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
            else:
                kernel = np.exp(-0.5 * ((new_grid[:, None] - grid[None, :]) / sd) ** 2) \
                    / (sd * math.sqrt(2 * math.pi))
                new_density = _simpson(grid, kernel * density[None, :], axis=1)
            grid, density = new_grid, new_density
        previous = absolute
    return tuple(bounds)


def _simpson(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Simpson's rule on an evenly spaced grid (an odd number of points; 2 points: trapezoid)."""
    n = x.shape[0]
    h = (x[-1] - x[0]) / (n - 1)
    if n < 3 or n % 2 == 0:
        w = np.full(n, h)
        w[0] = w[-1] = h / 2.0
    else:
        w = np.ones(n) * h / 3.0
        w[1:-1:2], w[2:-1:2] = 4.0 * h / 3.0, 2.0 * h / 3.0
    return np.asarray(np.tensordot(y, w, axes=([axis], [0])))


def t_upper(level: float, dof: float) -> float:
    """The Student-t quantile with upper tail `level` at `dof` degrees of freedom (normal when
    dof is infinite). scipy's ufuncs directly: the policy asks for several per look."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if not math.isfinite(dof):
        return float(-special.ndtri(level))
    return float(-special.stdtrit(max(dof, 1e-3), level))


def z_to_t(z: float, dof: float) -> float:
    """The t statistic with the same upper tail as the standard normal z (inf stays inf)."""
    if math.isinf(z):
        return z
    return t_upper(float(special.ndtr(-z)), dof)


def t_to_z(t: float, dof: float) -> float:
    """The standard normal z with the same upper tail as a Student t statistic."""
    if math.isinf(t) or not math.isfinite(dof):
        return t
    tail = float(special.stdtr(max(dof, 1e-3), -t))
    if tail <= 0.0:
        return math.inf
    return float(-special.ndtri(tail))
