"""`autoresearch run > night.log 2>&1` inside the repository: the harness's own output file.

The agent guard compares the user's checkout before and after each agent run and stops the
session on any change there (`proposers/agent/checkout.py`). The log the shell redirected the
harness's stdout and stderr to grows during that run, written by the harness, not the agent: it
is not the agent's change. Anything else the agent does to the checkout still is, that file
included when it is deleted or another path is made to point at it. The start and the resume
refuse only uncommitted changes to tracked files, so an untracked log growing there is fine.
"""

from __future__ import annotations

import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CONFIG, SCORE_PY, cli_env, use_agent, use_script
from tests.support.git_repo import git, make_repo

# Each call moves X one step (a real proposal), then plays the trick named in the `mode` file on
# the user's checkout, whose path the test fills in.
AGENT = """#!/bin/sh
n=$(( $(cat {calls} 2>/dev/null || echo 0) + 1 )); echo $n > {calls}
sed -i "s/X = .*/X = 4.$n/" target.py
case "$(cat {mode})" in
  notes) echo "the agent's notes" > '{repo}/notes.md' ;;
  delete) rm '{repo}/night.log' ;;
  alias) ln -s night.log '{repo}/alias.log' ;;
esac
echo "Hypothesis: X to 4.$n"
"""


def agent_repo(tmp_path: Path, mode: str) -> Path:
    repo = make_repo(tmp_path / "repo", {"target.py": "X = 3.0\n", "score.py": SCORE_PY,
                                         "autoresearch.toml": CONFIG})
    (tmp_path / "mode").write_text(mode)
    use_agent(repo, AGENT.format(calls=tmp_path / "calls", mode=tmp_path / "mode", repo=repo),
              tmp_path)
    return repo


def run_logged(repo: Path, *args: str, append: bool = False) -> tuple[int, str]:
    """The real CLI with stdout and stderr sent to night.log in the repository, as the README
    suggests; its exit code and what it wrote there. The file is read through the test's own
    descriptor, so it is read whole even when something deleted its name."""
    with open(repo / "night.log", "a+" if append else "w+", encoding="utf-8") as log:
        start = log.tell()
        proc = subprocess.run([sys.executable, "-m", "autoresearch", *args, "--repo", str(repo)],
                              cwd=repo, env=cli_env(), stdin=subprocess.DEVNULL, stdout=log,
                              stderr=subprocess.STDOUT, timeout=240)
        log.seek(start)
        return proc.returncode, log.read()


def statuses(repo: Path) -> list[str]:
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        return [r[0] for r in conn.execute("SELECT status FROM experiments ORDER BY seq")]


def test_the_harness_log_in_the_checkout_is_not_the_agents_change(tmp_path: Path) -> None:
    repo = agent_repo(tmp_path, "honest")
    code, text = run_logged(repo, "run", "--tag", "n", "--iterations", "3")
    assert code == 0, text
    assert "changed your own checkout" not in text
    # Written while the agent's first run was being judged: the log did grow inside the window
    # the guard compares (this is what made the guard blame the agent for it).
    assert "the custom agent reported no cost" in text
    assert statuses(repo) == ["keep", "keep", "keep"]
    assert git(repo, "status", "--porcelain") == "?? night.log"


@pytest.mark.parametrize(("mode", "named"), [
    ("notes", "notes.md"),  # any other file of the checkout
    ("delete", "night.log"),  # the harness's log itself, deleted
    ("alias", "alias.log"),  # a new path to that same file
])
def test_any_other_change_to_the_checkout_still_stops_the_session(
        tmp_path: Path, mode: str, named: str) -> None:
    repo = agent_repo(tmp_path, mode)
    code, text = run_logged(repo, "run", "--tag", "n", "--iterations", "3")
    assert code == 5, text
    said = " ".join(text.split())
    assert (f"error: the agent changed your own checkout {repo}, outside the worktree it was "
            f"given: {named};") in said, text
    assert statuses(repo) == ["keep", "interrupted"]


def test_an_untracked_log_growing_in_the_checkout_lets_the_session_start_and_resume(
        toy_repo: Path) -> None:
    use_script(toy_repo, [{"hypothesis": f"X to {x}", "edits": {"target.py": f"X = {x}\n"}}
                          for x in (4, 5, 6, 7)])
    code, first = run_logged(toy_repo, "run", "--tag", "s", "--iterations", "2")
    assert code == 0, first
    assert statuses(toy_repo) == ["keep", "keep"]
    code, again = run_logged(toy_repo, "run", "--tag", "s", "--iterations", "4", append=True)
    assert code == 0, again
    assert "uncommitted changes" not in again
    assert statuses(toy_repo) == ["keep", "keep", "keep", "keep"]
    # Both sessions' output is there, the first one's kept by the append.
    assert (toy_repo / "night.log").read_text(encoding="utf-8") == first + again


