"""The contract file `autoresearch.toml`: its schema, defaults, and errors a user can act on."""

from __future__ import annotations

import math
import re
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from autoresearch.config_errors import validation_problems
from autoresearch.errors import ConfigError
from autoresearch.evaluation_inputs import input_path_problem
from autoresearch.globs import globs_overlap, pattern_problem
from autoresearch.metrics import compile_metric_regex
from autoresearch.timeouts import sized_timeout

CONFIG_NAME = "autoresearch.toml"
PROGRAM_NAME = "program.md"
STATE_DIR = ".autoresearch"
# Files the proposer may never change, whatever the config says: the contract and the brief.
ALWAYS_PROTECTED = (CONFIG_NAME, PROGRAM_NAME, ".gitignore")

_RELATIVE = re.compile(r"^\s*([+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)\s*%\s*$")


class Amount(BaseModel):
    """A threshold that is either absolute (0.001) or relative to the incumbent ("0.5%")."""

    value: float
    relative: bool

    @classmethod
    def parse(cls, raw: float | int | str) -> Amount:
        if isinstance(raw, bool):
            raise ValueError("expected a number or a percentage string such as \"0.5%\"")
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


def share_pattern_problem(pattern: str) -> str | None:
    """Why a `[verify] share` glob cannot name files of the user's checkout (None when it can)."""
    text = pattern.strip()
    if not text:
        return "an empty pattern"
    if text.startswith(("/", "~")) or "\\" in text:
        return "must be relative to the repository, with / between directories"
    parts = text.removeprefix("./").split("/")
    if ".." in parts:
        return "must stay inside the repository (no '..')"
    if parts[0] in (".git", STATE_DIR):
        return f"{parts[0]}/ is not a project file"
    return None


def _at_least_one_or_auto(v: int | str, info: ValidationInfo) -> int | str:
    """The validator of a count that may also be "auto" (`repeats`, `threads`)."""
    if isinstance(v, int) and v < 1:
        raise ValueError(f'{info.field_name} must be at least 1 (or "auto")')
    return v


