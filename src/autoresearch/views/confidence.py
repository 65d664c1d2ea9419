"""The confidence figure: the best result's improvement over the baseline in units of noise.

It divides by the better measured of the session's two noise floors (views.noise): the
baseline's own σ until other commits' repeats give the pooled σ more degrees of freedom, and
says which.
The colour is decided on the number the label shows, so the two can never disagree, with one
exception that only ever lowers it: see below.

Once the headline is verified (headline.py: best and baseline re-measured in interleaved pairs
at the session's end), the figure is the *re-measured* gain over σ, not the gain of the runs
that selected the best: those are the lucky ones, and a ratio over them says "green, unlikely
to be noise" on exactly the sessions whose best was noise. And while the re-measured interval
still covers 0, the figure is never green, whatever its size: the pairs have not shown it to be
better.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from autoresearch.policy import Interval
from autoresearch.views.noise import NoiseFloor, NoiseSource, baseline_runs_said

Level = Literal["green", "yellow", "red", "unknown"]


@dataclass(frozen=True)
class Confidence:
    """How far the best result stands above the noise: improvement / σ (see NoiseFloor)."""

    ratio: float | None
    level: Level
    improvement: float | None     # the gain the ratio divides (the re-measured one if verified)
    noise: float | None           # the σ the ratio divides by
    noise_runs: int               # the baseline's successful runs
    noise_source: NoiseSource     # which σ `noise` is
    noise_basis: str              # that, in a few words for a subtitle ("σ of the baseline's 3 runs")
    baseline_noise: float | None  # the baseline's own σ (None with fewer than 2 runs)
    pooled_noise: float | None    # the keep/discard rule's pooled σ
    pooled_dof: int
    label: str
    explanation: str
    verified_pairs: int = 0       # > 0: `improvement` is the headline re-measured over these pairs
    compared: bool = True         # False: nothing was kept, the best is the baseline itself


_SCALE = ("≥ 2σ (green): unlikely to be noise. 1–2σ (yellow): suggestive, worth re-measuring. "
          "< 1σ (red): within run-to-run noise.")


def _dof(dof: int) -> str:
    return f", {dof} degrees of freedom" if dof else ""


def _noise_sentence(floor: NoiseFloor, metric: str) -> str:
    if floor.source == "baseline":
        assert floor.baseline_sigma is not None
        text = (f"σ = {floor.baseline_sigma:.3g} is the standard deviation of {metric} over the "
                f"baseline's {floor.baseline_runs} repeated runs.")
        if floor.pooled_sigma is not None and floor.pooled_groups > 1:
            text += (f" (The keep/discard rule uses the pooled σ = {floor.pooled_sigma:.3g} over "
                     "every group of repeated runs: the baseline's repeats and the confirmation "
                     f"re-runs{_dof(floor.pooled_dof)}.)")
        elif floor.pooled_sigma is not None:
            text += (f" (The keep/discard rule uses the pooled σ = {floor.pooled_sigma:.3g}: "
                     "nothing but the baseline was repeated yet.)")
        return text
    if floor.source == "pooled" and floor.baseline_sigma is not None:
        assert floor.pooled_sigma is not None
        return (f"σ = {floor.pooled_sigma:.3g} is the pooled σ the keep/discard rule uses, over "
                f"every group of repeated runs{_dof(floor.pooled_dof)}: better measured than "
                f"the baseline's own σ = {floor.baseline_sigma:.3g} over its "
                f"{floor.baseline_runs} runs ({floor.baseline_dof} degrees of freedom).")
    if floor.source == "pooled":
        assert floor.pooled_sigma is not None
        return (f"{baseline_runs_said(floor.baseline_runs).capitalize()}, so its own σ is "
                f"unknown: the figure divides by the "
                f"pooled σ = {floor.pooled_sigma:.3g} of the confirmation re-runs"
                f"{_dof(floor.pooled_dof)}, the one the keep/discard rule uses.")
    return (f"The noise floor was not measured: {baseline_runs_said(floor.baseline_runs)} and "
            "nothing was re-run, so the improvement cannot be compared with it.")


def _basis(floor: NoiseFloor) -> str:
    if floor.source == "baseline":
        return f"σ of the baseline's {floor.baseline_runs} runs"
    if floor.source == "pooled" and floor.baseline_sigma is not None:
        return f"pooled σ, {floor.pooled_dof} degrees of freedom"
    return (f"pooled σ: {baseline_runs_said(floor.baseline_runs)}" if floor.source == "pooled"
            else "")


def shown_ratio(ratio: float) -> float:
    """The ratio as displayed, one decimal, truncated so the label never crosses a colour band
    the figure did not reach (1.99 shows 1.9σ, yellow; never 2.0σ in yellow)."""
    # The epsilon absorbs float error such as 0.3 / 0.1 = 2.9999999999999996; `+ 0.0` turns
    # a -0.0 into 0.0.
    return math.floor(ratio * 10 + 1e-9) / 10 + 0.0


def _level(shown: float) -> Level:
    return "green" if shown >= 2 else "yellow" if shown >= 1 else "red"


def _usable(verified: Interval | None) -> Interval | None:
    """A verification the figure can rest on: measured pairs with some spread between them
    (identical pairs are hidden noise: the headline's own line says so, and the figure keeps to
    the session's numbers and their σ)."""
    if verified is None or verified.pairs < 1 or verified.zero_noise:
        return None
    return verified if math.isfinite(verified.estimate) else None


NOTHING_TO_COMPARE = "nothing to compare yet"


def confidence(improvement: float | None, floor: NoiseFloor, metric: str,
               verified: Interval | None = None, *, compared: bool = True,
               deterministic: bool = False) -> Confidence:
    """Colour thresholds: ≥ 2σ green, 1–2σ yellow, < 1σ red, on the number the label shows;
    with a verified headline, on its re-measured gain, and never green while its interval
    covers 0. `compared` False: nothing was kept, so there is no figure (a best that is the
    baseline "improves" it by 0, which would read as a red 0.0σ, a result within the noise)."""
    check = _usable(verified) if improvement is not None else None
    if check is not None:
        improvement = check.estimate
        meaning = ("Improvement of the best kept result over the baseline as re-measured at the "
                   f"session's end ({check.pairs} interleaved pair{'s' * (check.pairs != 1)}; "
                   "the runs that selected it overstate it), in units of the noise floor σ. ")
        if check.covers(0.0):
            meaning += ("Its interval covers 0, so the figure is at most yellow: the pairs have "
                        "not shown the best to be better. ")
    else:
        meaning = ("Improvement of the best kept result over the baseline, in units of the noise "
                   "floor σ. ")
    sentence = _noise_sentence(floor, metric)
    sigma = floor.sigma
    basis = _basis(floor)
    if check is not None:
        basis = (f"gain re-measured over {check.pairs} pair{'s' * (check.pairs != 1)}"
                 + (f", {basis}" if basis else ""))

    def make(ratio: float | None, level: Level, label: str, why: str) -> Confidence:
        return Confidence(ratio, level, improvement, sigma, floor.baseline_runs, floor.source,
                          basis, floor.baseline_sigma, floor.pooled_sigma,
                          floor.pooled_dof, label, why, check.pairs if check else 0, compared)

    if improvement is None:
        return make(None, "unknown", "—", "No baseline measurement yet. " + meaning + _SCALE)
    if not compared:
        improvement = None
        return make(None, "unknown", NOTHING_TO_COMPARE,
                    "Nothing was kept yet: the best is the baseline itself, so there is no "
                    "improvement to set against the noise (the colour scale has nothing to "
                    "grade). " + sentence)
    if sigma is None or not math.isfinite(sigma) or sigma < 0:
        return make(None, "unknown", "σ unknown", sentence + " " + meaning + _SCALE)
    if sigma == 0 and deterministic:
        return make(None, "unknown", "σ = 0: deterministic",
                    "The repeated runs gave identical values (σ = 0), as the config declares "
                    "they do ([decision] deterministic = true: identical repeats are the truth), "
                    "so there is no noise to measure the improvement against and no ratio is "
                    "shown. " + meaning + _SCALE)
    if sigma == 0:
        # Identical repeats: a deterministic target (a fixed seed). Its noise is hidden, not
        # absent: a ratio over σ = 0 ("∞σ") would claim certainty nothing measured.
        return make(None, "unknown", "σ = 0: hidden",
                    "The repeated runs gave identical values (σ = 0): the noise is hidden, not "
                    "absent (a fixed seed makes every repeat the same), so no ratio is shown. "
                    "Every run gets its own seed ({seed} in the verify command, "
                    "AUTORESEARCH_SEED in its environment): use it and the noise is measured. "
                    + meaning + _SCALE)
    ratio = improvement / sigma
    shown = shown_ratio(ratio)
    label = f"{shown:.1f}σ"
    level = _level(shown)
    if verified is not None and verified.pairs >= 1 and math.isfinite(verified.estimate):
        # Re-measured worse, or not shown to be better (an interval of zero width at 0 too,
        # which `_usable` leaves out of the ratio): the colour says no more than that.
        if verified.high < 0:
            level = "red"
        elif verified.covers(0.0) and level == "green":
            level = "yellow"
    return make(ratio, level, label, meaning + sentence + " " + _SCALE)
