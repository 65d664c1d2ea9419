"""The `[decision]`, `[limits]`, `[run]` and `[review]` tables of `autoresearch.toml`, the
number types every table shares, and the range each number may take.

Every number has a range it is refused outside of, named in the error (config_errors.py says it
from the bounds declared here): a finite but extreme value crashed a session (`max_log_mb =
1e308` overflowed the log cap, `drift_prior = 1e-300` the drift model) or quietly made it do
nothing (`max_usd = 0` stopped it before its baseline). A key the chosen setting never reads
(`noise_k` under the sequential rule) is refused, naming the setting that would read it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from autoresearch.config_errors import Refusal

_RELATIVE = re.compile(r"^\s*([+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)\s*%\s*$")

# The longest a duration field may be (a budget, a timeout): 30 days.
MAX_SECONDS = 30 * 86400.0
MAX_USD = 1_000_000.0
MAX_REPEATS = 100
MAX_THREADS = 4096
MAX_HEADLINE_PAIRS = 50
MIN_HEADLINE_PAIRS = 2  # one pair gives no interval (scheduler.MIN_HEADLINE_PAIRS)
MIN_RAY_SHARE = 0.01  # the least of a CPU or GPU a run may reserve on a Ray cluster

# The variables that set a run's thread count (resources.py), read at start-up by: OpenMP
# (GNU/LLVM/Intel; PyTorch's intra-op pool), MKL, OpenBLAS, BLIS, Apple Accelerate, numexpr, and
# Rayon (polars, Hugging Face tokenizers).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS",
                    "RAYON_NUM_THREADS")


def thread_count_problem(text: str) -> str | None:
    """Why `text` is not a thread count a run can be given, a whole number from 1 to
    MAX_THREADS as `[run] threads` is ("not a whole number", "out of range"; None: it is one).
    A library reads "0", "-3" or "abc" its own way (OpenMP falls back to every core, MKL to 1),
    "4,2" is a nested OpenMP list the others misread, and 999999 threads exhaust the machine:
    each is a count the harness would report and the run not get."""
    if not text.isdigit() or not text.isascii():
        return "not a whole number"
    if not 1 <= int(text) <= MAX_THREADS:
        return "out of range"
    return None


class Amount(BaseModel):
    """A threshold that is either absolute (0.001) or relative to the incumbent ("0.5%")."""

    value: float
    relative: bool

    @classmethod
    def parse(cls, raw: float | int | str) -> Amount:
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            # (a list or a table reached the regex below: a TypeError, a traceback)
            raise ValueError("expected a number or a percentage string such as \"0.5%\", got "
                             + json.dumps(raw, default=str, ensure_ascii=False))
        if isinstance(raw, int | float):
            return cls(value=_finite(float(raw), raw), relative=False)
        m = _RELATIVE.match(raw)
        if m:
            return cls(value=_finite(float(m.group(1)), raw) / 100.0, relative=True)
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(
                f"{raw!r} is neither a number nor a percentage such as \"0.5%\""
            ) from None
        return cls(value=_finite(value, raw), relative=False)

    def resolve(self, reference: float) -> float:
        """The absolute amount, given the incumbent's value for relative amounts."""
        return abs(reference) * self.value if self.relative else self.value

    def __str__(self) -> str:
        return f"{self.value * 100:g}%" if self.relative else f"{self.value:g}"


def _finite(value: float, raw: object) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{raw!r} is not a finite number")
    return value