class _Strict(BaseModel):
    # nan and inf are refused in every number: a guard's `max = nan` passed every candidate and
    # `min_effect = nan` discarded them all, with no word.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class VerifyConfig(_Strict):
    command: str = Field(min_length=1)
    budget_seconds: float = Field(gt=0)
    timeout_seconds: float | None = Field(default=None, gt=0)
    env: dict[str, str] = Field(default_factory=dict)
    max_log_mb: float = Field(default=20.0, gt=0)
    # Git-ignored files of the user's checkout (prepared data, .env) linked into every worktree;
    # see shared_paths.py.
    share: list[str] = Field(default_factory=list)
    # Files outside the repository the evaluation reads, held fixed for the session; see
    # evaluation_inputs.py.
    inputs: list[str] = Field(default_factory=list)

    @field_validator("command")
    @classmethod
    def _no_nul_in_command(cls, command: str) -> str:
        if "\0" in command:
            raise ValueError("the command contains a NUL character, which no process can be given")
        return command

    @field_validator("env")
    @classmethod
    def _environment_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name, value in env.items():
            if not name or "=" in name or "\0" in name:
                raise ValueError(f"env {name!r}: not a name an environment variable can have "
                                 "(non-empty, without '=' or NUL; e.g. CUDA_VISIBLE_DEVICES)")
            if "\0" in value:
                raise ValueError(f"env {name!r}: its value contains a NUL character")
        return env

    @field_validator("inputs")
    @classmethod
    def _absolute_paths(cls, paths: list[str]) -> list[str]:
        for path in paths:
            problem = input_path_problem(path)
            if problem:
                raise ValueError(f"inputs {path!r}: {problem}")
        return paths

    @field_validator("share")
    @classmethod
    def _relative_globs(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            problem = share_pattern_problem(pattern)
            if problem:
                raise ValueError(f"share {pattern!r}: {problem}")
        return patterns

    # Measured while a session runs, never read from the file: the most the unchanged code's
    # runs took beyond the budget (startup, evaluation). See autoresearch.timeouts.
    _overhead_s: float | None = PrivateAttr(default=None)

    @property
    def timeout(self) -> float:
        """The hard limit: timeout_seconds when set; else sized from the unchanged code's
        measured startup + evaluation, at least 2 × budget + 60 s (generous before the first
        measurement): see timeouts.py."""
        return self.timeout_seconds or sized_timeout(self.budget_seconds, self._overhead_s)

    @property
    def measured_overhead_s(self) -> float | None:
        return self._overhead_s

    def note_overhead(self, seconds: float) -> None:
        """Record a run's time beyond the budget; the timeout follows the largest seen."""
        if self._overhead_s is None or seconds > self._overhead_s:
            self._overhead_s = seconds

    def expanded_command(self) -> str:
        """The command with `{python}` replaced by the interpreter running autoresearch."""
        return self.command.replace("{python}", sys.executable)


class MetricConfig(_Strict):
    name: str = Field(min_length=1)
    direction: Literal["minimize", "maximize"]
    format: Literal["kv", "metric-line", "json", "regex"] = "kv"
    patterns: dict[str, str] = Field(default_factory=dict)
    record: list[str] = Field(default_factory=list)
    heldout: list[str] = Field(default_factory=list)
    # The run's peak memory, for results.tsv's memory_gb (unit from the name's suffix: _kb, _mb,
    # _gb, _bytes; MB without one). Unset: a recorded metric whose name says memory is used.
    memory: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _regex_needs_pattern(self) -> MetricConfig:
        if self.format == "regex" and self.name not in self.patterns:
            raise ValueError(
                f'format = "regex" needs a pattern for the objective: patterns = {{ {self.name} = '
                "'...([0-9.]+)' }"
            )
        for pattern_name, pattern in self.patterns.items():
            # The same check the parser makes, so a bad pattern is a config error, not a crash.
            compile_metric_regex(pattern_name, pattern)
        return self

    @property
    def sign(self) -> float:
        """+1 when larger is better; improvement = sign * (candidate - incumbent)."""
        return 1.0 if self.direction == "maximize" else -1.0


class GuardConfig(_Strict):
    """Either a command that must exit 0, or bounds on a parsed metric."""

    name: str | None = None
    command: str | None = None
    timeout_seconds: float = Field(default=600.0, gt=0)
    metric: str | None = None
    max: float | None = None
    min: float | None = None
    max_increase: Amount | None = None
    max_decrease: Amount | None = None

    @field_validator("max_increase", "max_decrease", mode="before")
    @classmethod
    def _amount(cls, raw: Any) -> Any:
        return raw if raw is None or isinstance(raw, Amount) else Amount.parse(raw)

    @model_validator(mode="after")
    def _one_kind(self) -> GuardConfig:
        if (self.command is None) == (self.metric is None):
            raise ValueError('a guard has either command = "..." or metric = "...", not both/neither')
        bounds = (self.max, self.min, self.max_increase, self.max_decrease)
        if self.metric is not None and all(b is None for b in bounds):
            raise ValueError(
                f"metric guard {self.metric!r} has no bound: add max, min, max_increase or "
                'max_decrease (e.g. max_increase = "10%")'
            )
        return self

    @property
    def label(self) -> str:
        return self.name or (f"metric {self.metric}" if self.metric else f"command {self.command}")


class DecisionConfig(_Strict):
    min_effect: Amount = Field(default_factory=lambda: Amount(value=0.0, relative=False))
    repeats: int | Literal["auto"] = "auto"
    noise_k: float = Field(default=2.0, gt=0)
    confirm_runs: int = Field(default=4, ge=0, le=50)
    simplicity: bool = True
    max_consecutive_crashes: int = Field(default=5, ge=1)
    # Refused, duplicate or failed proposals in a row: the proposer is not producing usable work
    # (no knobs, a model that keeps answering 400), so pause instead of spinning.
    max_consecutive_rejections: int = Field(default=10, ge=1)
    stuck_after: int = Field(default=5, ge=1)
    max_repair_attempts: int = Field(default=3, ge=0)
    # The verdict (README "The decision rule"): "sequential" tests each candidate against a
    # re-measured control arm and holds `false_keep` over all its looks; "classic" is the first
    # rule (noise_k, confirm_runs).
    policy: Literal["sequential", "classic"] = "sequential"
    false_keep: float = Field(default=0.01, gt=0, lt=0.5)  # per candidate, over all its looks
    max_runs: int = Field(default=10, ge=2, le=50)  # a candidate's runs at most
    # The improvement, in σ of one run, the sequential design is built to find: smaller finds
    # smaller effects at more runs per candidate (README, "The decision rule").
    target_effect: float = Field(default=2.0, gt=0)
    # How far (in z) below what a true target_effect improvement would show a candidate's first
    # run may fall before it is discarded: larger keeps more real improvements at more runs per
    # verdict (README, "The decision rule"; docs/benchmarks.md, "What a night finds").
    futility_margin: float = Field(default=1.5, gt=0, le=5)
    control_every: int = Field(default=16, ge=0)  # serial: re-measure the incumbent every N runs
    drift: bool = True  # model a slow linear drift shared by all runs
    # σ per run: the drift thought plausible before control runs measure one (README, "The
    # decision rule"): larger holds false keeps under faster drift, at the cost of power.
    drift_prior: float = Field(default=0.035, gt=0, le=1)
    deterministic: bool = False  # identical repeats are the truth, not hidden noise
    simplicity_budget: float = Field(default=1.0, ge=0)  # σ simplifications may cost in total
    # Interleaved (baseline, best) pairs re-measured when a session ends, for a headline with a
    # confidence interval; 0 turns it off ("auto": 3 to 8, as many as the claimed gain and the
    # noise call for: policy.headline_pairs).
    headline_pairs: int | Literal["auto"] = "auto"

    @field_validator("headline_pairs")
    @classmethod
    def _pairs(cls, v: int | str) -> int | str:
        if isinstance(v, int) and not 0 <= v <= 50:
            raise ValueError('headline_pairs must be between 0 and 50 (or "auto")')
        return v

    @field_validator("min_effect", mode="before")
    @classmethod
    def _amount(cls, raw: Any) -> Any:
        amount = raw if isinstance(raw, Amount) else Amount.parse(raw)
        if amount.value < 0:
            # A negative smallest improvement would keep changes that made things worse.
            raise ValueError(f"min_effect must be 0 or more, got {amount}")
        return amount

    _repeats_at_least_one = field_validator("repeats")(_at_least_one_or_auto)

    def baseline_repeats(self, budget_seconds: float) -> int:
        if self.repeats == "auto":
            return 3 if budget_seconds < 120 else 1
        return self.repeats


class ProposerConfig(BaseModel):
    """`name` picks the plugin; every other key is passed to it as an option."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str = "auto"

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class LimitsConfig(_Strict):
    max_experiments: int | None = Field(default=None, ge=1)
    max_hours: float | None = Field(default=None, gt=0)
    max_usd: float | None = Field(default=None, ge=0)
    # What the machine costs an hour while the session is at work (all its slots together):
    # counted with the model calls against max_usd (budget.py).
    compute_usd_per_hour: float | None = Field(default=None, ge=0)


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
    ray_cpus: float = Field(default=1.0, gt=0)
    ray_gpus: float = Field(default=0.0, ge=0)

    _threads_at_least_one = field_validator("threads")(_at_least_one_or_auto)


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
    max_usd: float | None = Field(default=1.0, ge=0)
    inline_cap: int = Field(default=10, ge=0)
    history_commits: int = Field(default=500, ge=0)
    tool_timeout_seconds: float = Field(default=300.0, gt=0)

    @field_validator("llm")
    @classmethod
    def _llm_options(cls, raw: bool | dict[str, Any] | None) -> bool | dict[str, Any] | None:
        if isinstance(raw, dict):
            from autoresearch.review.llm_setup import check_llm_options  # local: no cycle

            check_llm_options(raw)
        return raw


class Config(_Strict):
    scope: list[str] = Field(min_length=1)
    protected: list[str] = Field(default_factory=list)
    verify: VerifyConfig
    metric: MetricConfig
    guards: list[GuardConfig] = Field(default_factory=list)
    decision: DecisionConfig = Field(default_factory=DecisionConfig)
    proposer: ProposerConfig = Field(default_factory=ProposerConfig)
    knobs: dict[str, str] = Field(default_factory=dict)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)

    def with_run(self, **changes: Any) -> Config:
        """This config with [run] settings given on the command line (None: as configured)."""
        given = {k: v for k, v in changes.items() if v is not None}
        return self.model_copy(update={"run": self.run.model_copy(update=given)}) if given else self

    @property
    def all_protected(self) -> list[str]:
        return [*ALWAYS_PROTECTED, *self.protected]

    def recorded_metrics(self) -> list[str]:
        names = [self.metric.name, *self.metric.record, *self.metric.heldout]
        names += [self.metric.memory] if self.metric.memory else []
        names += [g.metric for g in self.guards if g.metric]
        return list(dict.fromkeys(names))

    def guards_missing_from(self, metrics: Mapping[str, float]) -> list[str]:
        """One line per metric guard whose metric a run did not print (or printed as nan/inf):
        such a guard fails on every candidate, so each would-be keep would be discarded."""
        found = []
        for i, g in enumerate(self.guards):
            if g.metric is None:
                continue
            value = metrics.get(g.metric)
            if value is None:
                found.append(f"guards[{i}]: metric {g.metric!r} is not in the output")
            elif not math.isfinite(value):
                found.append(f"guards[{i}]: metric {g.metric!r} is {value} in the output")
        return found

    def to_json_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        return data


def parse_config(data: dict[str, Any], source: str = CONFIG_NAME) -> Config:
    """Validate a parsed TOML document, turning the first problems into one clear ConfigError."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems, fix = validation_problems(exc.errors(), Config)
        problems = problems[:5]
        raise ConfigError(
            f"invalid {CONFIG_NAME}: " + "; ".join(problems),
            where=source + " → " + problems[0].split(":")[0],
            fix=fix or "correct the value; `autoresearch check` re-validates the file",
        ) from None


def load_config(path: Path) -> Config:
    """Read and validate a contract file."""
    if not path.is_file():
        raise ConfigError(
            f"no {path.name} found",
            where=str(path),
            fix="run `autoresearch init` in your repository to write one",
        )
    try:
        # utf-8-sig: a byte-order mark some editors write first is not the file's text.
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path.name} is not UTF-8 text (byte {err.start} is not valid UTF-8)",
                          where=str(path),
                          fix="save the file as UTF-8 in your editor") from None
    return load_config_text(text, path)


