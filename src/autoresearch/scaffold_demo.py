"""`autoresearch demo`: the GPT template in a repository of its own, set for a short session
on this machine, and its data cache built before the first timed run.
"""

from __future__ import annotations

from pathlib import Path

from autoresearch.config import CONFIG_NAME, load_config
from autoresearch.gitops.commits import identity_args
from autoresearch.gitops.runner import git
from autoresearch.scaffold import set_budget
from autoresearch.scaffold_template import copy_template


def _set_line(config_path: Path, key: str, value: str) -> None:
    """Rewrite the template's `key = ...` line."""
    text = config_path.read_text(encoding="utf-8")
    lines = [f"{key} = {value}" if line.startswith(f"{key} ") else line
             for line in text.splitlines()]
    config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _set_timeout(config_path: Path, timeout: float) -> None:
    """Set `timeout_seconds` (the template ships it commented out, at its default)."""
    text = config_path.read_text(encoding="utf-8")
    lines = [f"timeout_seconds = {timeout:g}" if line.lstrip("# ").startswith("timeout_seconds")
             else line for line in text.splitlines()]
    config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# evaluation that slows as much. The timeout only catches hangs, so the demo is generous.
DEMO_TIMEOUT_EXTRA_SECONDS = 300.0


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
    toplevel = git(directory, "rev-parse", "--show-toplevel", check=False)
    if not toplevel or Path(toplevel).resolve() != directory.resolve():
        git(directory, "init", "--quiet")
    written = copy_template(directory, "gpt", force=False)
    config_path = directory / CONFIG_NAME
    set_budget(config_path, budget)
    _set_line(config_path, "headline_pairs", "2")  # a short demo: 4 more runs, not 6
    _set_timeout(config_path, budget + DEMO_TIMEOUT_EXTRA_SECONDS)
    load_config(config_path)
    rel = [str(p.relative_to(directory)) for p in written]
    git(directory, "add", "--", *rel)
    git(directory, *identity_args(directory), "commit", "--quiet", "--no-verify",
               "-m", "autoresearch demo: the GPT template")
    out.print(f"created the demo project in {directory} (GPT template, {budget:g} s per run)")
    return directory


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
