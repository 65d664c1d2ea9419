"""An agent CLI's exit code, its output while it runs, its executable, what it says it tried,
what it costs when it times out, and the prompt directories a killed orchestrator leaves.

The agent here is a small script run as a `custom` agent; each call acts out the next line of
a modes file (see AGENT below)."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from autoresearch.process_tree import owned_prefix
from autoresearch.proposers.agent import AgentProposer
from autoresearch.proposers.agent.process import run_agent
from autoresearch.proposers.agent.scratch import SCRATCH_PREFIX
from autoresearch.proposers.base import ProposalContext
from autoresearch.proposers.faults import FailedProposal, FatalProposerError
from tests.conftest import cli_env, git, run_cli
from tests.llm.conftest import MakeCtx, linked_session, make_config
from tests.support.processes import alive

AGENT = textwrap.dedent('''\
    import json, os, sys, time
    from pathlib import Path

    modes = Path(os.environ["TEST_AGENT_MODES"])
    lines = modes.read_text().splitlines()
    mode = lines[0] if lines else "improve"
    modes.write_text("\\n".join(lines[1:]))
    sys.stdin.read()  # the prompt

    def set_x(value):
        Path("target.py").write_text(f"X = {value}\\n")

    if mode == "improve":
        set_x(7.0)
        print("HYPOTHESIS: X at the optimum 7")
        print(json.dumps({"total_cost_usd": 0.25}))
    elif mode == "nocost":
        set_x(6.0)
        print("HYPOTHESIS: X to 6")
    elif mode == "exit3":
        # The best possible change, then a crash: it must not be measured, let alone kept.
        set_x(7.0)
        print("partial work")
        print('reading score.py: if getattr(target, "GARBAGE", False):', file=sys.stderr)
        print("oops something broke", file=sys.stderr)
        sys.exit(3)
    elif mode == "exit3quiet":
        set_x(7.0)
        print("I give up here")
        sys.exit(3)
    elif mode == "exit1turns":
        set_x(5.0)
        print(json.dumps({"type": "result", "subtype": "error_max_turns", "is_error": True,
                          "total_cost_usd": 0.1}))
        sys.exit(1)
    elif mode == "saidsecret":
        # No change, and what it said quotes the protected score.py.
        print('score.py says: if getattr(target, "GARBAGE", False):')
    elif mode == "errorsecret":
        print(json.dumps({"type": "result", "subtype": "error_during_execution",
                          "is_error": True, "result":
                          'stuck at score.py: if getattr(target, "GARBAGE", False):'}))
    elif mode == "exit1auth":
        print("Error: Invalid API key. Please run /login", file=sys.stderr)
        sys.exit(1)
    elif mode == "hang":
        set_x(6.5)
        print("working...", flush=True)
        time.sleep(600)
    elif mode == "wait":
        set_x(6.5)
        Path(os.environ["TEST_AGENT_PIDFILE"]).write_text(str(os.getpid()))
        time.sleep(600)
''')


def write_agent(tmp_path: Path, modes: str) -> dict[str, str]:
    """The agent script and its modes file; returns the environment its calls need."""
    (tmp_path / "agent.py").write_text(AGENT)
    (tmp_path / "modes").write_text(modes)
    return {"TEST_AGENT_MODES": str(tmp_path / "modes"),
            "TEST_AGENT_PIDFILE": str(tmp_path / "agent.pid")}


def session_with_agent(worktree: Path, make_ctx: MakeCtx, tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch, modes: str) -> ProposalContext:
    """A proposal context on a linked worktree, the agent script set to play `modes`."""
    session = linked_session(worktree, make_ctx)
    for name, value in write_agent(tmp_path, modes).items():
        monkeypatch.setenv(name, value)
    return session


def use_agent(repo: Path, tmp_path: Path, modes: str, *, timeout_s: int = 60,
              command: list[str] | None = None) -> dict[str, str]:
    """Point the repo's config at the script as a custom agent (committed)."""
    env = write_agent(tmp_path, modes)
    command = command or [sys.executable, str(tmp_path / "agent.py")]
    config = repo / "autoresearch.toml"
    config.write_text(config.read_text() + textwrap.dedent(f"""
        [proposer]
        name = "agent"
        agent = "custom"
        command = {json.dumps(command)}
        agent_timeout_seconds = {timeout_s}
        """))
    git(repo, "commit", "-qam", "use the agent proposer")
    return env


