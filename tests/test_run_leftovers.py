"""What one verify run leaves behind must not change what a later run measures.

Three ways a candidate's run (its code runs inside the evaluation, as the same user) could
plant something for later commits' runs, each made through the real CLI:
- rewrite a protected file in place and set its size and mtime back, so that a forced checkout,
  trusting git's stat cache, "restores" nothing;
- write git's own files (a filter driver in `.git/config`, picked by `.git/info/attributes`),
  so that the harness's next checkout runs the planted command;
- leave an ignored file behind (a `__pycache__` whose .pyc claims to be a protected module's),
  which a slot reset used to keep.
"""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

import pytest

from tests.conftest import CONFIG, SCORE_PY, git, make_repo, run_cli, use_script
from tests.support.run_attacks import attack_then_two_honest

pytestmark = pytest.mark.slow


def statuses(repo: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        return conn.execute(
            "SELECT status, COALESCE(decision_reason, '') FROM experiments ORDER BY seq").fetchall()


# Rewrites score.py in place with a rigged evaluation of the same length (-99 when the
# candidate says WIN), then sets its mode and mtime back.
REWRITE_IN_PLACE = textwrap.dedent(
    """
    X = 3.0
    import os
    _path = "score.py"
    _real = open(_path).read()
    _rigged = ("import target\\nprint('score: -99' if getattr(target, 'WIN', 0) else "
               "f'score: {(target.X - 7) ** 2}')\\n")
    _rigged += "#" * (len(_real) - len(_rigged) - 1) + "\\n"
    _st = os.stat(_path)
    os.chmod(_path, 0o644)
    with open(_path, "r+") as _f:
        _f.write(_rigged)
    os.utime(_path, ns=(_st.st_atime_ns, _st.st_mtime_ns))
    os.chmod(_path, _st.st_mode)
    """
)


def test_a_protected_file_rewritten_in_place_is_written_again(toy_repo: Path) -> None:
    use_script(toy_repo, [
        # A second of runs first, so that git's index is no longer "racily clean" for score.py
        # and a forced checkout trusts its stamps.
        {"hypothesis": "wait", "edits": {"target.py": "X = 3.0\nSLEEP = 1.2\n"}},
        {"hypothesis": "rig the evaluation", "edits": {"target.py": REWRITE_IN_PLACE}},
        {"hypothesis": "collect", "edits": {"target.py": "X = 3.0\nWIN = 1\n"}},
    ])
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "4")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = statuses(toy_repo)
    assert [r[0] for r in rows] == ["keep", "discard", "crash", "discard"], rows
    assert "modified protected files: score.py" in rows[2][1]
    assert (toy_repo / ".autoresearch" / "worktrees" / "t" / "score.py").read_text() == SCORE_PY
    assert "WIN" not in git(toy_repo, "show", "autoresearch/t:target.py")


# Copies a protected value into an in-scope file, in place: same size, mode and mtime.
LEAK_IN_PLACE = textwrap.dedent(
    """
    X = 3.0
    import os
    _secret = open("secret_cfg.py").read().strip()
    _st = os.stat("notes.py")
    _text = open("notes.py").read()
    with open("notes.py", "r+") as _f:
        _f.write(("# " + _secret).ljust(len(_text) - 1)[:len(_text) - 1] + "\\n")
    os.utime("notes.py", ns=(_st.st_atime_ns, _st.st_mtime_ns))
    """
)