def non_negative_amount(raw: Any, name: str) -> Amount:
    """An Amount that may not be below 0 (`min_effect`, a guard's `max_increase`)."""
    if isinstance(raw, bool) or not isinstance(raw, Amount | int | float | str):
        raise Refusal(f'expected a number or a percentage such as "0.5%", got '
                      f"{json.dumps(raw, default=str, ensure_ascii=False)}",
                      fix=f'write {name} = 0.5 (absolute) or {name} = "0.5%" (relative to the '
                      "incumbent)")
    amount = raw if isinstance(raw, Amount) else Amount.parse(raw)
    if isinstance(raw, str) and not amount.relative:
        # A number in quotes is a percentage that lost its "%" or a number that gained quotes,
        # and the two differ by the incumbent's size / 100: which one, the user says.
        number = raw.strip()
        raise Refusal(f'{json.dumps(raw)} is a string, and an amount in quotes is a percentage '
                      'such as "0.5%"',
                      fix=f'write {name} = {number} (absolute, without quotes) or {name} = '
                      f'"{number}%" (relative to the incumbent)')
    if amount.value < 0:
        raise Refusal(f"{name} must be 0 or more, got {amount}",
                      fix=f'write {name} as 0 or more (a number, or a percentage such as "5%")')
    if amount.relative and amount.value > 100:
        raise Refusal(f"{name} must be at most 10000%, got {amount}",
                      fix=f"write {name} as a percentage up to 10000%, or as an absolute number")
    return amount


def _count_or_auto(v: int | str, info: ValidationInfo) -> int | str:
    """The validator of a count that may also be "auto" (`repeats`, `threads`)."""
    most = MAX_REPEATS if info.field_name == "repeats" else MAX_THREADS
    if isinstance(v, int) and not 1 <= v <= most:
        raise Refusal(f'{v} is out of range: it must be "auto" or from 1 to {most}',
                      fix=f'set {info.field_name} to "auto" or a whole number from 1 to {most}')
    return v


class _Strict(BaseModel):
    # nan and inf are refused in every number: a guard's `max = nan` passed every candidate and
    # `min_effect = nan` discarded them all, with no word.
    # strict: a value is taken as the type TOML gives it, never converted. Pydantic's lax mode
    # read `budget_seconds = true` as a budget of 1 s, `budget_seconds = "5"` as 5, `drift =
    # "no"` or `drift = 0` as false and `repeats = 2.0` as 2, while `[verify.env] FOO = 1` was
    # refused: each is now an error saying what was given and how to write it
    # (config_errors.py). A whole number is still a number (`budget_seconds = 5`). No field here
    # relies on a conversion strict mode refuses (str → Path, str → enum): the fixed sets are
    # Literals of strings, and an amount ("0.5%") is parsed by its field's own validator.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


# The keys only one rule reads: the other never looks at them.
_CLASSIC_ONLY = ("noise_k", "confirm_runs")
_SEQUENTIAL_ONLY = ("false_keep", "max_runs", "target_effect", "futility_margin",
                    "control_every", "drift", "drift_prior", "simplicity_budget")


