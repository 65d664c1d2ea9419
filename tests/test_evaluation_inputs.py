"""Files outside the repository that the evaluation reads are held fixed for the session when
listed in `[verify] inputs` (autoresearch/evaluation_inputs.py; tamper finding #4)."""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

from tests.conftest import git, run_cli, use_agent, use_script

# The evaluation reads its optimum from a file outside the repository.
OUTSIDE_SCORE = textwrap.dedent("""
    import sys, target
    best = float(open(sys.argv[1]).read())
    print(f"score: {(target.X - best) ** 2}")
""")

# The agent of the finding: it proposes X = 12 (worse than the baseline: score 25 against 16)
# and moves the optimum to match it (score 0).
AGENT = """#!/bin/sh
sed -i 's/X = .*/X = 12.0/' target.py
echo 12.0 > {outside}
echo "Hypothesis: X to 12"
"""


def outside_repo(toy_repo: Path, tmp_path: Path) -> Path:
    outside = tmp_path / "outside" / "best.txt"
    outside.parent.mkdir()
    outside.write_text("7.0\n")
    (toy_repo / "score.py").write_text(OUTSIDE_SCORE)
    config = toy_repo / "autoresearch.toml"
    config.write_text(config.read_text().replace(
        'command = "{python} score.py"',
        f'command = "{{python}} score.py {outside}"\ninputs = ["{outside.parent}"]'))
    git(toy_repo, "commit", "-qam", "the evaluation reads its optimum from outside")
    return outside


def test_an_agent_that_changes_an_evaluation_input_stops_the_session(toy_repo: Path,
                                                                    tmp_path: Path) -> None:
    outside = outside_repo(toy_repo, tmp_path)
    use_agent(toy_repo, AGENT.format(outside=outside), tmp_path)
    result = run_cli(toy_repo, "run", "--tag", "o", "--iterations", "3", timeout=240)
    assert result.returncode == 3, result.stdout + result.stderr
    assert (f"an evaluation input ([verify] inputs) changed while the session used it: "
            f"{outside} (written)") in " ".join(result.stdout.split()), result.stdout
    with sqlite3.connect(toy_repo / ".autoresearch" / "ledger.db") as conn:
        runs = conn.execute("SELECT COUNT(*) FROM runs WHERE experiment_id = 'o-0002'").fetchone()
    assert runs == (0,)  # the candidate was never measured on the moved optimum
    assert git(toy_repo, "show", "autoresearch/o:target.py") == "X = 3.0"


def test_a_resume_on_changed_inputs_is_refused(toy_repo: Path, tmp_path: Path) -> None:
    outside = outside_repo(toy_repo, tmp_path)
    use_script(toy_repo, [{"hypothesis": f"X to {x}", "edits": {"target.py": f"X = {x}\n"}}
                          for x in (5.0, 6.0)])
    first = run_cli(toy_repo, "run", "--tag", "r", "--iterations", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    outside.write_text("7.5\n")  # while no session runs: no stamp sees it, the hash does
    again = run_cli(toy_repo, "run", "--tag", "r", "--iterations", "3")
    assert again.returncode == 3, again.stdout + again.stderr
    assert f"the evaluation inputs differ from when the session started: {outside}" \
        in " ".join(again.stderr.split()), again.stderr
    outside.write_text("7.0\n")
    assert run_cli(toy_repo, "run", "--tag", "r", "--iterations", "3").returncode == 0


def test_an_input_must_be_an_absolute_path(toy_repo: Path) -> None:
    config = toy_repo / "autoresearch.toml"
    config.write_text(config.read_text().replace('budget_seconds = 5',
                                                 'budget_seconds = 5\ninputs = ["data/x"]'))
    git(toy_repo, "commit", "-qam", "a relative input")
    result = run_cli(toy_repo, "run", "--tag", "c", "--iterations", "1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "must be an absolute path" in result.stderr and "Traceback" not in result.stderr
