"""The comment `init` writes beside `[verify] command` explains that command: `{python}` where
the command has it, how the command is run where it has none (`make -s bench`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_repo, run_cli


@pytest.mark.parametrize(("command", "comment"), [
    ("make -s bench", "# run by /bin/sh from the repository root ({python} names autoresearch's "
                      "interpreter)"),
    ("./bench.sh --quick", "# run by /bin/sh from the repository root ({python} names "
                           "autoresearch's interpreter)"),
    ("{python} bench.py", "# {python} = the interpreter running autoresearch"),
])
def test_init_comments_the_verify_command_it_wrote(tmp_path: Path, command: str,
                                                   comment: str) -> None:
    repo = make_repo(tmp_path / "repo", {"Makefile": "bench:\n\t@./bench.sh\n",
                                         "bench.sh": "echo 'time: 1.0'\n",
                                         "bench.py": "print('time: 1.0')\n",
                                         "src/fast.c": "int f(void) { return 1; }\n"})
    init = run_cli(repo, "init", "--command", command, "--metric", "time", "--scope", "src/*.c")
    assert init.returncode == 0, init.stdout + init.stderr
    lines = (repo / "autoresearch.toml").read_text().splitlines()
    line = next(line for line in lines if line.startswith("command = "))
    written, said = line.split("#", 1)
    assert written.strip() == f'command = "{command}"', line
    assert "#" + said == comment, line
