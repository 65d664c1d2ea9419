"""Fixtures for the views: synthetic and real session ledgers, and a dashboard server on loopback."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from autoresearch.dashboard.app import create_app
from tests.conftest import cli_env as suite_cli_env
from tests.views.ledger_factory import GIT_ENV, BuiltSession, build_session, git, init_repo
from tests.views.review_session import Reviewed, build_reviewed_session

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"

TOY_CONFIG = textwrap.dedent(
    """
    scope = ["target.py"]

    [verify]
    command = "python -c \\"import target; print('score:', (target.X-7)**2)\\""
    budget_seconds = 5

    [metric]
    name = "score"
    direction = "minimize"

    [decision]
    deterministic = true  # (X - 7)² is exact: identical repeats are the truth
    """
)

# Three files, so that a real session can keep changes that finalize must group: a.py and b.py
# end up changed together by one kept commit, c.py only by its own.
MULTI_SCORE = textwrap.dedent(
    """
    import random
    import a, b, c
    print(f"score: {(a.A - 3) ** 2 + (b.B * c.C - 2) ** 2 + random.gauss(0, 0.02)}")
    """
)
MULTI_CONFIG = textwrap.dedent(
    """
    scope = ["a.py", "b.py", "c.py"]
    protected = ["score.py"]

    [verify]
    command = "{python} score.py"
    budget_seconds = 5

    [metric]
    name = "score"
    direction = "minimize"

    [proposer]
    name = "tests.support.scripted_proposer:ScriptedProposer"
    script = "SCRIPT"
    """
)
MULTI_SCRIPT = [
    {"hypothesis": "move A towards 3", "edits": {"a.py": "A = 2.0\n"}},
    {"hypothesis": "set B to 1", "edits": {"b.py": "B = 1.0\n"}},
    {"hypothesis": "overshoot A", "edits": {"a.py": "A = 10.0\n"}},
    {"hypothesis": "double C", "edits": {"c.py": "C = 2.0\n"}},
    {"hypothesis": "A exactly 3, note on B",
     "edits": {"a.py": "A = 3.0\n", "b.py": "B = 1.0  # tuned\n"}},
    {"hypothesis": "triple C", "edits": {"c.py": "C = 3.0\n"}},
]


# A noisy target whose noise is reproducible: each run prints X plus the next offset of a fixed
# sequence (the counter lives in the repository's git-ignored state directory, reached from the
# session worktree, so a copy of the repository continues the sequence on its own). The baseline
# runs are 13.03, 13.06 and 13.27 (σ 0.1305); the confirmation re-runs of "nudge X down" change the
# pooled σ the engine records, so the two noise floors differ.
NOISY_OFFSETS = [0.03, 0.06, 0.27, 0.0, 0.10, -0.08, 0.05, 0.18, -0.04, 0.12, 0.02, -0.10, 0.08,
                 0.0]
NOISY_BASELINE = [13.03, 13.06, 13.27]
NOISY_SCORE = textwrap.dedent(
    f"""
    import os, pathlib
    import target
    OFFSETS = {NOISY_OFFSETS!r}
    counter = pathlib.Path(os.environ["NOISY_COUNTER"])
    i = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(i + 1))
    print(f"score: {{target.X + OFFSETS[i % len(OFFSETS)]:.6f}}")
    """
)
NOISY_CONFIG = textwrap.dedent(
    """
    scope = ["target.py"]
    protected = ["score.py"]

    [verify]
    command = "{python} score.py"
    budget_seconds = 5
    env = { NOISY_COUNTER = "../../noise-counter" }

    [metric]
    name = "score"
    direction = "minimize"

    [proposer]
    name = "tests.support.scripted_proposer:ScriptedProposer"
    script = "script.json"
    """
)
NOISY_SCRIPT = [
    {"hypothesis": "lower X to 12", "edits": {"target.py": "X = 12.0\n"}},
    {"hypothesis": "nudge X down to 11.6", "edits": {"target.py": "X = 11.6\n"}},
    {"hypothesis": "X to 10.5", "edits": {"target.py": "X = 10.5\n"}},
    {"hypothesis": "X to 14", "edits": {"target.py": "X = 14.0\n"}},
    {"hypothesis": "X to 9.6, a larger step down", "edits": {"target.py": "X = 9.6\n"}},
    {"hypothesis": "X to 8.8, another step down", "edits": {"target.py": "X = 8.8\n"}},
    {"hypothesis": "X back to 9.9", "edits": {"target.py": "X = 9.9\n"}},
]
# One wild result among the rest (50 where everything else is 8-14), then a run of kept steps
# one after another with long hypotheses, whose labels cannot all fit beside each other.
CROWDED_SCRIPT = [
    *NOISY_SCRIPT[:2],
    {"hypothesis": "push X up to 50 (a wild guess)", "edits": {"target.py": "X = 50.0\n"}},
    *[{"hypothesis": f"step X down to {x} because a smaller X has helped every time so far",
       "edits": {"target.py": f"X = {x}\n"}} for x in (11.0, 10.4, 9.8, 9.2, 8.6, 8.0)],
]


def cli_env() -> dict[str, str]:
    """The suite's CLI environment, committing as the ledger factory's author."""
    return suite_cli_env(GIT_ENV)


def autoresearch(repo: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess, the way a user runs it."""
    return subprocess.run([sys.executable, "-m", "autoresearch", *args], cwd=repo, env=cli_env(),
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def run_toy_session(repo: Path, iterations: int = 8, tag: str = "t") -> Path:
    """The toy target of the issue, tuned by the offline `tune` proposer in a real session."""
    if not (repo / ".git").exists():
        init_repo(repo, {"target.py": "X = 3.0  # knob: float(0, 10)\n",
                         "autoresearch.toml": TOY_CONFIG, "program.md": "Make score small.\n"})
    proc = autoresearch(repo, "run", "--iterations", str(iterations), "--tag", tag)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return repo


@pytest.fixture(scope="session")
def real_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished real session (do not mutate; copy it or make your own)."""
    return run_toy_session(tmp_path_factory.mktemp("real") / "repo")


@pytest.fixture(scope="session")
def multi_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real session over three files with scripted proposals (see MULTI_SCRIPT)."""
    import json

    base = tmp_path_factory.mktemp("multi")
    script = base / "script.json"
    script.write_text(json.dumps(MULTI_SCRIPT))
    repo = base / "repo"
    init_repo(repo, {"a.py": "A = 0.0\n", "b.py": "B = 0.0\n", "c.py": "C = 1.0\n",
                     "score.py": MULTI_SCORE, "program.md": "Make score small.\n",
                     "autoresearch.toml": MULTI_CONFIG.replace("SCRIPT", str(script))})
    proc = autoresearch(repo, "run", "--iterations", str(len(MULTI_SCRIPT) + 1), "--tag", "m")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return repo


def run_noisy_session(repo: Path, script: list[dict[str, object]], tag: str = "n") -> Path:
    """A real session over the noisy target, proposals played back from `script`.

    Call it again on the same repository with a longer script to resume the session with more.
    """
    import json

    if not (repo / ".git").exists():
        init_repo(repo, {"target.py": "X = 13.0\n", "score.py": NOISY_SCORE,
                         "autoresearch.toml": NOISY_CONFIG, "program.md": "Make score small.\n",
                         ".gitignore": ".autoresearch/\nscript.json\nscript.assigned.json\n"})
    (repo / "script.json").write_text(json.dumps(script))
    proc = autoresearch(repo, "run", "--iterations", str(len(script) + 1), "--tag", tag)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return repo


@pytest.fixture(scope="session")
def noisy_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished real session with noisy repeats and confirmation runs (do not mutate)."""
    return run_noisy_session(tmp_path_factory.mktemp("noisy") / "repo", NOISY_SCRIPT)


@pytest.fixture(scope="session")
def crowded_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished real session with a far outlier and crowded kept labels (do not mutate)."""
    return run_noisy_session(tmp_path_factory.mktemp("crowded") / "repo", CROWDED_SCRIPT)


@pytest.fixture(scope="session")
def demo_ro(tmp_path_factory: pytest.TempPathFactory) -> BuiltSession:
    """A synthetic session with every status (read-only use)."""
    return build_session(tmp_path_factory.mktemp("demo") / "repo")


@pytest.fixture(scope="session")
def reviewed_ro(tmp_path_factory: pytest.TempPathFactory) -> Reviewed:
    """A synthetic session whose would-be keeps the real review gate judged (read-only use)."""
    return build_reviewed_session(tmp_path_factory.mktemp("reviewed") / "repo")


@pytest.fixture
def demo(tmp_path: Path) -> BuiltSession:
    """A synthetic session of one's own (may be changed)."""
    return build_session(tmp_path / "repo")


def copy_repo(src: Path, dst: Path) -> Path:
    """A copy that is safe to change (finalize writes branches; it never uses the worktree)."""
    shutil.copytree(src, dst, symlinks=True)
    git(dst, "worktree", "prune")
    return dst


@contextmanager
def serve(repo: Path, tag: str | None = None, token: str | None = None,
          poll_interval_s: float = 0.2) -> Iterator[str]:
    """The dashboard on 127.0.0.1 and a free port, in a thread; yields its base URL."""
    app = create_app(repo, tag, token, poll_interval_s=poll_interval_s)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           access_log=False, timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # seconds, not a moment, on a busy machine
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "dashboard did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        app.state.shutdown.set()
        server.should_exit = True
        thread.join(10)


CHROMIUM = Path("/usr/bin/chromium")  # Debian's; Playwright never downloads one here


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium through Playwright, one per test module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page of `browser`, 1400 x 1000, whose script errors gather in `page.errors`."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    pg.errors = errors
    yield pg
    context.close()
