"""Command-line options that several commands take, written once (cli.py, views/cli.py), and
the parsing of a duration option (`run --until`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from autoresearch.errors import ConfigError

RepoOpt = Annotated[Path, typer.Option("--repo", "-C", help="The repository (default: here).")]
ExecutorOpt = Annotated[str | None, typer.Option(
    "--executor", help="Where runs happen: this machine (local), a Ray cluster (ray), or a "
    "plugin's executor (default: \\[run] executor, local).")]
RayAddressOpt = Annotated[str | None, typer.Option(
    "--ray-address", help="The Ray cluster to run on, the address `ray start --head` printed "
    "(default: \\[run] ray_address, auto: the cluster this machine is part of).")]


def parse_duration(text: str) -> float:
    """'8h', '90m', '45s', '1h30m', or plain seconds → seconds."""
    text = text.strip().lower()
    unit = {"h": 3600.0, "m": 60.0, "s": 1.0}
    if re.fullmatch(r"\d+(\.\d+)?", text):
        seconds = float(text)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", text)
        if not parts or "".join(f"{a}{b}" for a, b in parts) != text.replace(" ", ""):
            # Exit 2, as for every other bad option value (click's own, a bad --tag).
            raise ConfigError(f"cannot read the duration {text!r}", where="--until",
                              fix="write it like 8h, 90m, 45s or 1h30m")
        seconds = sum(float(a) * unit[b] for a, b in parts)
    if seconds <= 0:
        # No experiment could start: the session would be an empty one that `status` shows.
        raise ConfigError(f"the duration {text!r} leaves no time for an experiment",
                          where="--until", fix="give a time longer than zero, like 30m")
    return seconds
