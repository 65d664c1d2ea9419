"""`autoresearch init`: write the contract file and the brief, or copy a whole template."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from autoresearch.config import (
    CONFIG_NAME,
    PROGRAM_NAME,
    config_path_problem,
    load_config,
    load_config_text,
)
from autoresearch.errors import ConfigError
from autoresearch.gitops.commits import identity_args
from autoresearch.gitops.runner import git
from autoresearch.globs import matches, pattern_problem
from autoresearch.metric_discovery import (
    Candidate,
    candidates,
    default_pattern,
    guess_direction,
    likely_objective,
    slug,
    toml_literal,
)
from autoresearch.metrics import compile_metric_regex, parse_metrics
from autoresearch.scaffold_paths import Paths, settle_paths, visible_files
from autoresearch.scaffold_template import copy_template
from autoresearch.verify_targets import is_script_name, named_paths


@dataclass
class Answers:
    metric: str | None = None
    direction: str | None = None
    command: str | None = None
    scope: list[str] | None = None
    protected: list[str] | None = None
    budget: float | None = None
    metric_format: str | None = None
    pattern: str | None = None  # for format = "regex": the objective's regex
    from_log: Path | None = None  # output of the command, to find the metric in


DEFAULTS = Answers(metric="score", direction="minimize", command="{python} evaluate.py",
                   scope=["*.py"], protected=[], budget=60.0, metric_format="kv")


def _pattern_means_regex(answers: Answers) -> Answers:
    """--pattern is read only by the regex format: it implies it, and contradicts the others."""
    if answers.pattern is None:
        return answers
    if answers.metric_format not in (None, "regex"):
        raise ConfigError(f"--pattern is for --format regex, not {answers.metric_format}",
                          where="--pattern", fix="drop --format, or use --format regex")
    return replace(answers, metric_format="regex")


def _unguessable(files: list[str]) -> dict[str, str]:
    """The fields whose default would name what is not there, and why, by field: the default
    command runs evaluate.py, the default scope is *.py. `files`: what git sees where init runs."""
    out = {}
    absent = [p for p in named_paths(str(DEFAULTS.command)) if is_script_name(p) and p not in files]
    if absent:
        out["command"] = (f"the verify command (its default, `{DEFAULTS.command}`, runs "
                          f"{', '.join(absent)}, and this directory has no such file)")
    if not any(matches(f, DEFAULTS.scope or []) for f in files):
        out["scope"] = (f"the scope (its default, {', '.join(map(repr, DEFAULTS.scope or []))}, "
                        "matches no file in this directory)")
    return out


_HOW_TO_GIVE = {
    "command": 'give --command, the command that runs one experiment and prints the metric, '
               'e.g. --command "{python} train.py"',
    "scope": "give --scope, the files the proposer may change (repeat it for several), e.g. "
             "--scope model.py",
}


def _require(missing: dict[str, str]) -> None:
    """Off a terminal nobody can be asked: name every field init could not guess, and its flag."""
    if missing:
        raise ConfigError(f"init cannot guess {' nor '.join(missing.values())}",
                          where=", ".join(f"--{field}" for field in missing),
                          fix="; ".join(_HOW_TO_GIVE[field] for field in missing))


def _fill(answers: Answers, interactive: bool, files: list[str]) -> Answers:
    """Flags win; on a terminal, ask for what's missing; elsewhere, use the defaults, but
    refuse one that would name a file that is not there (`files`: what git sees here)."""
    out = Answers(pattern=answers.pattern)
    unguessable = {field: why for field, why in _unguessable(files).items()
                   if not getattr(answers, field)}
    for field in ("metric", "direction", "command", "budget", "metric_format"):
        value = getattr(answers, field)
        if value is None:
            default = getattr(DEFAULTS, field)
            if field == "direction":  # val_loss → minimize, accuracy → maximize
                default = guess_direction(str(out.metric)) or default
            if field in unguessable and interactive:
                value = typer.prompt(field.replace("_", " "))  # no default: an answer is needed
            else:
                value = typer.prompt(field.replace("_", " "), default=default) if interactive \
                    else default
        setattr(out, field, value)
    for field in ("scope", "protected"):
        value = getattr(answers, field)
        if not value:
            default = getattr(DEFAULTS, field)
            if interactive:
                shown = None if field in unguessable else ",".join(default) or ""
                raw = typer.prompt(f"{field} globs (comma-separated)", default=shown)
                value = [g.strip() for g in raw.split(",") if g.strip()]
            else:
                value = default
        setattr(out, field, list(value))
    if out.direction not in ("minimize", "maximize"):
        raise ConfigError(f"direction must be minimize or maximize, not {out.direction!r}",
                          where="--direction")
    if out.metric_format not in ("kv", "metric-line", "json", "regex"):
        raise ConfigError(f"unknown metric format {out.metric_format!r}", where="--format",
                          fix="use kv, metric-line, json or regex")
    _check_values(out)
    if not interactive:
        _require(unguessable)
    return out


def _check_values(a: Answers) -> None:
    """Refuse a bad value against the flag (or the answer) it came from, before the config text
    is rendered: the user typed a flag, not the autoresearch.toml that was never written."""
    budget = float(a.budget or 0)
    if not math.isfinite(budget) or budget <= 0:
        raise ConfigError(f"the budget must be a positive number of seconds, not {budget:g}",
                          where="--budget", fix="give the seconds each run may take, e.g. "
                          "--budget 60")
    if not (a.command or "").strip():
        raise ConfigError("the verify command is empty", where="--command",
                          fix='give the command that prints the metric, e.g. '
                          '--command "{python} evaluate.py"')
    if not (a.metric or "").strip():
        raise ConfigError("the metric name is empty", where="--metric",
                          fix="name the number the command prints, e.g. --metric val_loss")
    if a.pattern is not None:
        try:
            compile_metric_regex(str(a.metric), a.pattern)
        except ValueError as exc:
            raise ConfigError(str(exc), where="--pattern",
                              fix="one group capturing the number, e.g. "
                              "--pattern 'val loss ([0-9.]+)'") from None
    for flag, globs in (("--scope", a.scope), ("--protected", a.protected)):
        for glob in globs or []:
            if problem := pattern_problem(glob):
                raise ConfigError(f"{flag} {glob!r} {problem}", where=flag,
                                  fix="write globs relative to the repository root, with '/'")


# The field of autoresearch.toml each flag fills, to blame the flag for what the file's own
# validation still refuses (a scope glob inside protected, say).
_FLAG_OF_FIELD = {"verify.budget_seconds": "--budget", "verify.command": "--command",
                  "metric.name": "--metric", "metric.patterns": "--pattern",
                  "metric.direction": "--direction", "metric.format": "--format",
                  "scope / protected": "--scope / --protected", "scope": "--scope",
                  "protected": "--protected"}


def _as_flag_error(exc: ConfigError) -> ConfigError:
    """A ConfigError about the config text `init` rendered, said against the flags."""
    field = (exc.where or "").rsplit(" → ", 1)[-1]
    flag = next((f for name, f in _FLAG_OF_FIELD.items() if field.startswith(name)), None)
    what = exc.what.replace(f"invalid {CONFIG_NAME}: ", "")
    fix = exc.fix
    if fix is None or "autoresearch check" in fix:  # advice about editing a file that isn't there
        fix = f"correct the value of {flag}" if flag else "correct the flags' values"
    return ConfigError(f"these values would make an invalid {CONFIG_NAME}: {what}",
                       where=flag or "the flags of `autoresearch init`", fix=fix)


def _patterns_line(a: Answers) -> str:
    """For the regex format, the objective's pattern (--pattern, or one that matches the name
    written as `name: 1.5`, `name=1.5` or `name 1.5`); for the others a commented example."""
    name = a.metric or "score"
    pattern = a.pattern or default_pattern(name)
    line = f"patterns = {{ {json.dumps(name)} = {toml_literal(pattern)} }}"
    if a.metric_format == "regex":
        return line + "  # one capture group holding the number\n"
    return "# " + line + "  # for format = \"regex\"\n"


def _readable_command(command: str | None) -> str:
    """The command as a reader of program.md would type it (`{python}` is the config's token
    for the interpreter running autoresearch)."""
    return (command or "").replace("{python}", "python")


def _protected_sentence(a: Answers) -> str:
    """What program.md says of protected files: only what the config makes true."""
    if a.protected:
        return f", and {', '.join(a.protected)} can never change"
    return ""


def _command_comment(command: str | None) -> str:
    """The comment beside `[verify] command`: what its `{python}` stands for when it has one;
    otherwise how it is run (a comment on `{python}` beside `make -s bench` explained nothing
    the line holds)."""
    if "{python}" in (command or ""):
        return "# {python} = the interpreter running autoresearch"
    return "# run by /bin/sh from the repository root ({python} names autoresearch's interpreter)"


def render_config(a: Answers) -> str:
    q = json.dumps  # TOML basic strings share JSON's escaping for what we write here
    return f"""# autoresearch.toml — the mechanical contract of this research project.
