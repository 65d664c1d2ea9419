"""The command's entry point: a Ctrl-C while the CLI is still being loaded (typer, rich, pydantic:
a noticeable moment) ends the command quietly with 130, as an interrupt later does, instead of
a traceback from inside an import and a death by the signal."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import cli_env

CTRL_C_WHILE_LOADING = textwrap.dedent("""
    import sys

    class CtrlCWhileLoading:  # the interrupt arrives while autoresearch.cli is imported
        def find_spec(self, name, path=None, target=None):
            if name == "autoresearch.cli":
                raise KeyboardInterrupt
            return None

    sys.meta_path.insert(0, CtrlCWhileLoading())
    from autoresearch.entry import main
    main()
""")


def test_ctrl_c_while_the_cli_loads_exits_130_without_a_traceback() -> None:
    done = subprocess.run([sys.executable, "-c", CTRL_C_WHILE_LOADING], env=cli_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_the_entry_point_runs_the_cli() -> None:
    done = subprocess.run([sys.executable, "-m", "autoresearch", "--help"], env=cli_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout, done.stdout
