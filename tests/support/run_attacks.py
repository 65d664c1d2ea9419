"""A session whose first candidate attacks from inside its verify run (its target.py is imported
by the protected score.py), then two honest candidates: the tests of what a run may not do."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.conftest import run_cli, use_script


def verdicts(repo: Path) -> list[tuple[str, str]]:
    """(status, decision reason) of each experiment, in order."""
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        return conn.execute(
            "SELECT status, COALESCE(decision_reason, '') FROM experiments ORDER BY seq").fetchall()


def attack_then_two_honest(repo: Path, attack: str) -> list[tuple[str, str]]:
    """Run the baseline, the attack and two honest candidates; the attack is the one crash, the
    honest ones are kept (not blamed for what it left); their verdicts."""
    use_script(repo, [
        {"hypothesis": "the attack", "edits": {"target.py": attack}},
        {"hypothesis": "honest", "edits": {"target.py": "X = 6.0\n"}},
        {"hypothesis": "honest too", "edits": {"target.py": "X = 6.5\n"}},
    ])
    result = run_cli(repo, "run", "--tag", "t", "--iterations", "4")
    assert result.returncode == 0, result.stdout + result.stderr
    found = verdicts(repo)
    assert [r[0] for r in found] == ["keep", "crash", "keep", "keep"], found
    return found
