"""The contract file `autoresearch.toml`: its schema, defaults, and errors a user can act on."""

from __future__ import annotations

import errno
import json
import math
import os
import stat
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

from autoresearch.config_errors import Refusal, field_path, validation_problems
from autoresearch.config_sections import (
    MAX_SECONDS,
    MAX_THREADS,
    THREAD_VARIABLES,
    Amount,
    DecisionConfig,
    LimitsConfig,
    ReviewConfig,
    RunConfig,
    _Strict,
    non_negative_amount,
    thread_count_problem,
)
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

# The tables config_sections.py defines, imported from here as before.
__all__ = ["Amount", "DecisionConfig", "LimitsConfig", "ReviewConfig", "RunConfig"]


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


def _thread_count_in_env(name: str, value: str) -> None:
    """A thread variable in `[verify] env` overrides `[run] threads` for every run, so it is
    held to the same range: `OMP_NUM_THREADS = 0` was accepted, `check` said each run got the
    measured count, and the runs got "0" (OpenMP: every core) beside MKL_NUM_THREADS=1."""
    if name not in THREAD_VARIABLES:
        return
    problem = thread_count_problem(value)
    if problem is not None:
        raise Refusal(f"{json.dumps(value)} is {problem}: a thread variable here is the "
                      "thread count every run is given, in place of [run] threads, a whole "
                      f"number from 1 to {MAX_THREADS}", key=name,
                      fix=f"write {name} = N with N from 1 to {MAX_THREADS}, or remove it and "
                      "set [run] threads (a number, or \"auto\"), which sets every thread "
                      "variable the runs read")


class VerifyConfig(_Strict):
    command: str = Field(min_length=1)
    budget_seconds: float = Field(gt=0, le=MAX_SECONDS)
    timeout_seconds: float | None = Field(default=None, gt=0, le=MAX_SECONDS)
    env: dict[str, str] = Field(default_factory=dict)
    # At least 0.1 MB: a log needs room for its head and its tail (bounded_log.py).
    max_log_mb: float = Field(default=20.0, ge=0.1, le=100_000)
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

    @field_validator("env", mode="before")
    @classmethod
    def _numbers_as_text(cls, env: Any) -> Any:
        # An environment variable is text, but `OMP_NUM_THREADS = 1` is how TOML writes it
        # naturally, and the program reads "1" either way: a number is passed as the text Python
        # writes it in (1 → "1", 0.5 → "0.5"; quote it to pass it exactly as written, "1.50"),
        # as docker compose does with its environment. A boolean stays refused: "true", "True"
        # and "1" are all how some program spells it, so the user writes the one it reads.
        if isinstance(env, dict):
            return {name: str(value) if isinstance(value, int | float)
                    and not isinstance(value, bool) else value for name, value in env.items()}
        return env

    @field_validator("env")
    @classmethod
    def _environment_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name, value in env.items():
            if not name or "=" in name or "\0" in name:
                raise ValueError(f"env {name!r}: not a name an environment variable can have "
                                 "(non-empty, without '=' or NUL; e.g. CUDA_VISIBLE_DEVICES)")
            if "\0" in value:
                raise ValueError(f"env {name!r}: its value contains a NUL character")
            _thread_count_in_env(name, value)
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
        if self.patterns and self.format != "regex":
            # Read only by the regex format: the objective would come from another line.
            raise Refusal(
                f'patterns are read only with format = "regex", and format is "{self.format}"'
                + " (the default)" * ("format" not in self.model_fields_set)
                + f": {self.name} would be read from a {self.format} line, not by the pattern",
                fix='add format = "regex" under [metric], or remove patterns', key="patterns")
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
    timeout_seconds: float = Field(default=600.0, gt=0, le=MAX_SECONDS)
    metric: str | None = None
    max: float | None = None
    min: float | None = None
    max_increase: Amount | None = None
    max_decrease: Amount | None = None

    @field_validator("max_increase", "max_decrease", mode="before")
    @classmethod
    def _amount(cls, raw: Any, info: ValidationInfo) -> Any:
        # A negative allowance fails the unchanged value itself: no candidate could pass.
        return raw if raw is None else non_negative_amount(raw, str(info.field_name))

    @model_validator(mode="after")
    def _one_kind(self) -> GuardConfig:
        if (self.command is None) == (self.metric is None):
            raise ValueError('a guard has either command = "..." or metric = "...", not both/neither')
        bounds = ("max", "min", "max_increase", "max_decrease")
        if self.metric is not None and all(getattr(self, b) is None for b in bounds):
            raise ValueError(
                f"metric guard {self.metric!r} has no bound: add max, min, max_increase or "
                'max_decrease (e.g. max_increase = "10%")'
            )
        if self.command is not None and (given := [b for b in bounds if getattr(self, b)
                                                   is not None]):
            raise Refusal(f"a command guard passes when it exits 0: its {', '.join(given)} "
                          "would never be checked", key=given[0],
                          fix=f'remove {", ".join(given)}, or make it a metric guard '
                          '(metric = "..." instead of command)')
        if self.metric is not None and "timeout_seconds" in self.model_fields_set:
            raise Refusal("timeout_seconds limits a command guard; a metric guard runs nothing",
                          fix="remove timeout_seconds", key="timeout_seconds")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise Refusal(f"min = {self.min:g} is above max = {self.max:g}: no value can pass "
                          "this guard, so every would-be keep would be discarded",
                          fix=f"make min at most max (swap them, if {self.min:g} was meant "
                          "as the max)")
        return self

    @property
    def label(self) -> str:
        return self.name or (f"metric {self.metric}" if self.metric else f"command {self.command}")