def test_a_closed_stdout_leaves_only_stderrs_file_as_the_harness_output(tmp_path: Path) -> None:
    # A process started with stdout closed (`>&-`) has no descriptor 1: the guard must still
    # take its snapshot, from stderr alone, rather than fail on it.
    code = ("import os, sys\n"
            "from autoresearch.proposers.agent.checkout import own_output_files\n"
            "os.close(1)\n"
            "st = os.stat(sys.argv[1])\n"
            "assert own_output_files() == {(st.st_dev, st.st_ino)}, own_output_files()\n")
    err = tmp_path / "err.log"
    with open(err, "w") as stderr:
        proc = subprocess.run([sys.executable, "-c", code, str(err)], env=cli_env(),
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=stderr, timeout=60)
    assert proc.returncode == 0, err.read_text()


def run_teed(repo: Path, *args: str, stages: str = "") -> tuple[int, str]:
    """The real CLI piped through `tee night.log` in the repository (after `stages`, more
    programs of the pipeline, e.g. `cat |`); the CLI's exit code and what tee wrote."""
    cli = " ".join(map(shlex.quote, [sys.executable, "-m", "autoresearch", *args,
                                     "--repo", str(repo)]))
    script = f"{cli} 2>&1 | {stages} tee night.log > /dev/null; exit ${{PIPESTATUS[0]}}"
    proc = subprocess.run(["bash", "-c", script], cwd=repo, env=cli_env(),
                          stdin=subprocess.DEVNULL, timeout=240)
    return proc.returncode, (repo / "night.log").read_text(encoding="utf-8")


@pytest.mark.parametrize("stages", ["", "cat |"])
def test_a_log_teed_into_the_checkout_is_not_the_agents_change(
        tmp_path: Path, stages: str) -> None:
    # `| tee night.log`: tee writes the file, not the harness, yet it is the harness's output.
    repo = agent_repo(tmp_path, "honest")
    code, text = run_teed(repo, "run", "--tag", "n", "--iterations", "3", stages=stages)
    assert code == 0, text
    assert "changed your own checkout" not in text
    assert "the custom agent reported no cost" in text  # the log grew while an agent run was judged
    assert statuses(repo) == ["keep", "keep", "keep"]


def test_another_change_to_the_checkout_still_stops_a_teed_session(tmp_path: Path) -> None:
    repo = agent_repo(tmp_path, "notes")
    code, text = run_teed(repo, "run", "--tag", "n", "--iterations", "3")
    assert code == 5, text
    assert "notes.md" in " ".join(text.split())
    assert statuses(repo) == ["keep", "interrupted"]


def test_the_pipelines_files_are_taken_once_before_any_agent_runs(tmp_path: Path) -> None:
    # A program that opens the harness's output pipe later (as an agent could, through
    # /proc/<pid>/fd) must not make the file it writes count as the harness's output.
    code = ("import os, subprocess, sys\n"
            "from autoresearch.proposers.agent.pipe_files import files_behind_own_pipes\n"
            "first = set(files_behind_own_pipes())\n"
            "late = open(sys.argv[2], 'w')\n"
            "reader = subprocess.Popen(['sleep', '30'], stdin=open('/proc/self/fd/1'), "
            "stdout=late)\n"
            "try:\n"
            "    again = set(files_behind_own_pipes())\n"
            "finally:\n"
            "    reader.kill()\n"
            "st, lt = os.stat(sys.argv[1]), os.stat(sys.argv[2])\n"
            "assert (st.st_dev, st.st_ino) in first, first\n"
            "assert (lt.st_dev, lt.st_ino) not in again, again\n"
            "sys.stderr.write('ok')\n")
    teed, late = tmp_path / "teed.log", tmp_path / "late.log"
    script = (f"{shlex.quote(sys.executable)} -c {shlex.quote(code)} {shlex.quote(str(teed))} "
              f"{shlex.quote(str(late))} | tee {shlex.quote(str(teed))} > /dev/null")
    proc = subprocess.run(["bash", "-c", script], env=cli_env(), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert proc.stderr == "ok", proc.stderr
