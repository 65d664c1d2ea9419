"""The `autoresearch` command's entry point: the CLI, once it is loaded.

Loading it (typer, rich, pydantic) takes a noticeable moment; a Ctrl-C within it used to print a
traceback from deep inside an import, and the process died of the signal. Nothing has started
then, so it ends quietly with the exit code of an interrupted command (130), as one does later.
"""

from __future__ import annotations

import sys
from typing import Any

INTERRUPTED_EXIT = 130


def main() -> Any:
    try:
        from autoresearch.cli import main as cli_main
    except KeyboardInterrupt:
        sys.exit(INTERRUPTED_EXIT)
    return cli_main()