# The proposer may change only files matching `scope`; `protected` files (and this file and
# program.md) can never change. Every experiment runs `verify.command` under a fixed budget
# and is judged on `metric.name`. Reference: the README's "Configuration" section.

scope = {q(a.scope)}
protected = {q(a.protected)}

[verify]
command = {q(a.command)}     {_command_comment(a.command)}
budget_seconds = {a.budget:g}             # exported as AUTORESEARCH_TIME_BUDGET
# timeout_seconds = {2 * (a.budget or 0) + 60:g}          # hard kill; default: sized from the baseline's runs

[metric]
name = {q(a.metric)}
direction = {q(a.direction)}          # minimize | maximize
format = {q(a.metric_format)}                  # kv ("name: value") | metric-line ("METRIC name=value") | json | regex
{_patterns_line(a)}# record = []                  # other metrics to record
# heldout = []                 # recorded, never shown to the proposer

# [[guards]]                   # a command that must pass, or bounds on a recorded metric
# command = "pytest -q"
# [[guards]]
# metric = "peak_memory_mb"
# max_increase = "10%"

[decision]
min_effect = 0.0               # smallest improvement worth keeping: absolute, or "0.5%"
repeats = "auto"               # baseline runs measuring the noise: 3 if budget < 120 s, else 1
# false_keep = 0.01            # chance a change that does nothing is kept, over all its runs
# target_effect = 2.0          # the gain (in σ of one run) each candidate's runs are sized for
# max_runs = 10                # a candidate's runs at most
# deterministic = false        # true: identical repeats are the truth, not a fixed seed's luck

