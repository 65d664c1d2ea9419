"""`autoresearch init`: write the contract file and the brief, or copy a whole template."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import typer

from autoresearch import gitops
from autoresearch.config import CONFIG_NAME, PROGRAM_NAME, load_config, load_config_text
from autoresearch.errors import ConfigError

TEMPLATES = ("gpt",)


@dataclass
class Answers:
    metric: str | None = None
    direction: str | None = None
    command: str | None = None
    scope: list[str] | None = None
    protected: list[str] | None = None
    budget: float | None = None
    metric_format: str | None = None


DEFAULTS = Answers(metric="score", direction="minimize", command="{python} evaluate.py",
                   scope=["*.py"], protected=[], budget=60.0, metric_format="kv")


def _fill(answers: Answers, interactive: bool) -> Answers:
    """Flags win; on a terminal, ask for what's missing; elsewhere, use the defaults."""
    out = Answers()
    for field in ("metric", "direction", "command", "budget", "metric_format"):
        value = getattr(answers, field)
        if value is None:
            default = getattr(DEFAULTS, field)
            value = typer.prompt(field.replace("_", " "), default=default) if interactive else default
        setattr(out, field, value)
    for field in ("scope", "protected"):
        value = getattr(answers, field)
        if not value:
            default = getattr(DEFAULTS, field)
            if interactive:
                raw = typer.prompt(f"{field} globs (comma-separated)",
                                   default=",".join(default) or "")
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
    return out


def _patterns_line(a: Answers) -> str:
    """For the regex format, a first pattern for the objective (else a commented example)."""
    name = a.metric or "score"
    pattern = re.escape(name) + r"\s*[:=]\s*([-+0-9.eE]+)"
    line = f"patterns = {{ {json.dumps(name)} = {json.dumps(pattern)} }}"
    if a.metric_format == "regex":
        return line + "  # one capture group holding the number\n"
    return "# " + line + "  # for format = \"regex\"\n"


def _protected_sentence(a: Answers) -> str:
    """What program.md says of protected files: only what the config makes true."""
    if a.protected:
        return f", and {', '.join(a.protected)} can never change"
    return ""


def render_config(a: Answers) -> str:
    q = json.dumps  # TOML basic strings share JSON's escaping for what we write here
    return f"""# autoresearch.toml — the mechanical contract of this research project.
# The proposer may change only files matching `scope`; `protected` files (and this file and
# program.md) can never change. Every experiment runs `verify.command` under a fixed budget
# and is judged on `metric.name`. Reference: the README's "Configuration" section.

scope = {q(a.scope)}
protected = {q(a.protected)}

[verify]
command = {q(a.command)}     # {{python}} = the interpreter running autoresearch
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
# noise_k = 2.0                # keep only beyond k standard errors (t-corrected)
# confirm_runs = 4             # max interleaved re-runs when a result is ambiguous

[proposer]
name = "auto"                  # auto: an LLM when a key is set, else the offline sampler `tune`

[knobs]                        # for `tune`: "file:NAME" = "log(lo, hi)" | "float(lo, hi)" | "int(lo, hi)" | "choice(a, b)"
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


def _copy_template(root: Path, name: str, force: bool) -> list[Path]:
    if name not in TEMPLATES:
        raise ConfigError(f"unknown template {name!r}", where="--template",
                          fix=f"choose one of: {', '.join(TEMPLATES)}")
    source = resources.files("autoresearch") / "templates" / name
    written: list[Path] = []
    with resources.as_file(source) as src_dir:
        for path in sorted(Path(src_dir).rglob("*")):
            if path.is_dir() or "__pycache__" in path.parts:
                continue
            rel = path.relative_to(src_dir)
            target = root / rel
            if target.exists() and not force:
                raise ConfigError(f"{rel} already exists", where=str(target),
                                  fix="use --force to overwrite it")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            written.append(target)
    return written


def _set_budget(config_path: Path, budget: float) -> None:
    """Rewrite the template's `budget_seconds = ...` line (its comments stay as they are)."""
    text = config_path.read_text(encoding="utf-8")
    lines = [f"budget_seconds = {budget:g}" if line.startswith("budget_seconds") else line
             for line in text.splitlines()]
    config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")


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