class DecisionConfig(_Strict):
    min_effect: Amount = Field(default_factory=lambda: Amount(value=0.0, relative=False))
    repeats: int | Literal["auto"] = "auto"
    noise_k: float = Field(default=2.0, gt=0, le=10)
    confirm_runs: int = Field(default=4, ge=0, le=50)
    simplicity: bool = True
    max_consecutive_crashes: int = Field(default=5, ge=1, le=1000)
    # Refused, duplicate or failed proposals in a row: the proposer is not producing usable work
    # (no knobs, a model that keeps answering 400), so pause instead of spinning.
    max_consecutive_rejections: int = Field(default=10, ge=1, le=1000)
    stuck_after: int = Field(default=5, ge=1, le=1000)
    max_repair_attempts: int = Field(default=3, ge=0, le=100)
    # The verdict (README "The decision rule"): "sequential" tests each candidate against a
    # re-measured control arm and holds `false_keep` over all its looks; "classic" is the first
    # rule (noise_k, confirm_runs).
    policy: Literal["sequential", "classic"] = "sequential"
    # per candidate, over all its looks (below 1e-6 the boundaries are beyond any run count)
    false_keep: float = Field(default=0.01, ge=1e-6, lt=0.5)
    max_runs: int = Field(default=10, ge=2, le=50)  # a candidate's runs at most
    # The improvement, in σ of one run, the sequential design is built to find: smaller finds
    # smaller effects at more runs per candidate (README, "The decision rule").
    target_effect: float = Field(default=2.0, ge=0.01, le=100)
    # How far (in z) below what a true target_effect improvement would show a candidate's first
    # run may fall before it is discarded: larger keeps more real improvements at more runs per
    # verdict (README, "The decision rule"; docs/benchmarks.md, "What a night finds").
    futility_margin: float = Field(default=1.5, gt=0, le=5)
    # serial: re-measure the incumbent every N runs
    control_every: int = Field(default=16, ge=0, le=10_000)
    drift: bool = True  # model a slow linear drift shared by all runs
    # σ per run: the drift thought plausible before control runs measure one (README, "The
    # decision rule"): larger holds false keeps under faster drift, at the cost of power. Below
    # 0.001 its weight overflows; `drift = false` is the way to assume none.
    drift_prior: float = Field(default=0.035, ge=0.001, le=1)
    deterministic: bool = False  # identical repeats are the truth, not hidden noise
    simplicity_budget: float = Field(default=1.0, ge=0, le=100)  # σ simplifications may cost
    # Interleaved (baseline, best) pairs re-measured when a session ends, for a headline with a
    # confidence interval; 0 turns it off ("auto": 3 to 8, as many as the claimed gain and the
    # noise call for: policy.headline_pairs).
    headline_pairs: int | Literal["auto"] = "auto"

    @field_validator("headline_pairs")
    @classmethod
    def _pairs(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v != 0 and not MIN_HEADLINE_PAIRS <= v <= MAX_HEADLINE_PAIRS:
            raise Refusal(
                f'{v} is out of range: it must be 0 (off), "auto", or from {MIN_HEADLINE_PAIRS} '
                f"to {MAX_HEADLINE_PAIRS}" + (": one pair gives no interval" if v == 1 else ""),
                fix=f'set headline_pairs to "auto", 0, or {MIN_HEADLINE_PAIRS} to '
                f"{MAX_HEADLINE_PAIRS}")
        return v

    @field_validator("min_effect", mode="before")
    @classmethod
    def _amount(cls, raw: Any) -> Any:
        # A negative smallest improvement would keep changes that made things worse.
        return non_negative_amount(raw, "min_effect")

    _repeats_in_range = field_validator("repeats")(_count_or_auto)

    @model_validator(mode="after")
    def _no_key_the_rule_ignores(self) -> DecisionConfig:
        given = self.model_fields_set
        other = "classic" if self.policy == "sequential" else "sequential"
        ignored = _CLASSIC_ONLY if self.policy == "sequential" else _SEQUENTIAL_ONLY
        for key in ignored:
            if key in given:
                raise Refusal(
                    f'only the {other} rule reads {key}: policy = "{self.policy}"'
                    + " (the default)" * ("policy" not in given) + " never uses it",
                    fix=f'remove {key}, or set policy = "{other}"', key=key)
        for key, switch in (("drift_prior", "drift"), ("simplicity_budget", "simplicity")):
            if key in given and not getattr(self, switch):
                raise Refusal(f"{key} is read only when {switch} = true; here {switch} = false",
                              fix=f"remove {key}, or set {switch} = true", key=key)
        return self

    def baseline_repeats(self, budget_seconds: float) -> int:
        if self.repeats == "auto":
            return 3 if budget_seconds < 120 else 1
        return self.repeats


class LimitsConfig(_Strict):
    max_experiments: int | None = Field(default=None, ge=1, le=1_000_000)
    max_hours: float | None = Field(default=None, gt=0, le=24 * 366)
    # More than 0: a limit of 0 stopped the session before its baseline (and read as "no limit"
    # in the views); no limit is no line.
    max_usd: float | None = Field(default=None, le=MAX_USD)
    # What the machine costs an hour while the session is at work (all its slots together):
    # counted with the model calls against max_usd (budget.py).
    compute_usd_per_hour: float | None = Field(default=None, ge=0, le=100_000)

    @field_validator("max_usd")
    @classmethod
    def _some_money(cls, v: float | None) -> float | None:
        if v is not None and v <= 0:
            raise Refusal(
                f"{v:g} would stop the session before its baseline: the limit must be more "
                f"than 0 (at most {MAX_USD:.0f})",
                fix="remove the max_usd line for no spending limit, or give a budget above 0")
        return v


class RunConfig(_Strict):
    """How a session runs: how many trials at once, each in its own worktree slot, and what
    each run gets of the machine. `threads`: the thread count every run is given (OMP, MKL,
    OpenBLAS...; see resources.py); "auto" measures the cores free when the session starts, and
    with several workers shares them out (slots.py)."""

    threads: int | Literal["auto"] = "auto"
    workers: int = Field(default=1, ge=1, le=64)
    # Pin each slot's runs to their own share of the CPUs (so parallel runs do not migrate onto
    # each other's cores).
    affinity: bool = False
    # GPUs handed out one per slot (CUDA_VISIBLE_DEVICES): "auto" = the visible ones when there
    # are several and several workers; a list names them; [] never sets it.
    gpus: Literal["auto"] | list[str] = "auto"
    # Where runs happen: this machine, or a Ray cluster (ray_executor.py) at ray_address ("auto":
    # the one this machine is part of), ray_cpus/gpus reserved per run.
    executor: str = Field(default="local", min_length=1)  # or a plugin's (executor.py)
    ray_address: str = Field(default="auto", min_length=1)
    ray_cpus: float = Field(default=1.0, ge=MIN_RAY_SHARE, le=1024)
    ray_gpus: float = Field(default=0.0, ge=0, le=64)

    _threads_in_range = field_validator("threads")(_count_or_auto)

    @field_validator("gpus")
    @classmethod
    def _each_gpu_once(cls, gpus: Literal["auto"] | list[str]) -> Literal["auto"] | list[str]:
        # The list is handed out one GPU per slot: an id listed twice puts two slots' runs on
        # one GPU while it looks as if each had its own (their runs take turns on it).
        if gpus == "auto":
            return gpus
        if any(not g.strip() for g in gpus):
            # CUDA_VISIBLE_DEVICES="" hides every GPU: that slot's runs would go to the CPU.
            raise Refusal("lists an empty GPU id: each entry is one slot's "
                          "CUDA_VISIBLE_DEVICES, and an empty one hides every GPU",
                          fix='list the GPUs by id, e.g. gpus = ["0", "1"]')
        twice = sorted({g for g in gpus if gpus.count(g) > 1}, key=gpus.index)
        if twice:
            listed = ", ".join(json.dumps(g) for g in twice)
            raise Refusal(f"lists GPU {listed} more than once: each slot is given its own "
                          "GPU from the list, and two slots on one GPU take turns on it",
                          fix="list each GPU once (with more workers than GPUs listed, the "
                          "slots share them in turn, and check and run warn of it)")
        return gpus

    @field_validator("ray_gpus")
    @classmethod
    def _whole_share(cls, v: float) -> float:
        if 0 < v < MIN_RAY_SHARE:
            raise Refusal(f"{v:g} is out of range: it must be 0 or from {MIN_RAY_SHARE:g} to 64",
                          fix=f"set ray_gpus to 0 (no GPU) or {MIN_RAY_SHARE:g} to 64")
        return v


class ReviewConfig(_Strict):
    """`[review]`: how `autoresearch review` and the in-loop review gate work (docs/review.md)."""

    # "red": a would-be keep with a red finding on its changed lines becomes a discard; "yellow"
    # blocks on yellow too; "off" (the default) never reviews inside the loop.
    gate: Literal["off", "red", "yellow"] = "off"
    # Reviewer names (built-ins or plugins); None lets the scale rule choose by the change's size.
    reviewers: list[str] | None = None
    # LLM reviewers: false = never, true = the model the environment or [proposer] configures, a
    # table = its own [proposer]-style options (provider, model, base_url, prices, ...). Unset: the
    # command line uses a model when one is configured; the gate stays offline.
    llm: bool | dict[str, Any] | None = None
    max_usd: float | None = Field(default=1.0, ge=0, le=MAX_USD)
    inline_cap: int = Field(default=10, ge=0, le=10_000)
    history_commits: int = Field(default=500, ge=0, le=1_000_000)
    tool_timeout_seconds: float = Field(default=300.0, gt=0, le=MAX_SECONDS)

    @field_validator("llm")
    @classmethod
    def _llm_options(cls, raw: bool | dict[str, Any] | None) -> bool | dict[str, Any] | None:
        if isinstance(raw, dict):
            from autoresearch.review.llm_setup import check_llm_options  # local: no cycle

            check_llm_options(raw)
        return raw