[proposer]
name = "auto"                  # auto: an LLM when a key is set, else the offline sampler `tune`

[knobs]                        # for `tune`: "file:NAME" = "log(lo, hi)" | "float(lo, hi[, step])" | "int(lo, hi[, step])" | "logint(lo, hi)" | "choice(a, b)"
# "train.py:LEARNING_RATE" = "log(1e-4, 1e-1)"
"""


PROGRAM_SKELETON = """# Research program

## Goal
Improve `{metric}` ({direction}) as measured by `{command}` within a fixed budget of {budget:g} s.

## What you may change
Files matching: {scope}. Everything else is fixed{protected}.

## Ideas worth trying
- (write your own: what you believe might help, and why)

## Taste
- A small improvement that adds a lot of complexity is not worth it; an equal result with less
  code is a win. Prefer one focused change per experiment.
- Crashes are fine to explore, but fix obvious mistakes instead of giving up on an idea.
"""


def set_budget(config_path: Path, budget: float) -> None:
    """Rewrite the template's `budget_seconds = ...` line (its comments stay as they are)."""
    text = config_path.read_text(encoding="utf-8")
    lines = [f"budget_seconds = {budget:g}" if line.startswith("budget_seconds") else line
             for line in text.splitlines()]
    config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# The demo's runs may take far longer than their budget on a busy laptop: the first one builds