def scaffold(root: Path, answers: Answers, *, template: str | None, force: bool,
             interactive: bool, commit: bool) -> list[Path]:
    if template:
        written = _copy_template(root, template, force)
        if template == "gpt" and answers.budget is not None:
            _set_budget(root / CONFIG_NAME, answers.budget)
        elif template == "gpt" and _cuda_available():
            _set_budget(root / CONFIG_NAME, GPU_BUDGET_SECONDS)
    else:
        a = _fill(answers, interactive)
        config_path, program_path = root / CONFIG_NAME, root / PROGRAM_NAME
        for path in (config_path, program_path):
            if path.exists() and not force:
                raise ConfigError(f"{path.name} already exists", where=str(path),
                                  fix="use --force to overwrite it, or edit it directly")
        text = render_config(a)
        load_config_text(text, config_path)  # refused before anything is written
        config_path.write_text(text, encoding="utf-8")
        program_path.write_text(PROGRAM_SKELETON.format(
            metric=a.metric, direction=a.direction, command=a.command, budget=a.budget,
            scope=", ".join(a.scope or []), protected=_protected_sentence(a)), encoding="utf-8")
        written = [config_path, program_path]
    load_config(root / CONFIG_NAME)  # what we wrote must load
    if commit:
        rel = [str(p.relative_to(root)) for p in written]
        gitops.git(root, "add", "--", *rel)
        gitops.git(root, *gitops.identity_args(root), "commit", "--quiet", "--no-verify", "-m",
                   f"autoresearch init{f' --template {template}' if template else ''}", "--", *rel)
    return written


def create_demo(directory: Path, budget: float, console: object) -> Path:
    """A git repository with the GPT template at `directory` (reused when it already exists)."""
    from rich.console import Console

    out = console if isinstance(console, Console) else Console()
    if (directory / CONFIG_NAME).exists():
        out.print(f"reusing the demo project in {directory}")
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    # The demo is a repository of its own, even when created inside another checkout (such as
    # this project's, by `make demo`): committing into the enclosing repository would put the
    # template in a subdirectory of the session's worktree, where the verify command cannot
    # find it.
    toplevel = gitops.git(directory, "rev-parse", "--show-toplevel", check=False)
    if not toplevel or Path(toplevel).resolve() != directory.resolve():
        gitops.git(directory, "init", "--quiet")
    written = _copy_template(directory, "gpt", force=False)
    config_path = directory / CONFIG_NAME
    _set_budget(config_path, budget)
    load_config(config_path)
    rel = [str(p.relative_to(directory)) for p in written]
    gitops.git(directory, "add", "--", *rel)
    gitops.git(directory, *gitops.identity_args(directory), "commit", "--quiet", "--no-verify",
               "-m", "autoresearch demo: the GPT template")
    out.print(f"created the demo project in {directory} (GPT template, {budget:g} s per run)")
    return directory


# Building the stdlib corpus's cache takes ~10 s on a quiet laptop, a minute on a busy one; a
# large corpus of your own, longer. Far beyond this, something is stuck.
PREPARE_TIMEOUT_S = 3600.0


def prepare_demo_data(directory: Path, console: object) -> None:
    """Build the GPT workload's data cache before the session, outside any run's timeout.

    On a fresh machine the first run would otherwise build it (a minute on a busy laptop) inside
    the baseline's first run, on top of its training and evaluation. A no-op when it is built.
    It runs under the same process control as a verify command: stopping the demo (Ctrl-C,
    SIGTERM, the terminal closing) stops it too.
    """
    import shlex
    import sys

    from rich.console import Console

    from autoresearch.errors import PreconditionError
    from autoresearch.runner import RunSpec, log_tail, run_command
    from autoresearch.state import StatePaths

    out = console if isinstance(console, Console) else Console()
    out.print("preparing the data cache (once; prepare.py) …")
    log = StatePaths(directory, "demo").session_dir / "prepare.log"
    outcome = run_command(RunSpec(command=f"{shlex.quote(sys.executable)} prepare.py", cwd=directory,
                                  log_path=log, timeout_s=PREPARE_TIMEOUT_S,
                                  budget_s=PREPARE_TIMEOUT_S))
    if outcome.exit_code != 0:
        tail = "\n".join(log_tail(log, 4000).strip().splitlines()[-5:])
        why = "timed out" if outcome.timed_out else f"failed (exit {outcome.exit_code})"
        raise PreconditionError(
            f"the GPT workload's data preparation {why}:\n{tail}", where=str(log),
            fix="the workload needs torch and numpy: `make install` (or pip install torch "
                "numpy), then run the demo again")
    cache = next((line.split(":", 1)[1].strip() for line in log_tail(log).splitlines()
                  if line.startswith("cache:")), "")
    out.print(f"data ready{f' in {cache}' if cache else ''}")