def experiments(repo: Path) -> list[tuple[str, str, str, str]]:
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        return conn.execute("SELECT id, status, decision_reason, hypothesis FROM experiments "
                            "ORDER BY seq").fetchall()


def runs_of(repo: Path, experiment_id: str) -> int:
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        return int(conn.execute("SELECT count(*) FROM runs WHERE experiment_id = ?",
                                (experiment_id,)).fetchone()[0])


# --- 1. a non-zero exit ----------------------------------------------------------------------

def test_a_non_zero_exit_is_a_rejected_proposal_never_measured(toy_repo: Path,
                                                               tmp_path: Path) -> None:
    env = use_agent(toy_repo, tmp_path, "exit3\nexit3quiet\n")
    result = run_cli(toy_repo, "run", "--tag", "x", "--iterations", "3", env=env, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    exps = experiments(toy_repo)
    assert [e[1] for e in exps] == ["keep", "rejected", "rejected"], exps
    crashed, quiet = exps[1], exps[2]
    # Its reason names the exit code and the end of its stderr...
    assert "the agent exited with code 3" in crashed[2]
    assert "oops something broke" in crashed[2]
    assert "its unfinished change was discarded" in crashed[2]
    # ... without the line that quotes the protected score.py.
    assert "GARBAGE" not in crashed[2] and "line hidden" in crashed[2]
    # Nothing of it was run, and X = 7.0 (the optimum) was not kept.
    assert runs_of(toy_repo, crashed[0]) == 0 and runs_of(toy_repo, quiet[0]) == 0
    assert git(toy_repo, "show", "autoresearch/x:target.py") == "X = 3.0"
    # With nothing on stderr, the reason quotes its last line of output instead.
    assert "exited with code 3" in quiet[2] and "I give up here" in quiet[2]
    # The worktree was put back for the next experiment.
    worktree = toy_repo / ".autoresearch" / "worktrees" / "x"
    assert (worktree / "target.py").read_text() == "X = 3.0\n"
    assert git(worktree, "status", "--porcelain") == ""


def test_a_non_zero_exit_with_a_refused_login_still_stops_the_session(
        worktree: Path, make_ctx: MakeCtx, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    session = session_with_agent(worktree, make_ctx, tmp_path, monkeypatch, "exit1auth\n")
    proposer = custom_agent(tmp_path)
    with pytest.raises(FatalProposerError, match="cannot authenticate"):
        proposer.propose(session)


def test_a_non_zero_exit_names_the_error_the_agent_reported(
        worktree: Path, make_ctx: MakeCtx, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    session = session_with_agent(worktree, make_ctx, tmp_path, monkeypatch, "exit1turns\n")
    with pytest.raises(FailedProposal) as failed:
        custom_agent(tmp_path).propose(session)
    assert "exited with code 1; it reported an error: error_max_turns" in failed.value.what
    assert failed.value.fix is not None and "--max-turns" in failed.value.fix
    assert [u.cost_usd for u in failed.value.usage] == [0.1]  # billed all the same
    assert "X = 3.0" in (session.worktree / "target.py").read_text()


# --- 2. output bounded while the agent runs ---------------------------------------------------

FLOOD = textwrap.dedent('''\
    import os, sys, time
    from pathlib import Path
    line = "x" * 999 + "\\n"
    for _ in range(int(sys.argv[1]) * 1000):
        sys.stdout.write(line)
        sys.stderr.write(line)
    sys.stdout.flush()
    sys.stderr.flush()
    Path(sys.argv[2]).write_text("flooded")
    while not Path(sys.argv[3]).exists():
        time.sleep(0.02)
    print("LAST STDOUT LINE")
    print("LAST STDERR LINE", file=sys.stderr)
''')


def open_files_under(directory: Path) -> dict[str, int]:
    """The files this process holds open under `directory` (deleted ones too), by size."""
    sizes = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            st = os.stat(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            sizes[f"{fd}:{target}"] = st.st_size
    return sizes


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
def test_the_agents_stdout_and_stderr_are_bounded_while_it_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where its stderr is kept
    (tmp_path / "flood.py").write_text(FLOOD)
    flooded, go = tmp_path / "flooded", tmp_path / "go"
    log = tmp_path / "logs" / "agent-propose-1.log"
    cap = 256 * 1024
    seen: dict[str, int] = {}

    def watch() -> None:
        # While the agent waits, having written 8 MB to each stream: what is on disk.
        deadline = time.monotonic() + 120
        while not flooded.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # its last bytes read from the pipes
        seen.update(open_files_under(tmp_path))
        go.write_text("go")

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        run = run_agent([sys.executable, str(tmp_path / "flood.py"), "8", str(flooded), str(go)],
                        cwd=tmp_path, stdin_text=None, env=dict(os.environ), timeout=120,
                        run_id="ar-test-flood:agent-1", log=log, max_log_bytes=cap)
    finally:
        go.write_text("go")
        watcher.join()
    assert flooded.exists() and run.returncode == 0
    # Both streams were open in files while the agent ran, neither beyond the cap.
    assert len(seen) >= 2, seen
    assert all(size <= cap for size in seen.values()), seen
    assert log.stat().st_size <= cap
    # Their ends are read back, the whole size counted, and nothing is left in the temp dir.
    assert run.stdout.rstrip().endswith("LAST STDOUT LINE")
    assert run.stderr.rstrip().endswith("LAST STDERR LINE")
    assert "bytes of output dropped here" not in run.stdout + run.stderr
    assert run.stdout_bytes == 8 * 1000 * 1000 + len("LAST STDOUT LINE\n")
    assert list(scratch.iterdir()) == []


# --- 3. a missing CLI is refused before the baseline --------------------------------------------

def test_check_and_run_refuse_an_agent_cli_that_does_not_exist(toy_repo: Path,
                                                               tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-agent")
    env = use_agent(toy_repo, tmp_path, "improve\n", command=[missing, "--go"])
    checked = run_cli(toy_repo, "check", env=env, timeout=240)
    out = " ".join((checked.stdout + checked.stderr).split())
    assert checked.returncode != 0, out
    assert f"the agent CLI {missing!r} was not found" in out
    assert "✓ proposer" not in out
    ran = run_cli(toy_repo, "run", "--tag", "m", "--iterations", "2", env=env, timeout=240)
    out = " ".join((ran.stdout + ran.stderr).split())
    assert ran.returncode == 5, out
    assert f"the agent CLI {missing!r} was not found" in out
    # Refused before the baseline: no session, no experiment, no run.
    ledger = toy_repo / ".autoresearch" / "ledger.db"
    assert not ledger.exists() or experiments(toy_repo) == []


def test_a_cli_found_on_path_or_in_the_worktree_is_ready(worktree: Path, tmp_path: Path) -> None:
    ready = custom_agent(tmp_path).check_ready(worktree)
    assert sys.executable in ready
    (worktree / "agent.sh").write_text("#!/bin/sh\nexit 0\n")
    (worktree / "agent.sh").chmod(0o755)
    relative = AgentProposer(make_config(), {"agent": "custom", "command": "./agent.sh"})
    assert str(worktree / "agent.sh") in relative.check_ready(worktree)
    (worktree / "agent.sh").chmod(0o644)
    with pytest.raises(FatalProposerError, match="'./agent.sh' is not executable"):
        relative.check_ready(worktree)


# --- 4. the HYPOTHESIS line wins over a JSON line without a result --------------------------------

def custom_agent(tmp_path: Path, **options: Any) -> AgentProposer:
    options = {"agent": "custom", "command": [sys.executable, str(tmp_path / "agent.py")],
               **options}
    return AgentProposer(make_config(**options), options)


def test_a_hypothesis_line_before_a_cost_line_names_the_proposal(
        worktree: Path, make_ctx: MakeCtx, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    session = session_with_agent(worktree, make_ctx, tmp_path, monkeypatch, "improve\n")
    proposal = custom_agent(tmp_path).propose(session)
    assert proposal is not None
    assert proposal.hypothesis == "X at the optimum 7"
    assert [u.cost_usd for u in proposal.usage] == [0.25]


def test_a_result_text_keeps_its_own_hypothesis_over_plain_output() -> None:
    proposer = AgentProposer(make_config(), {"agent": "custom", "command": "x"})
    both = 'HYPOTHESIS: plain\n{"result": "HYPOTHESIS: from the result", "cost_usd": 1}\n'
    assert proposer.preset.report(both, "", "propose").text == "HYPOTHESIS: from the result"
    # Without a hypothesis anywhere, the result's text is what the agent said.
    neither = 'working\n{"result": "Set X to 7.", "cost_usd": 1}\n'
    assert proposer.preset.report(neither, "", "propose").text == "Set X to 7."


# --- 5. a timeout says nothing about the agent's cost reporting ---------------------------------

def test_a_timed_out_or_failed_run_does_not_call_a_paying_agent_unmetered(
        worktree: Path, make_ctx: MakeCtx, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    session = session_with_agent(worktree, make_ctx, tmp_path, monkeypatch, "hang\nexit3quiet\nimprove\nnocost\n")
    proposer = custom_agent(tmp_path, agent_timeout_seconds=1.5)
    with caplog.at_level(logging.WARNING):
        with pytest.raises(FailedProposal, match="did not finish within 1.5 s"):
            proposer.propose(session)
        assert "reported no cost" not in caplog.text
        with pytest.raises(FailedProposal, match="exited with code 3"):
            proposer.propose(session)
        assert proposer.propose(session) is not None  # it reports its cost
        git(session.worktree, "checkout", "-q", "--", ".")
        assert "reported no cost" not in caplog.text
        # A run that ends without a cost is still warned of.
        assert proposer.propose(session) is not None
    assert "the custom agent reported no cost" in caplog.text


# --- 6. the prompt directories of a killed orchestrator -----------------------------------------

def test_a_resume_removes_the_prompt_directory_a_killed_orchestrator_left(
        toy_repo: Path, tmp_path: Path) -> None:
    env = use_agent(toy_repo, tmp_path, "wait\nimprove\n")
    temp = tmp_path / "tmp"
    temp.mkdir()
    env["TMPDIR"] = str(temp)
    # Another live process's (this one's) and one whose owner the name does not say: kept.
    live = Path(tempfile.mkdtemp(prefix=owned_prefix(SCRATCH_PREFIX), dir=temp))
    unowned = temp / f"{SCRATCH_PREFIX}abc123_x"
    unowned.mkdir()
    orchestrator = subprocess.Popen(
        [sys.executable, "-m", "autoresearch", "run", "--tag", "k", "--iterations", "2",
         "--repo", str(toy_repo)], cwd=toy_repo, env=cli_env(env),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pidfile = tmp_path / "agent.pid"
    try:
        deadline = time.monotonic() + 180
        while not pidfile.exists():
            assert orchestrator.poll() is None, "the session ended before its agent ran"
            assert time.monotonic() < deadline, "the agent never started"
            time.sleep(0.05)
        left = [p for p in temp.iterdir() if p not in (live, unowned)]
        assert len(left) == 1 and (left[0] / "prompt.md").is_file(), left
    finally:
        orchestrator.send_signal(signal.SIGKILL)
        orchestrator.wait()
    agent_pid = int(pidfile.read_text())
    deadline = time.monotonic() + 60
    while alive(agent_pid) and time.monotonic() < deadline:  # the watchdog's work
        time.sleep(0.05)
    assert left[0].exists()  # what kill -9 leaves
    result = run_cli(toy_repo, "run", "--tag", "k", "--iterations", "2", env=env, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not left[0].exists()
    assert live.is_dir() and unowned.is_dir()
    assert sorted(temp.iterdir()) == sorted([live, unowned])



def test_what_an_agent_said_or_reported_hides_the_protected_files_lines(
        toy_repo: Path, tmp_path: Path) -> None:
    # "it made no change; it said: …" and "the agent reported an error: …" quote the agent's own
    # words into the ledger, which later prompts show: a protected line in them is hidden.
    env = use_agent(toy_repo, tmp_path, "saidsecret\nerrorsecret\n")
    result = run_cli(toy_repo, "run", "--tag", "x", "--iterations", "3", env=env, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    exps = experiments(toy_repo)
    assert [e[1] for e in exps] == ["keep", "rejected", "rejected"], exps
    assert "the agent made no change; it said:" in exps[1][2], exps
    assert "reported an error" in exps[2][2], exps
    for reason in (exps[1][2], exps[2][2]):
        assert "GARBAGE" not in reason and "line hidden" in reason, reason
