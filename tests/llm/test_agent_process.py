"""An agent's processes end with its run, and with the orchestrator, whatever kills it.

The fake agent's `persist` mode starts what a coding agent's shell could: a child that leaves
the session, ignores SIGTERM and keeps rewriting target.py. Before agents got the verify
command's process control, a kill -9 of `autoresearch run` left it running; the resume neither
killed nor noticed it, and it kept editing the resumed session's worktree.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoresearch.process_tree import OWNER_ENV, RUN_ID_ENV
from autoresearch.proposers.agent import AgentProposer
from autoresearch.proposers.base import ProposalContext
from autoresearch.state import run_ids_of_worktree
from tests.conftest import cli_env, git, run_cli
from tests.llm.conftest import MakeCtx, install_fake_agents, make_config, use_fake_agent
from tests.support.processes import alive, kill_watchdog

ORPHAN_TEXT = "written by an orphan"


def wait_dead(pid: int, within_s: float = 60) -> bool:  # the watchdog's reaction, when busy
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return not alive(pid)


@contextlib.contextmanager
def reaped(pidfile: Path) -> Iterator[None]:
    """Whatever the test concludes, the orphan it made does not outlive it."""
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


def start_and_wait_for_orphan(repo: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "autoresearch", "run", "--repo", str(repo), "--tag", "a",
         "--iterations", "3"],
        cwd=repo, env=cli_env(env), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    pidfile = Path(env["FAKE_AGENT_PIDFILE"])
    deadline = time.monotonic() + 120
    while not pidfile.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the agent never ran"
        time.sleep(0.05)
    return proc, int(pidfile.read_text())


@pytest.mark.slow
def test_an_agents_orphan_dies_with_a_sigkilled_orchestrator(toy_repo: Path,
                                                             tmp_path: Path) -> None:
    env = use_fake_agent(toy_repo, tmp_path, "persist\n", timeout_s=600)
    with reaped(Path(env["FAKE_AGENT_PIDFILE"])):
        proc, orphan = start_and_wait_for_orphan(toy_repo, env)
        proc.kill()
        proc.wait()
        assert wait_dead(orphan), "the agent's child outlived the orchestrator"


@pytest.mark.slow
def test_a_resume_kills_an_agents_orphan_before_the_next_experiment(toy_repo: Path,
                                                                    tmp_path: Path) -> None:
    env = use_fake_agent(toy_repo, tmp_path, "persist\nimprove\nimprove\n", timeout_s=600)
    worktree = toy_repo / ".autoresearch" / "worktrees" / "a"
    with reaped(Path(env["FAKE_AGENT_PIDFILE"])):
        proc, orphan = start_and_wait_for_orphan(toy_repo, env)
        kill_watchdog(proc.pid)  # the worst case: nothing of the session is left to clean up
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 60
        while ORPHAN_TEXT not in (worktree / "target.py").read_text():  # it goes on writing
            assert time.monotonic() < deadline and alive(orphan)
            time.sleep(0.02)
        result = run_cli(toy_repo, "run", "--tag", "a", "--iterations", "3", env=env,
                         timeout=240)
        assert result.returncode == 0, result.stdout + result.stderr
        assert not alive(orphan)
    with sqlite3.connect(toy_repo / ".autoresearch" / "ledger.db") as conn:
        statuses = [r[0] for r in conn.execute("SELECT status FROM experiments ORDER BY seq")]
        events = [r[0] for r in conn.execute("SELECT message FROM events WHERE kind = 'recovery'")]
    # The orphan's edit never reached an experiment: the resumed one kept the agent's own change.
    assert statuses == ["keep", "interrupted", "keep", "rejected"], statuses
    assert git(toy_repo, "show", "autoresearch/a:target.py") == "X = 7.0"
    assert ORPHAN_TEXT not in git(toy_repo, "log", "--all", "-p")
    assert any("killed" in e and "leftover" in e for e in events), events
    assert ORPHAN_TEXT not in (worktree / "target.py").read_text()


def test_an_orphan_of_a_dead_session_is_fenced_off_before_the_agent_runs(
        tmp_path: Path, make_ctx: MakeCtx, worktree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even without a resume: the agent proposer kills what a dead orchestrator left in its
    repository before it reads the worktree, so no earlier process writes into this proposal."""
    bin_dir = install_fake_agents(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_AGENT_LOG", str(tmp_path / "calls.jsonl"))
    monkeypatch.setenv("FAKE_AGENT_MODE", "improve")
    dead = subprocess.run([sys.executable, "-c", "from autoresearch.process_tree import "
                           "owner_token; print(owner_token())"], capture_output=True, text=True,
                          check=True)
    writer = subprocess.Popen(
        [sys.executable, "-c", "import time, pathlib\nwhile True:\n"
         f"    pathlib.Path('lib/util.py').write_text({ORPHAN_TEXT!r})\n    time.sleep(0.02)\n"],
        cwd=worktree, start_new_session=True,
        env={**os.environ, RUN_ID_ENV: run_ids_of_worktree(worktree) + "old-agent-1",
             OWNER_ENV: dead.stdout.strip()})
    try:
        deadline = time.monotonic() + 60
        while ORPHAN_TEXT not in (worktree / "lib" / "util.py").read_text():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        # It writes into the worktree the harness reset for this experiment: the agent proposer
        # kills it and undoes its write before it reads anything.
        ctx: ProposalContext = dataclasses.replace(make_ctx())
        proposal = AgentProposer(make_config(agent="claude"), {"agent": "claude"}).propose(ctx)
        assert proposal is not None
        assert writer.wait(timeout=5) == -signal.SIGTERM
        assert git(worktree, "status", "--porcelain") == "M target.py"
    finally:
        writer.kill()
        writer.wait()
