"""`[run] threads`: every run gets a thread count, shown and pinned for the session."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from autoresearch import resources
from autoresearch.config import RunConfig, parse_config
from autoresearch.errors import ConfigError
from autoresearch.resources import ThreadPlan, plan_threads, run_env, session_threads, thread_env
from autoresearch.slots import slot_threads
from tests.conftest import make_repo, run_cli

# Prints the thread variables the run was given, as a metric each (kv format).
SHOW_THREADS = textwrap.dedent(
    """
    import os
    import target
    print(f"score: {target.X}")
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        print(f"{name.lower()}: {os.environ.get(name, '0')}")
    """
)


def test_thread_env_sets_every_runtime_the_same() -> None:
    env = thread_env(3)
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "3"
    assert set(env) >= {"NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"}
    with pytest.raises(ValueError):
        thread_env(0)


def test_the_users_env_wins() -> None:
    plan = ThreadPlan(2, "[run] threads")
    assert run_env(plan, {})["MKL_NUM_THREADS"] == "2"
    # The user's OMP_NUM_THREADS sets the others too, unless they are given as well.
    env = run_env(plan, {"OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "1", "OTHER": "x"})
    assert env["OMP_NUM_THREADS"] == "4" and env["OPENBLAS_NUM_THREADS"] == "4"
    assert env["MKL_NUM_THREADS"] == "1" and env["OTHER"] == "x"
    assert resources.effective(plan, {"OMP_NUM_THREADS": "4"}).threads == 4


def test_auto_gives_the_free_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(resources, "usable_cores", lambda: 8)
    monkeypatch.setattr(resources, "busy_cores", lambda sample_s=0.3: 0.2)
    assert plan_threads("auto") == ThreadPlan(8, "auto: all 8 cores, idle")
    monkeypatch.setattr(resources, "busy_cores", lambda sample_s=0.3: 2.6)
    assert plan_threads("auto").threads == 5
    monkeypatch.setattr(resources, "busy_cores", lambda sample_s=0.3: 40.0)  # a loaded host
    assert plan_threads("auto").threads == 1
    assert plan_threads(RunConfig(threads=3)) == ThreadPlan(3, "[run] threads", per_run=True)


def test_auto_on_this_machine_is_within_its_cores() -> None:
    plan = plan_threads("auto")
    assert 1 <= plan.threads <= resources.usable_cores()
    assert plan.why.startswith("auto")


def test_auto_is_measured_once_per_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    pin = tmp_path / "session" / "threads.json"
    monkeypatch.setattr(resources, "usable_cores", lambda: 4)
    monkeypatch.setattr(resources, "busy_cores", lambda sample_s=0.3: 1.0)
    first = session_threads(RunConfig(), pin)
    assert first.threads == 3 and json.loads(pin.read_text())["threads"] == 3
    # The machine is idle on resume: the session keeps the count its runs were measured with.
    monkeypatch.setattr(resources, "busy_cores", lambda sample_s=0.3: 0.0)
    again = session_threads(RunConfig(), pin)
    assert again.threads == 3 and "measured when the session started" in again.why
    assert session_threads(RunConfig(threads=2), pin).threads == 2  # an explicit count wins


def test_auto_keeps_the_omp_num_threads_the_session_was_started_with(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Two sessions side by side on 2 cores, each started with OMP_NUM_THREADS=1: the first must
    # not take both cores because the machine was idle when it started.
    monkeypatch.setattr(resources, "usable_cores", lambda: 2)
    monkeypatch.setattr(resources, "busy_cores", lambda sample_s=0.3: 0.0)
    plan = plan_threads("auto", {"OMP_NUM_THREADS": "1"})
    assert plan == ThreadPlan(1, "auto: OMP_NUM_THREADS=1 in the environment", per_run=True)
    assert plan_threads("auto", {"OMP_NUM_THREADS": "many"}).threads == 2  # not a count: ignored
    assert plan_threads(RunConfig(threads=2), {"OMP_NUM_THREADS": "1"}).threads == 2  # [run] wins
    # It is each run's count, as OMP_NUM_THREADS always is: parallel slots do not split it, as
    # they split the free cores "auto" measured.
    two = RunConfig(workers=2)
    assert slot_threads(two, 2, plan_threads("auto", {"OMP_NUM_THREADS": "2"})) == 2
    assert slot_threads(two, 2, plan_threads("auto", {})) == 1


def test_threads_must_be_a_positive_count_or_auto() -> None:
    base = {"scope": ["a.py"], "verify": {"command": "true", "budget_seconds": 10},
            "metric": {"name": "m", "direction": "minimize"}}
    assert parse_config(base).run.threads == "auto"
    for bad in (0, "many"):
        with pytest.raises(ConfigError, match="run.threads"):
            parse_config({**base, "run": {"threads": bad}})


def threads_repo(tmp_path: Path, run_table: str, env: str = "") -> Path:
    config = textwrap.dedent(
        f"""
        scope = ["target.py"]
        protected = ["show.py"]
        [verify]
        command = "{{python}} show.py"
        budget_seconds = 5
        {env}
        [metric]
        name = "score"
        direction = "minimize"
        record = ["omp_num_threads", "mkl_num_threads", "openblas_num_threads"]
        [decision]
        repeats = 1
        deterministic = true  # the score is exact: identical repeats are the truth
        [proposer]
        name = "tune"
        [knobs]
        "target.py:X" = "float(0, 10)"
        {run_table}
        """
    )
    return make_repo(tmp_path / "repo", {"target.py": "X = 3.0\n", "show.py": SHOW_THREADS,
                                         "autoresearch.toml": config})


def recorded(repo: Path, name: str) -> set[float]:
    import sqlite3

    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        rows = conn.execute("SELECT value FROM metrics WHERE name = ?", (name,)).fetchall()
    assert rows, f"no run recorded {name}"
    return {r[0] for r in rows}


def test_every_run_gets_the_configured_threads_and_run_says_so(tmp_path: Path) -> None:
    repo = threads_repo(tmp_path, "[run]\nthreads = 2")
    result = run_cli(repo, "run", "--iterations", "3", "--tag", "t")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "each run gets 2 threads ([run] threads)" in " ".join(result.stdout.split())
    for name in ("omp_num_threads", "mkl_num_threads", "openblas_num_threads"):
        assert recorded(repo, name) == {2.0}
    check = run_cli(repo, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "each run gets 2 threads ([run] threads)" in " ".join(check.stdout.split())


def test_auto_threads_are_pinned_and_verify_env_overrides(tmp_path: Path) -> None:
    repo = threads_repo(tmp_path, "")
    result = run_cli(repo, "run", "--iterations", "2", "--tag", "a")
    assert result.returncode == 0, result.stdout + result.stderr
    pinned = json.loads((repo / ".autoresearch/sessions/a/threads.json").read_text())["threads"]
    assert 1 <= pinned <= (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 64)
    assert recorded(repo, "omp_num_threads") == {float(pinned)}

    override = threads_repo(tmp_path / "b", "", env='env = { OMP_NUM_THREADS = "5" }')
    check = run_cli(override, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "each run gets 5 threads (OMP_NUM_THREADS from [verify] env)" in " ".join(
        check.stdout.split())
    result = run_cli(override, "run", "--iterations", "2", "--tag", "b")
    assert result.returncode == 0, result.stdout + result.stderr
    assert recorded(override, "mkl_num_threads") == {5.0}

    # Started from a shell that sets OMP_NUM_THREADS: "auto" keeps it, for every library.
    shell = threads_repo(tmp_path / "c", "")
    result = run_cli(shell, "run", "--iterations", "2", "--tag", "c",
                     env={"OMP_NUM_THREADS": "3"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "each run gets 3 threads (auto: OMP_NUM_THREADS=3 in the environment)" in " ".join(
        result.stdout.split())
    assert recorded(shell, "openblas_num_threads") == {3.0}