class ProposerConfig(BaseModel):
    """`name` picks the plugin; every other key is passed to it as an option."""

    # The options are the proposer's to check (proposers/options.py, each proposer's own).
    model_config = ConfigDict(extra="allow", frozen=True, strict=True)
    name: str = "auto"

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


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
        if "ray_address" in given and given.get("executor", self.run.executor) != "ray":
            # Read by the Ray executor alone: a session given it would run here, unsaid.
            raise ConfigError(
                "--ray-address names a Ray cluster, but the runs would happen on "
                f"{given.get('executor', self.run.executor)!r}", where="--ray-address",
                fix="add --executor ray (or set [run] executor = \"ray\"), or drop --ray-address")
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

    def guards_broken_by(self, metrics: Mapping[str, float]) -> list[str]:
        """One line per absolute bound of a metric guard the unchanged code's own value (in
        `metrics`) already breaks: every candidate that keeps that value fails the guard."""
        found = []
        for i, g in enumerate(self.guards):
            value = metrics.get(g.metric) if g.metric else None
            if value is None or not math.isfinite(value):
                continue  # guards_missing_from says so
            for bound, limit, broken in (("max", g.max, g.max is not None and value > g.max),
                                         ("min", g.min, g.min is not None and value < g.min)):
                if broken:
                    found.append(f"guards[{i}].{bound}: the unchanged code's {g.metric} = "
                                 f"{value:.6g} is already {'above' if bound == 'max' else 'below'}"
                                 f" {bound} = {limit:g}")
        return found

    def to_json_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        return data


def parse_config(data: dict[str, Any], source: str = CONFIG_NAME) -> Config:
    """Validate a parsed TOML document, turning the first problems into one clear ConfigError."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems, fix, field = validation_problems(exc.errors(), Config)
        problems = problems[:5]
        raise ConfigError(
            f"invalid {CONFIG_NAME}: " + "; ".join(problems),
            where=source + " → " + field,
            fix=fix or "correct the value; `autoresearch check` re-validates the file",
        ) from None


def load_config(path: Path) -> Config:
    """Read and validate a contract file."""
    if not os.path.lexists(path):
        raise ConfigError(
            f"no {path.name} found",
            where=str(path),
            fix="run `autoresearch init` in your repository to write one",
        )
    problem = config_path_problem(path)
    if problem is not None:  # it is there, but no file to read: init would not replace it
        raise ConfigError(f"{path.name} {problem}", where=str(path),
                          fix=f"remove or rename it, then run `autoresearch init` (or write "
                          f"{path.name} there as a file)")
    try:
        # utf-8-sig: a byte-order mark some editors write first is not the file's text.
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path.name} is not UTF-8 text (byte {err.start} is not valid UTF-8)",
                          where=str(path),
                          fix="save the file as UTF-8 in your editor") from None
    except OSError as err:  # unreadable (permissions): said, not a traceback
        raise ConfigError(f"{path.name} cannot be read ({err.strerror})", where=str(path),
                          fix="give yourself read access to it (chmod u+r)") from None
    return load_config_text(text, path)


def config_path_problem(path: Path) -> str | None:
    """Why `path` is no contract file to read ("is a directory", "is a symbolic link to x,
    which does not exist"), in words that follow its name; None when it is a file."""
    try:
        mode = path.stat().st_mode
    except OSError as err:
        if not os.path.islink(path):
            return "was not found" if err.errno == errno.ENOENT else (
                f"cannot be read ({err.strerror})")
        if err.errno == errno.ELOOP:
            return "is a symbolic link that loops (it leads back to itself)"
        return f"is a symbolic link to {os.readlink(path)}, which does not exist"
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    return None if stat.S_ISREG(mode) else "is not a regular file (a device, a pipe or a socket)"


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
    from autoresearch.proposers.knob_space import KINDS_HELP, parse_knob_spec
    from autoresearch.proposers.options import check_builtin_options

    check_builtin_options(config.proposer.name, config.proposer.options, path.name)

    for key, spec in config.knobs.items():
        if ":" not in key:
            raise ConfigError(
                f"knob key {key!r} must be \"file:NAME\"",
                where=f"{path} → {field_path(('knobs', key))}",
                fix='write e.g. "train.py:LEARNING_RATE" = "log(1e-4, 1e-1)"',
            )
        try:
            parse_knob_spec(spec)
        except ValueError as exc:
            raise ConfigError(
                f"knob {key!r}: {exc}",
                where=f"{path} → {field_path(('knobs', key))}",
                fix=f"use {KINDS_HELP}",
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