# the data cache (~10 s quiet, 53 s measured at load 9 on 2 cores) and every one ends with an
def _cuda_available() -> bool:
    """Whether torch sees a GPU here (False without torch: the CPU defaults then apply)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


# The GPT template ships the CPU budget; on a GPU machine the session gets Karpathy's five
# minutes, which its GPT-2-small-class config needs (the engine exports budget_seconds to
# train.py, so the template's own per-device default would otherwise never apply).
GPU_BUDGET_SECONDS = 300.0


def _read_log(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}", where="--from-log",
                          fix="save your command's output to a file first, e.g. "
                          "`python train.py > run.log 2>&1`, and give that file") from None


def _listing(found: list[Candidate]) -> str:
    return "; ".join(f"{c.name} = {c.value:g}" for c in found)


def _show(found: list[Candidate], console: Console, source: Path) -> None:
    table = Table("#", "name", "value", "format", "printed as", title=f"the numbers {source} "
                  "printed last", title_justify="left")
    for i, c in enumerate(found, 1):
        table.add_row(str(i), escape(c.name), f"{c.value:g}", c.format, escape(c.line))
    console.print(table)


def _default_choice(found: list[Candidate]) -> int:
    """The number (1-based) of the likeliest objective: a validation loss or accuracy first."""
    return found.index(likely_objective(found)) + 1


def _choose(found: list[Candidate], wanted: str | None, interactive: bool, console: Console,
            source: Path) -> Candidate:
    if wanted is not None:
        for c in found:
            if wanted in (c.name, c.label) or slug(wanted) == c.name:
                return c
        # `--metric ns_per_op` for `benchmarksum_ns_per_op`, when only one name ends so.
        ending = [c for c in found if c.name.endswith(f"_{slug(wanted)}")]
        if len(ending) == 1:
            return ending[0]
        raise ConfigError(f"{source} printed no number called {wanted!r}; its last ones are: "
                          f"{_listing(found)}", where="--metric",
                          fix="choose one of those names, or give --pattern with a regex whose "
                          "one group captures the number")
    _show(found, console, source)
    default = _default_choice(found)
    if not interactive:
        raise ConfigError(f"which of the numbers {source} printed is the objective? "
                          f"{_listing(found)}", where="--from-log",
                          fix=f"add --metric NAME, e.g. --metric {found[default - 1].name}")
    while True:
        index = int(typer.prompt("which one is the objective (#)", default=default, type=int))
        if 1 <= index <= len(found):
            return found[index - 1]
        console.print(f"choose a number from 1 to {len(found)}")


def _unit_note(chosen: Candidate) -> str:
    """What a pattern that requires the unit does, said where it is written."""
    return (f"the pattern reads {chosen.name} only where {chosen.unit} follows the number, as in "
            f"the log: a run that prints it in another unit (a tool that picks the unit by the "
            f"value's size) is a crash with no {chosen.name} in its output, never a number in "
            f"another unit compared with these; to avoid it, make the command print one unit "
            f"(hyperfine: --time-unit)")


def _from_log(answers: Answers, interactive: bool, console: Console) -> Answers:
    """Set the metric, its format and pattern from a log of the command's real output."""
    assert answers.from_log is not None
    source = answers.from_log
    text = _read_log(source)
    if answers.pattern is not None:  # the user's own regex: it must read a number from the log
        name = answers.metric or str(DEFAULTS.metric)
        try:
            value = parse_metrics(text, "regex", {name: answers.pattern}).get(name)
        except ValueError as exc:
            raise ConfigError(str(exc), where="--pattern") from None
        if value is None:
            raise ConfigError(f"--pattern {answers.pattern!r} reads no number from {source}",
                              where="--pattern", fix="check the pattern against the log; its "
                              "one group must capture the number")
        console.print(f"objective {escape(name)} = {value:g} in {escape(str(source))}")
        return replace(answers, metric=name, metric_format="regex")
    found = candidates(text)
    if not found:
        raise ConfigError(f"{source} has no labelled number (like `loss 2.5` or `loss: 2.5`)",
                          where="--from-log", fix="give the log of a complete run, or --metric "
                          "and --pattern")
    chosen = _choose(found, answers.metric, interactive, console, source)
    console.print(f"objective {escape(chosen.name)} = {chosen.value:g}, read by the {chosen.format} "
                  f"format from: {escape(chosen.line)}")
    if chosen.unit is not None:
        console.print(escape(_unit_note(chosen)), soft_wrap=True)
    return replace(answers, metric=chosen.name, metric_format=chosen.format,
                   pattern=chosen.pattern)


