"""`autoresearch show ID > x.diff`: in a pipe or a file every line of the diff and of the log
tail stays whole (README: "each line of output is kept whole"); they were cut at 80 columns."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli, use_script

LONG = "# " + "a long comment that goes on " * 10 + "to the end"


def test_show_keeps_every_line_of_the_diff_whole_in_a_pipe(toy_repo: Path) -> None:
    use_script(toy_repo, [{"hypothesis": "X to 6, with a note " + "w" * 120,
                           "edits": {"target.py": f"X = 6.0\n{LONG}\n"}}])
    assert run_cli(toy_repo, "run", "--tag", "t", "-n", "2").returncode == 0
    shown = run_cli(toy_repo, "show", "2", env={"COLUMNS": "80"})
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert f"+{LONG}" in lines, shown.stdout  # the diff's line, whole
    assert any(line.strip().startswith("X to 6, with a note " + "w" * 120) for line in lines), \
        shown.stdout  # the commit message in the diff's header, whole