def load_config_text(text: str, path: Path) -> Config:
    """Validate a contract file's text as if it were `path` (so `init` checks before writing)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path.name} is not valid TOML: {exc}",
            where=str(path),
            fix="fix the syntax at the line and column given",
        ) from None
    config = parse_config(data, str(path))
    _check_values(config, path)
    return config


def _check_values(config: Config, path: Path) -> None:
    if not math.isfinite(config.verify.budget_seconds):
        raise ConfigError("verify.budget_seconds must be finite", where=f"{path} → verify")
    if config.verify.timeout < config.verify.budget_seconds:
        raise ConfigError(
            "verify.timeout_seconds is shorter than verify.budget_seconds",
            where=f"{path} → verify.timeout_seconds",
            fix="give the command at least its budget (default: 2 × budget + 60 s)",
        )
    _check_scope_overlap(config, path)
    for shared in config.verify.share:
        for scope in config.scope:
            if globs_overlap(scope, shared):
                raise ConfigError(
                    f"shared {shared!r} is inside the scope {scope!r}: a shared file is a link to "
                    "your checkout's own, which the proposer may not edit",
                    where=f"{path} → verify.share",
                    fix=f"narrow scope so it leaves {shared!r} out, or remove it from share",
                )
    # Local imports: the proposers package (its __init__) imports this module.
    from autoresearch.proposers.knob_space import parse_knob_spec
    from autoresearch.proposers.options import check_builtin_options

    check_builtin_options(config.proposer.name, config.proposer.options, path.name)

    for key, spec in config.knobs.items():
        if ":" not in key:
            raise ConfigError(
                f"knob key {key!r} must be \"file:NAME\"",
                where=f"{path} → knobs",
                fix='write e.g. "train.py:LEARNING_RATE" = "log(1e-4, 1e-1)"',
            )
        try:
            parse_knob_spec(spec)
        except ValueError as exc:
            raise ConfigError(
                f"knob {key!r}: {exc}",
                where=f"{path} → knobs.{key}",
                fix='use log(lo, hi), float(lo, hi), int(lo, hi) or choice(a, b, ...)',
            ) from None


def _check_scope_overlap(config: Config, path: Path) -> None:
    """A protected pattern inside the scope is a contradiction: refuse it before anything runs.

    The config file itself always exists, so it is checked too; program.md and .gitignore may
    not exist, so only the file-level check in `check_preconditions` covers them.
    """
    for field, patterns in (("scope", config.scope), ("protected", config.protected)):
        for pattern in patterns:
            if problem := pattern_problem(pattern):  # it would match no file: a silent no-op
                raise ConfigError(f"{field} pattern {pattern!r} {problem}",
                                  where=f"{path} → {field}",
                                  fix="write globs relative to the repository root, with '/'")
    for protected in (CONFIG_NAME, *config.protected):
        for scope in config.scope:
            if globs_overlap(scope, protected):
                always = protected in ALWAYS_PROTECTED  # no config can unprotect these
                raise ConfigError(
                    f"{'always-' * always}protected {protected!r} is inside the scope {scope!r}: "
                    "a file the proposer may change can't also be one that must never change",
                    where=f"{path} → scope" + " / protected" * (not always),
                    fix=f"narrow scope so it leaves {protected!r} out (list the files the "
                    "proposer may edit)" + (
                        f"; {', '.join(ALWAYS_PROTECTED)} are always protected" if always else
                        f", or remove {protected!r} from protected"),
                )
