"""A Ray cluster another job holds (another session's actors): `check` and `run` say that the runs
wait for room, what each asks for and what is free, instead of waiting in silence."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import cli_env, use_script
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
