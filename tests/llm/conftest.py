"""Fixtures for the llm/agent proposer tests: a fake model server, a toy worktree, a context."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from autoresearch.config import Config, parse_config
from autoresearch.proposers.agent import process as agent_process
from autoresearch.proposers.base import ExperimentSummary, ProposalContext
from autoresearch.state import StatePaths
from tests.llm.fake_server import FakeModelServer
from tests.support.git_repo import git, make_repo

TARGET = """\
# The toy target: the objective is (X - 7) ** 2.
import math

X = 3.0
SCALE = 1.0


def f(x):
    return (x - 7) ** 2 * SCALE
"""


def make_config(**proposer: Any) -> Config:
    return parse_config({
        "scope": ["target.py", "lib/*.py"],
        "protected": ["score.py", "secrets.txt"],
        "verify": {"command": "python score.py", "budget_seconds": 5},
        "metric": {"name": "score", "direction": "minimize", "heldout": ["test_acc"]},
        "proposer": {"name": "llm", **proposer},
    })


@pytest.fixture
def worktree(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "wt", {
        "target.py": TARGET, "score.py": "import target\nprint('score:', target.f(target.X))\n",
        "secrets.txt": "TOKEN=do-not-leak-123\n", "lib/util.py": "def helper():\n    return 1\n"})


def summary(seq: int, status: str, hypothesis: str, objective: float | None,
            delta: float | None, **kw: Any) -> ExperimentSummary:
    return ExperimentSummary(id=f"t-{seq:04d}", seq=seq, status=status, hypothesis=hypothesis,
                             objective=objective, delta=delta, reason=kw.pop("reason", ""), **kw)


MakeCtx = Callable[..., ProposalContext]


@pytest.fixture
def make_ctx(worktree: Path) -> MakeCtx:
    def make(config: Config | None = None, *, history: Sequence[ExperimentSummary] = (),
             stuck: bool = False, crash: str | None = None, diff: str = "",
             program: str = "Minimise the score. Try changing X.") -> ProposalContext:
        config = config or make_config()
        baseline = summary(1, "keep", "baseline", 16.0, None)
        return ProposalContext(
            session_tag="t", worktree=worktree, config=config, program=program,
            scope_files=["lib/util.py", "score.py", "secrets.txt", "target.py"],
            history=[baseline, *history], baseline=baseline,
            incumbent=baseline, stuck=stuck, last_crash_log=crash, metric_name="score",
            direction="minimize", diff_from_baseline=lambda: diff, experiment_id="t-0099",
        )

    return make


def llm_options(server: FakeModelServer, provider: str = "anthropic", **extra: Any) -> dict[str, Any]:
    """[proposer] options pointing at the fake server, with fast retries for tests."""
    base = server.anthropic_url if provider == "anthropic" else server.openai_url
    model = "claude-sonnet-4-6" if provider == "anthropic" else "gpt-4.1"
    return {"provider": provider, "base_url": base, "model": model, "retry_base_seconds": 0.01,
            "retry_max_seconds": 0.05, "timeout_seconds": 5, "max_retries": 2, **extra}


def fake_model_proposer(server: FakeModelServer, **options: object) -> str:
    """The `[proposer]` table of the llm proposer on the fake server's Anthropic API, with fast
    retries and `options` added (TOML)."""
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in options.items())
    return textwrap.dedent(
        f"""
        [proposer]
        name = "llm"
        provider = "anthropic"
        base_url = "{server.anthropic_url}"
        model = "claude-sonnet-4-6"
        retry_base_seconds = 0.01
        """
    ) + extra


def use_fake_model(repo: Path, server: FakeModelServer, **options: object) -> None:
    """Point the repo's config at the fake model, give it a program.md, and commit both."""
    use_llm_config(repo, fake_model_proposer(server, **options))


