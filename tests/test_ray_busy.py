"""A Ray cluster another job holds (another session's actors): `check` and `run` say that the runs
wait for room, what each asks for and what is free, instead of waiting in silence."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from autoresearch import ray_executor
from autoresearch.config import CONFIG_NAME, load_config
from autoresearch.executor import RunRequest
from tests.conftest import cli_env, git, use_script
from tests.test_ray_executor import LOOPBACK, cluster, repo  # noqa: F401 - the fixtures

pytestmark = pytest.mark.slow

HOLDER = textwrap.dedent(
    """
    import sys, time, ray
    ray.init(address=sys.argv[1], log_to_driver=False)

    @ray.remote(num_cpus=2)
    class Holder:
        def ready(self):
            return True

    holder = Holder.remote()
    ray.get(holder.ready.remote())
    print("held", flush=True)
    time.sleep(600)
    """
)


def test_a_run_that_waits_for_room_another_job_holds_says_so(cluster: str,  # noqa: F811
                                                             repo: Path) -> None:  # noqa: F811
    use_script(repo, [])
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, cluster], env=cli_env(LOOPBACK),
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        check = subprocess.Popen(
            [sys.executable, "-m", "autoresearch", "check", "--ray-address", cluster, "--repo",
             str(repo)], cwd=repo, env=cli_env(LOOPBACK), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
        seen: list[str] = []
        deadline = time.monotonic() + 60
        assert check.stdout is not None
        while time.monotonic() < deadline and "running `" not in "".join(seen):
            line = check.stdout.readline()
            if not line:
                break
            seen.append(line)
        check.send_signal(signal.SIGINT)  # it would wait for as long as the holder lives
        out, _ = check.communicate(timeout=60)
        said = " ".join(("".join(seen) + out).split())
        assert "other jobs hold the Ray cluster's resources now: 0 CPUs are free" in said, said
        assert "no room for a run (each asks for 1 CPU)" in said, said
    finally:
        holder.kill()
        holder.wait(timeout=30)


def all_free(executor: ray_executor.RayExecutor) -> None:
    """Wait until the cluster's CPUs are all free: a holder another test killed keeps its room
    until Ray has seen its driver die (seconds, on a busy machine)."""
    deadline = time.monotonic() + 60
    while executor.ray.available_resources().get("CPU", 0) < 2:
        assert time.monotonic() < deadline, executor.ray.available_resources()
        time.sleep(0.2)


def test_a_run_whose_new_actor_waits_for_room_taken_since_the_start_says_so(
        cluster: str, repo: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    # The room is free when the session starts (so its start says nothing), and another job
    # takes it before the first run's actor is placed: the run waits, and says so.
    for name, value in LOOPBACK.items():  # before Ray is imported: it reads them then
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(ray_executor, "ROOM_NOTICE_S", 1.0)
    config = load_config(repo / CONFIG_NAME).with_run(ray_address=cluster)
    stop = threading.Event()
    probe = ray_executor.RayExecutor(config)
    try:
        all_free(probe)  # then a session starts with nothing held
    finally:
        probe.close()
    executor = ray_executor.RayExecutor(config, stop=stop)
    holder = None
    try:
        assert executor.warning is None
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, cluster], env=cli_env(LOOPBACK),
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        head = git(repo, "rev-parse", "HEAD")
        result: list[object] = []
        runner = threading.Thread(target=lambda: result.append(executor.run(RunRequest(
            commit=head, worktree=repo, role="baseline", log_path=repo.parent / "run.log",
            run_id="ar-test-1"))))
        with caplog.at_level(logging.WARNING, logger=ray_executor.__name__):
            runner.start()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and "waited" not in caplog.text:
                time.sleep(0.2)
            said = " ".join(caplog.text.split())
            stop.set()  # it would wait for as long as the holder lives
            runner.join(timeout=60)
    finally:
        stop.set()
        executor.close()
        if holder is not None:
            holder.kill()
            holder.wait(timeout=30)
    assert f"the baseline run of {head[:10]} has waited 1 s for room on the Ray cluster" in said
    assert "(0 CPUs are free; each run asks for 1 CPU)" in said, said
    assert not runner.is_alive() and [getattr(m, "status", None) for m in result] == [
        "interrupted"], result


def test_a_run_whose_actor_starts_slowly_with_room_free_says_nothing(
        cluster: str, repo: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    # A run longer than the notice's wait, on an actor placed at once: no word of room.
    for name, value in LOOPBACK.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(ray_executor, "ROOM_NOTICE_S", 0.5)
    (repo / "x.py").write_text("X = 3.0\nSLEEP = 3\n")
    git(repo, "commit", "-qam", "a run of 3 s")
    config = load_config(repo / CONFIG_NAME).with_run(ray_address=cluster)
    executor = ray_executor.RayExecutor(config)
    try:
        all_free(executor)
        with caplog.at_level(logging.WARNING, logger=ray_executor.__name__):
            measured = executor.run(RunRequest(
                commit=git(repo, "rev-parse", "HEAD"), worktree=repo, role="baseline",
                log_path=repo.parent / "run.log", run_id="ar-test-2"))
    finally:
        executor.close()
    assert measured.status == "ok", measured.reason
    assert "room" not in caplog.text, caplog.text