def test_an_in_scope_file_a_run_rewrote_in_place_is_the_commits_again(tmp_path: Path) -> None:
    # What the next proposal is shown is read from the slot: it must be the commit's text, not
    # what a run wrote there (here, a protected secret) with its stamps set back.
    notes = "# notes for the next proposal" + " " * 40 + "\n"
    repo = make_repo(tmp_path / "repo", {
        "target.py": "X = 3.0\n", "notes.py": notes, "score.py": SCORE_PY,
        "secret_cfg.py": "TOKEN = 'hunter2-do-not-leak'\n",
        "autoresearch.toml": CONFIG.replace('scope = ["target.py"]',
                                            'scope = ["target.py", "notes.py"]').replace(
            'protected = ["score.py"]', 'protected = ["score.py", "secret_cfg.py"]')})
    use_script(repo, [
        {"hypothesis": "wait", "edits": {"target.py": "X = 3.0\nSLEEP = 1.2\n"}},
        {"hypothesis": "leak", "edits": {"target.py": LEAK_IN_PLACE}},
    ])
    result = run_cli(repo, "run", "--tag", "t", "--iterations", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = statuses(repo)
    assert [r[0] for r in rows] == ["keep", "discard", "crash"], rows
    assert "the worktree changed during the run: notes.py" in rows[2][1]
    assert (repo / ".autoresearch" / "worktrees" / "t" / "notes.py").read_text() == notes


# Plants a filter driver in the repository's config and picks it for every .py file: the
# harness's next checkout would run it (it leaves a mark, then passes the content through).
PLANT_FILTER = textwrap.dedent(
    """
    X = 3.0
    import os, subprocess
    _common = subprocess.run(["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
                             capture_output=True, text=True).stdout.strip()
    _mark = os.path.join(os.path.dirname(_common), "PLANTED-FILTER-RAN")
    with open(os.path.join(_common, "config"), "a") as _f:
        _f.write(f'[filter "ev"]\\n\\tsmudge = sh -c \\'touch {_mark}; cat\\'\\n')
    os.makedirs(os.path.join(_common, "info"), exist_ok=True)
    with open(os.path.join(_common, "info", "attributes"), "a") as _f:
        _f.write("*.py filter=ev\\n")
    """
)


def test_git_files_a_run_writes_are_put_back_before_the_harness_runs_git(
        toy_repo: Path) -> None:
    config_before = (toy_repo / ".git" / "config").read_text()
    rows = attack_then_two_honest(toy_repo, PLANT_FILTER)
    assert "the run changed git's own files" in rows[1][1] and "config" in rows[1][1]
    assert not (toy_repo / "PLANTED-FILTER-RAN").exists()  # no checkout ever ran it
    assert (toy_repo / ".git" / "config").read_text() == config_before
    assert not (toy_repo / ".git" / "info" / "attributes").exists()


EVALUATE = textwrap.dedent(
    """
    # The evaluation's library (protected): the objective.
    def score(target):
        return (target.X - 7) ** 2
    """
)

# Honest in what it proposes (X = 4), but its run leaves a compiled evaluation library behind:
# a .pyc of a rigged `score`, stamped with the real evallib.py's mtime and size, so that Python
# takes it as evallib.py's own cache.
PLANT_PYC = textwrap.dedent(
    """
    X = 4.0
    import importlib._bootstrap_external as _ext, os, sys
    _st = os.stat("evallib.py")
    _rigged = compile("def score(target):\\n    return -99.0 if getattr(target, 'WIN', 0) "
                      "else (target.X - 7) ** 2\\n", "evallib.py", "exec")
    os.makedirs("__pycache__", exist_ok=True)
    with open(f"__pycache__/evallib.{sys.implementation.cache_tag}.pyc", "wb") as _f:
        _f.write(_ext._code_to_timestamp_pyc(_rigged, int(_st.st_mtime), _st.st_size))
    """
)


def test_what_a_run_leaves_in_ignored_files_is_gone_before_another_commit_runs(
        tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {
        "target.py": "X = 3.0\n", "evallib.py": EVALUATE, ".gitignore": "__pycache__/\n",
        "score.py": "import evallib, target\nprint(f'score: {evallib.score(target)}')\n",
        "autoresearch.toml": CONFIG.replace('protected = ["score.py"]',
                                            'protected = ["score.py", "evallib.py"]')})
    use_script(repo, [
        {"hypothesis": "X to 4", "edits": {"target.py": PLANT_PYC}},
        # The same lines and WIN: not simpler, and no better when measured honestly.
        {"hypothesis": "collect", "edits": {"target.py": PLANT_PYC + "WIN = 1\n"}},
    ])
    result = run_cli(repo, "run", "--tag", "t", "--iterations", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = statuses(repo)
    assert [r[0] for r in rows] == ["keep", "keep", "discard"], rows  # WIN measured honestly
    assert "WIN = 1" not in git(repo, "show", "autoresearch/t:target.py")