def use_llm_config(repo: Path, proposer_table: str) -> None:
    """Append `proposer_table` (a whole [proposer] table) to the repo's config, give it a
    program.md, and commit both."""
    config = repo / "autoresearch.toml"
    config.write_text(config.read_text() + proposer_table)
    (repo / "program.md").write_text("Minimise score = (X - 7)^2 by changing X.\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "use the llm proposer")


def ledger_rows(repo: Path, columns: str = "id") -> list[tuple[Any, ...]]:
    """`columns` of every experiment of the repo's ledger, by id (none when there is no ledger
    yet: a refused start records nothing)."""
    db = repo / ".autoresearch" / "ledger.db"
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT {columns} FROM experiments ORDER BY id").fetchall()


FAKE_AGENT = Path(__file__).with_name("fake_agent.py")


def install_fake_agents(bin_dir: Path) -> Path:
    """Write `claude`, `codex`, `aider` and `myagent` executables that run fake_agent.py."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in ("claude", "codex", "aider", "myagent"):
        script = bin_dir / name
        # runpy replaces argv[0], so the name the CLI was called by travels in the environment.
        script.write_text(f"#!{sys.executable}\nimport os, runpy\nos.environ['FAKE_AGENT_NAME'] = "
                          f"{name!r}\nrunpy.run_path({str(FAKE_AGENT)!r}, run_name='__main__')\n")
        script.chmod(0o755)
    return bin_dir


@pytest.fixture
def agents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Install the fake CLIs on PATH (mode `improve` unless a test sets FAKE_AGENT_MODE);
    returns the JSON-lines log of their calls."""
    bin_dir = install_fake_agents(tmp_path / "bin")
    log = tmp_path / "agent-calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_AGENT_LOG", str(log))
    monkeypatch.setenv("FAKE_AGENT_PIDFILE", str(tmp_path / "child.pid"))
    monkeypatch.setenv("FAKE_AGENT_MODE", "improve")
    return log


def use_fake_agent(repo: Path, tmp_path: Path, modes: str,
                   timeout_s: int = 60) -> dict[str, str]:
    """Point the repo's config at the agent proposer running the fake `claude` (committed); the
    agent acts out `modes` (one a line), call by call. Returns the environment a run needs."""
    bin_dir = install_fake_agents(tmp_path / "bin")
    (tmp_path / "modes").write_text(modes)
    config = repo / "autoresearch.toml"
    config.write_text(config.read_text() + textwrap.dedent(f"""
        [proposer]
        name = "agent"
        agent = "claude"
        agent_timeout_seconds = {timeout_s}
        """))
    git(repo, "commit", "-qam", "use the agent proposer")
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "FAKE_AGENT_MODES": str(tmp_path / "modes"),
            "FAKE_AGENT_LOG": str(tmp_path / "calls.jsonl"),
            "FAKE_AGENT_PIDFILE": str(tmp_path / "agent.pid")}


def linked_session(worktree: Path, make_ctx: MakeCtx, ignored: str = "") -> ProposalContext:
    """The session's linked worktree of `worktree` (the user's repository, `main` checked out),
    detached at a new branch `autoresearch/t` as the harness leaves it; `ignored`: more lines for
    the .gitignore (which ignores the state directory)."""
    (worktree / ".gitignore").write_text(ignored + ".autoresearch/\n")
    git(worktree, "add", ".gitignore")
    git(worktree, "commit", "-qm", "ignore the state")
    git(worktree, "branch", "autoresearch/t")
    linked = worktree / ".autoresearch" / "worktrees" / "t"
    git(worktree, "worktree", "add", "-q", "--detach", str(linked), "autoresearch/t")
    return dataclasses.replace(make_ctx(), worktree=linked)


_HOLD_LOCK = ("import sys\nfrom pathlib import Path\nfrom autoresearch.state import SessionLock\n"
              "SessionLock(Path(sys.argv[1])).acquire()\nprint('held', flush=True)\n"
              "sys.stdin.read()\n")


@contextmanager
def live_session(repo: Path, tag: str) -> Iterator[None]:
    """Session `tag` running meanwhile: its lock held by another process, as its own process
    holds it (this process runs the agent, as the orchestrator does, and a lock it holds is
    never another session's)."""
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(StatePaths(repo, tag).lock)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def agent_timeout_counts_from(marker: Path, monkeypatch: pytest.MonkeyPatch,
                              within_s: float = 60) -> list[float]:
    """The agent's timeout starts once the fake agent has written `marker` (it is set up: at its
    prompt, its child ignoring SIGTERM), not at its launch: a second-long timeout would
    otherwise run out, on a loaded machine, before the agent's Python has even started.
    Returns the list the monotonic time the timeout started is appended to."""
    real = agent_process.wait_exit
    started: list[float] = []

    def wait_exit(pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + within_s
        while not marker.exists():
            if real(pid, 0.02):
                return True  # it ended before getting there: the test will say so
            assert time.monotonic() < deadline, f"the agent never wrote {marker}"
        started.append(time.monotonic())
        return real(pid, timeout_s)

    monkeypatch.setattr(agent_process, "wait_exit", wait_exit)
    return started
