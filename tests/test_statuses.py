"""Statuses turned into words: "the baseline timed out", never "timeouted"."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoresearch.executor import RUN_STATUSES
from autoresearch.ledger import FINAL_STATUSES
from autoresearch.statuses import happened
from tests.conftest import run_cli, use_script


def test_every_status_has_its_own_phrase() -> None:
    for status in {*RUN_STATUSES, *FINAL_STATUSES}:
        assert not happened(status).startswith("ended with status"), status
    assert happened("timeout") == "timed out" and happened("crash") == "crashed"


@pytest.mark.parametrize(("target", "phrase"), [
    ("X = 3.0\nSLEEP = 30\n", "the baseline timed out (killed after the 8 s timeout)"),
    ("X = 3.0\nCRASH = True\n", "the baseline crashed (exit code 3)"),
])
def test_the_pause_message_says_what_the_baseline_did(toy_repo: Path, target: str,
                                                       phrase: str) -> None:
    (toy_repo / "target.py").write_text(target)
    use_script(toy_repo, [])  # commits the failing baseline with a proposer that needs nothing
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "2", env={"COLUMNS": "300"})
    assert result.returncode == 5, result.stdout + result.stderr
    shown = " ".join((result.stdout + result.stderr).split())
    assert phrase in shown, shown
    assert "timeouted" not in shown


SRC = Path(__file__).resolve().parents[1] / "src" / "autoresearch"


def test_no_message_in_the_source_glues_ed_to_a_status() -> None:
    """`f"... {m.status}ed"` is how "timeouted" got into a pause message: every message that
    says what a run or an experiment did goes through `happened`."""
    import re

    glued = re.compile(r"\{[^{}]*status[^{}]*\}ed\b")
    found = [f"{path.relative_to(SRC)}:{n}: {line.strip()}"
             for path in sorted(SRC.rglob("*.py"))
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if glued.search(line) or "timeouted" in line and path.name != "statuses.py"]
    assert not found, "\n".join(found)
