"""A proposer plugin that cannot be loaded or started is a config error, never a traceback.

`[proposer] name` may name a `module:Class` on PYTHONPATH or an entry point of an installed
plugin (README, "Plugins"). Whatever is wrong in the plugin's code (a syntax error, an exception
while its module runs, an abstract class, a constructor that raises), `run` and `check` must say
which proposer, where it comes from, what failed and how to fix it, with the config error's exit
code 2, and record nothing.
"""

from __future__ import annotations

import os
import sqlite3
import textwrap
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.support.git_repo import git

PLUGINS = {
    "synerr.py": "def x(:\n",
    "raising.py": "raise RuntimeError('no GPU driver found')\n",
    "exits.py": "import sys\nsys.exit('plugin needs FOO set')\n",
    "shapes.py": textwrap.dedent("""
        from autoresearch.proposers.base import Proposer

        class Abstract(Proposer):
            name = "abstract"

        class Picky(Proposer):
            name = "picky"

            def __init__(self, config, options):
                raise ValueError("option 'depth' must be set")

            def propose(self, ctx):
                raise NotImplementedError
        """),
}
# An installed plugin whose entry point names a module that is not there.
ENTRY_POINTS = "[autoresearch.proposers]\nbrokenprop = nosuchmod_xyz:X\n"


def plugin_repo(toy_repo: Path, tmp_path: Path, name: str) -> dict[str, str]:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    for file, text in PLUGINS.items():
        (plugins / file).write_text(text)
    dist = plugins / "brokenprop-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenprop\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    config = toy_repo / "autoresearch.toml"
    config.write_text(config.read_text() + f'\n[proposer]\nname = "{name}"\n')
    git(toy_repo, "commit", "-qam", "a plugin proposer")
    return {"PYTHONPATH": os.pathsep.join([str(plugins), str(Path(__file__).parents[1])])}


@pytest.mark.parametrize(("name", "said"), [
    ("synerr:X", "cannot load proposer 'synerr:X': importing synerr failed with SyntaxError: "
                 "invalid syntax ("),
    ("raising:X", "cannot load proposer 'raising:X': importing raising failed with RuntimeError: "
                  "no GPU driver found"),
    ("exits:P", "cannot load proposer 'exits:P': importing exits failed with SystemExit: "
                "plugin needs FOO set"),
    (":Scripted", "proposer ':Scripted' names no module"),
    ("shapes:Abstract", "proposer 'shapes:Abstract' failed to start: TypeError: Can't "
                        "instantiate abstract class Abstract"),
    ("shapes:Picky", "proposer 'shapes:Picky' failed to start: ValueError: option 'depth' must "
                     "be set"),
    ("brokenprop", "cannot load proposer 'brokenprop': ModuleNotFoundError: No module named "
                   "'nosuchmod_xyz'"),
])
def test_a_broken_plugin_is_a_config_error_in_run_and_check(
        toy_repo: Path, tmp_path: Path, name: str, said: str) -> None:
    env = plugin_repo(toy_repo, tmp_path, name)
    result = run_cli(toy_repo, "run", "--tag", "p", "-n", "2", env=env)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "Traceback" not in out
    assert said in " ".join(out.split()), out
    assert "fix:" in out and "where:" in out
    ledger = toy_repo / ".autoresearch" / "ledger.db"
    if ledger.exists():  # nothing was recorded for the session
        with sqlite3.connect(ledger) as conn:
            assert conn.execute("SELECT COUNT(*) FROM experiments").fetchone() == (0,)
    checked = run_cli(toy_repo, "check", env=env)
    text = checked.stdout + checked.stderr
    assert checked.returncode != 0 and "Traceback" not in text
    assert f"✗ proposer: {said}" in " ".join(text.split()), text
