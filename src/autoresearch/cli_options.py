"""Command-line options that several commands take, written once (cli.py, views/cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

RepoOpt = Annotated[Path, typer.Option("--repo", "-C", help="The repository (default: here).")]
ExecutorOpt = Annotated[str | None, typer.Option(
    "--executor", help="Where runs happen: this machine (local), a Ray cluster (ray), or a "
    "plugin's executor (default: \\[run] executor, local).")]
RayAddressOpt = Annotated[str | None, typer.Option(
    "--ray-address", help="The Ray cluster to run on, the address `ray start --head` printed "
    "(default: \\[run] ray_address, auto: the cluster this machine is part of).")]