def _refuse_to_overwrite(config_path: Path, program_path: Path, force: bool) -> None:
    """A config already there (without --force), or either path not a file to write."""
    for path in (config_path, program_path):
        problem = config_path_problem(path)
        if problem and (path.exists() or path.is_symlink()):  # not a file to overwrite
            raise ConfigError(f"{path.name} {problem}", where=str(path),
                              fix="remove or rename it, then run `autoresearch init` again")
    if config_path.exists() and not force:
        raise ConfigError(f"{config_path.name} already exists", where=str(config_path),
                          fix="use --force to overwrite it, or edit it directly")


def scaffold(root: Path, answers: Answers, *, template: str | None, force: bool,
             interactive: bool, commit: bool, console: Console | None = None,
             here: Path | None = None) -> list[Path]:
    """Write the files; `here` is the directory init ran in (the root when None)."""
    out = console or Console(highlight=False)
    if template:
        written = copy_template(root, template, force, here=here or root, console=out)
        if template == "gpt" and answers.budget is not None:
            set_budget(root / CONFIG_NAME, answers.budget)
        elif template == "gpt" and _cuda_available():
            set_budget(root / CONFIG_NAME, GPU_BUDGET_SECONDS)
    else:
        config_path, program_path = root / CONFIG_NAME, root / PROGRAM_NAME
        _refuse_to_overwrite(config_path, program_path, force)  # before any question is asked
        answers = _pattern_means_regex(answers)
        if answers.from_log is not None:
            answers = _from_log(answers, interactive, out)
        a = _fill(answers, interactive, visible_files(here or root))
        if answers.direction is None and not interactive and guess_direction(str(a.metric)) is None:
            # Said, not left to be found in check's "(minimize)": a throughput or a rate the
            # names above do not know would otherwise be minimized all night.
            out.print(escape(f"direction = {a.direction!r}: a default, since the name "
                             f"{a.metric!r} says neither way; if {a.metric} should grow, write "
                             'direction = "maximize" in autoresearch.toml (or pass --direction '
                             "maximize)"), soft_wrap=True)
        settled = settle_paths(Paths(list(a.scope or []), list(a.protected or []),
                                     str(a.command)), root, here or root)
        a = replace(a, scope=settled.scope, protected=settled.protected, command=settled.command)
        # The research brief is the user's writing: one already there is kept (init refused for
        # it, and --force, the only way on, overwrote it with the skeleton); --force, asked for,
        # rewrites it with the config, so that what it says of the config stays true.
        keep_program = program_path.is_file() and not force
        text = render_config(a)
        try:
            load_config_text(text, config_path)  # refused before anything is written
        except ConfigError as exc:
            raise _as_flag_error(exc) from None
        config_path.write_text(text, encoding="utf-8")
        written = [config_path]
        if keep_program:
            out.print(f"kept your {PROGRAM_NAME} (the research brief): init writes one only "
                      "where there is none", soft_wrap=True)
        else:
            program_path.write_text(PROGRAM_SKELETON.format(
                metric=a.metric, direction=a.direction, command=_readable_command(a.command),
                budget=a.budget,
                scope=", ".join(a.scope or []), protected=_protected_sentence(a)),
                encoding="utf-8")
            written.append(program_path)
        for note in settled.notes:
            out.print(escape(note))
    load_config(root / CONFIG_NAME)  # what we wrote must load
    if commit:
        rel = [str(p.relative_to(root)) for p in written]
        git(root, "add", "--", *rel)
        git(root, *identity_args(root), "commit", "--quiet", "--no-verify", "-m",
                   f"autoresearch init{f' --template {template}' if template else ''}", "--", *rel)
    return written


# Building the stdlib corpus's cache takes ~10 s on a quiet laptop, a minute on a busy one; a
# large corpus of your own, longer. Far beyond this, something is stuck.
