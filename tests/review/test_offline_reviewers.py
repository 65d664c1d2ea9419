"""The offline reviewers on real repositories: only changed lines, the right colours."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoresearch.review.model import Review
from tests.review.conftest import Repo, review_offline

CLEAN = """\
import subprocess


def listing(path):
    return subprocess.run(["ls", path], capture_output=True, check=True).stdout
"""

PRE_EXISTING_BUG = """\
import os


def old(cmd):
    os.system("echo " + cmd)  # an old problem this change does not touch
"""


def by_rule(review: Review) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in review.findings:
        for source in f.sources:
            out.setdefault(source, []).append(f"{f.colour} {f.location}")
    return out


def test_injection_and_blind_except_on_new_lines_are_red_pre_existing_code_is_not_reported(
        repo: Repo) -> None:
    repo.commit("init", **{"app.py": CLEAN, "old.py": PRE_EXISTING_BUG})
    repo.branch("feature")
    repo.commit("add a shell listing", **{"app.py": CLEAN + """

def listing2(path):
    try:
        return subprocess.run(f"ls {path}", shell=True, capture_output=True).stdout
    except Exception:
        return None
"""})
    review = review_offline(repo.change())
    rules = by_rule(review)
    assert rules["bandit B602"] == ["red app.py:10"]
    assert rules["ruff BLE001"] == ["red app.py:11"]
    assert not any(f.path == "old.py" for f in review.findings)  # untouched: not this change's
    assert {r.name: r.status for r in review.reviewers}["mypy"] == "skipped"  # not typed


def test_sql_concatenation_and_leaked_file_are_red_and_temp_path_is_yellow(repo: Repo) -> None:
    repo.commit("init", **{"db.py": "import sqlite3\n"})
    repo.branch("feature")
    repo.commit("queries", **{"db.py": """\
import sqlite3


def find(conn, name):
    return conn.execute("SELECT * FROM users WHERE name = '" + name + "'").fetchall()


def config(path):
    handle = open(path)
    return handle.read()


def scratch():
    with open("/tmp/scratch.txt", "w") as fh:
        fh.write("x")
"""})
    review = review_offline(repo.change())
    rules = by_rule(review)
    assert rules["bandit B608"] == ["red db.py:5"]
    assert rules["ruff SIM115"] == ["red db.py:9"]
    assert rules["bandit B108"] == ["yellow db.py:14"]


@pytest.mark.slow
def test_mypy_reports_wrong_types_on_changed_lines_when_the_project_is_typed(
        repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    repo.commit("init", **{
        "pyproject.toml": "[tool.mypy]\nstrict = false\n",
        "pkg/__init__.py": "",
        "pkg/units.py": "def meters(x: float) -> float:\n    return x * 1000.0\n",
        "pkg/use.py": "from pkg.units import meters\n\nOLD: int = meters(1.0)  # type: ignore\n",
    })
    repo.branch("feature")
    repo.commit("use units", **{"pkg/use.py": (
        "from pkg.units import meters\n\nOLD: int = meters(1.0)  # type: ignore\n"
        "NEW = meters('3')\n")})
    review = review_offline(repo.change())
    mypy = [f for f in review.findings if any(s.startswith("mypy") for s in f.sources)]
    assert [(f.colour, f.location, f.sources) for f in mypy] == [
        ("red", "pkg/use.py:4", ("mypy arg-type",))]
    assert "meters" in mypy[0].title
    assert (tmp_path / "cache" / "autoresearch" / "mypy").is_dir()  # kept for the next review


def test_history_flags_a_line_a_fix_commit_removed_coming_back(repo: Repo) -> None:
    repo.commit("init", **{"calc.py": """\
def mean(values):
    total = sum(values)
    return total / (len(values) - 1)
"""})
    repo.commit("Fix mean: divide by the count, not count - 1", **{"calc.py": """\
def mean(values):
    total = sum(values)
    return total / len(values)
"""})
    repo.commit("docs", **{"README.md": "calc\n"})
    repo.branch("feature")
    repo.commit("refactor mean", **{"calc.py": """\
def mean(values):
    total = sum(values)
    return total / (len(values) - 1)
"""})
    review = review_offline(repo.change())
    found = [f for f in review.findings if "history reintroduced-line" in f.sources]
    assert [(f.colour, f.location) for f in found] == [("red", "calc.py:3")]
    assert "Fix mean" in found[0].body


def test_history_flags_a_removed_fix_and_a_region_fixed_again_and_again(repo: Repo) -> None:
    repo.commit("init", **{"parse.py": "def parse(text):\n    return int(text)\n"})
    repo.commit("fix: strip whitespace before parsing", **{
        "parse.py": "def parse(text):\n    text = text.strip()\n    return int(text)\n"})
    repo.commit("fix: accept an empty string", **{
        "parse.py": "def parse(text):\n    text = text.strip()\n    if not text:\n"
                    "        return 0\n    return int(text)\n"})
    repo.branch("feature")
    repo.commit("simplify", **{"parse.py": "def parse(text):\n    return int(text or 0)\n"})
    review = review_offline(repo.change())
    undone = [f for f in review.findings if "history fix-undone" in f.sources]
    assert undone and undone[0].colour == "yellow"
    assert "text = text.strip()" in undone[0].body or "if not text" in undone[0].body
    hot = [f for f in review.findings if "history fix-hotspot" in f.sources]
    assert hot and hot[0].colour == "purple"
    assert "fix: accept an empty string" in hot[0].body


def test_a_docs_only_change_runs_no_python_analyzer(repo: Repo) -> None:
    repo.commit("init", **{"README.md": "hello\n"})
    repo.branch("feature")
    repo.commit("docs", **{"README.md": "hello\nworld\n"})
    review = review_offline(repo.change())
    status = {r.name: r.status for r in review.reviewers}
    assert status["ruff"] == status["bandit"] == "skipped"
    assert status["history"] == "ok"
    assert review.findings == ()


def test_a_symbolic_link_is_named_in_the_notes_never_linted_as_code(repo: Repo,
                                                                    tmp_path: Path) -> None:
    """A link's one "line" is its target's name (`target.py`, which ruff would call an
    undefined name): a new link and a retargeted one are left to the notes, in a range review
    and in a --diff review alike."""
    import os

    from autoresearch.review.change import from_diff_file

    repo.commit("init", **{"target.py": "x = 1\n", "other.py": "y = 2\n", "app.py": CLEAN})
    os.symlink("target.py", repo.path / "moved.py")
    repo.git("add", "-A")
    repo.git("commit", "-qm", "a link")
    repo.branch("feature")
    os.symlink("target.py", repo.path / "link.py")
    (repo.path / "moved.py").unlink()
    os.symlink("other.py", repo.path / "moved.py")
    repo.git("add", "-A")
    repo.git("commit", "-qm", "links")
    change = repo.change("main")
    assert {f.path for f in change.files if f.symlink} == {"link.py", "moved.py"}
    assert change.reviewable == []
    review = review_offline(change)
    assert review.findings == ()
    assert {r.name: r.status for r in review.reviewers}["ruff"] == "skipped"
    assert any("link.py: a symbolic link (to 'target.py')" in n for n in review.notes)
    assert any("moved.py: a symbolic link (to 'other.py')" in n for n in review.notes)
    patch = tmp_path / "links.diff"
    patch.write_text(repo.git("diff", "main", "feature") + "\n")
    from_diff = from_diff_file(repo.path, str(patch))
    assert from_diff.reviewable == []
    assert review_offline(from_diff).findings == ()
