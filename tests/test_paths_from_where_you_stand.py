"""Paths the CLI prints work from where the user stands: relative to the working directory when
that is a subdirectory of the repository, absolute when it is outside (`--repo`). Printed
relative to the repository's root, they named nothing from a subdirectory."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import UNTIMED_CONFIG, cli_env, git, make_repo, use_script

# The metric printed in another shape than `score: N`, so check offers the lines to read it.
SCORE_IN_WORDS = "import target\nprint(f'score = {(target.X - 7) ** 2}')\n"
SCORE = "import target\nprint(f'score: {(target.X - 7) ** 2}')\n"


def cli_in(where: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI run in `where`, finding the repository from there as a user's shell would."""
    return subprocess.run([sys.executable, "-m", "autoresearch", *args], cwd=where,
                          env=cli_env({"COLUMNS": "300"}), capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)


def said(proc: subprocess.CompletedProcess[str]) -> str:
    return " ".join((proc.stdout + proc.stderr).split())


def test_paths_printed_from_a_subdirectory_or_from_outside_work_there(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"target.py": "X = 3.0  # knob: float(0, 10)\n",
                                         "autoresearch.toml": UNTIMED_CONFIG,
                                         "sub/notes.md": "notes\n"})
    repo = repo.resolve()
    sub = repo / "sub"
    (repo / "score.py").write_text(SCORE_IN_WORDS)  # written, not committed

    # The command to commit the evaluation, typed where the user is, commits it.
    here, outside = cli_in(sub, "check"), cli_in(tmp_path, "check", "--repo", str(repo))
    assert here.returncode == 1 and outside.returncode == 1, said(here) + said(outside)
    assert "Commit it: git add ../score.py && git commit (" in said(here), said(here)
    assert (f"Commit it: git -C {repo} add score.py && git -C {repo} commit (" in said(outside)
            ), said(outside)
    subprocess.run("git add ../score.py && git commit -qm 'the evaluation'", shell=True,
                   cwd=sub, check=True, env=cli_env())
    assert git(repo, "status", "--porcelain") == ""

    # The kept output of a failed dry run, named twice, is the file check wrote.
    here, outside = cli_in(sub, "check"), cli_in(tmp_path, "check", "--repo", str(repo))
    assert here.returncode == 1 and outside.returncode == 1, said(here) + said(outside)
    assert "the whole output: ../.autoresearch/check.log" in said(here), said(here)
    assert "(the whole output is in ../.autoresearch/check.log:" in said(here), said(here)
    assert (sub / "../.autoresearch/check.log").read_text().startswith("score = 16")
    log = repo / ".autoresearch" / "check.log"
    assert f"the whole output: {log}" in said(outside), said(outside)
    assert f"(the whole output is in {log}:" in said(outside), said(outside)

    # A session run from the subdirectory: its results file, the ledger, and the worktree
    # slots finalize removes are named from there too.
    (repo / "score.py").write_text(SCORE)
    git(repo, "commit", "-qam", "print the score as check said")
    use_script(repo, [{"hypothesis": "X to 6",
                       "edits": {"target.py": "X = 6.0  # knob: float(0, 10)\n"}}])
    run = cli_in(sub, "run", "--tag", "t", "-n", "2")
    assert run.returncode == 0, said(run)
    assert "results: ../.autoresearch/sessions/t/results.tsv;" in said(run), said(run)
    assert (sub / "../.autoresearch/sessions/t/results.tsv").read_text().count("\n") == 3
    check = cli_in(sub, "check")
    assert "ledger ../.autoresearch/ledger.db is sound" in said(check), said(check)
    check = cli_in(tmp_path, "check", "--repo", str(repo))
    assert f"ledger {repo}/.autoresearch/ledger.db is sound" in said(check), said(check)
    finalize = cli_in(sub, "finalize", "--tag", "t")
    assert finalize.returncode == 0, said(finalize)
    assert ("removed the session's 1 worktree slot(s) under ../.autoresearch/worktrees/t "
            in said(finalize)), said(finalize)


# Alone it passes; two at once collide on a directory outside the repository (as on a port).
SCORE_ALONE_ONLY = textwrap.dedent(
    """
    import os, sys, time
    import target
    claim = sys.argv[1]
    try:
        os.mkdir(claim)
    except FileExistsError:
        raise SystemExit(f"{claim} is taken: another run holds it")
    time.sleep(2)
    os.rmdir(claim)
    print(f"score: {(target.X - 7) ** 2}")
    """
)


def test_the_output_of_runs_that_collide_is_named_from_a_subdirectory(tmp_path: Path) -> None:
    claim = tmp_path / "claim"
    config = UNTIMED_CONFIG.replace('"{python} score.py"', f'"{{python}} score.py {claim}"')
    repo = make_repo(tmp_path / "repo", {"target.py": "X = 3.0  # knob: float(0, 10)\n",
                                         "score.py": SCORE_ALONE_ONLY, "autoresearch.toml": config,
                                         "sub/notes.md": "notes\n"}).resolve()
    check = cli_in(repo / "sub", "check", "--workers", "2")
    assert check.returncode == 1, said(check)
    assert "with 2 runs at once 1 failed" in said(check), said(check)
    assert "the whole output: ../.autoresearch/check-slot.log" in said(check), said(check)
    assert "is taken" in (repo / "sub/../.autoresearch/check-slot.log").read_text()
