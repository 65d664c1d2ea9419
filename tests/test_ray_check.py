"""`check` (and a session's start) on a Ray cluster: which cluster it joined, a `ray_address =
"auto"` that cannot tell two clusters on this machine apart, what a failed import on a node
means, and what a check that the cluster refuses says and exits with.

A real head node on 127.0.0.1 (the fixture of test_ray_executor.py), and a second one where a
test needs two clusters on the machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoresearch.config import CONFIG_NAME, load_config
from autoresearch.executor import RunRequest
from autoresearch.ray_executor import NodeRunner, RayExecutor
from autoresearch.slots import Resources
from autoresearch.stop_signals import SessionStopped
from autoresearch.verify_targets import failure_hints
from tests.conftest import cli_env, edit_config, git, run_cli, use_script
from tests.support.processes import free_port
from tests.test_ray_executor import (  # noqa: F401 - the fixtures
    LOOPBACK,
    cluster,
    repo,
    start_head,
    stop_cluster,
)

pytestmark = pytest.mark.slow


def flat(text: str) -> str:
    return " ".join(text.split())


def without_ray_address() -> dict[str, str]:
    """The CLI's environment with no RAY_ADDRESS: ray_address "auto" is then Ray's own search."""
    return {**LOOPBACK, "RAY_ADDRESS": ""}


@pytest.fixture
def second_cluster() -> Iterator[str]:
    """Another Ray cluster on this machine (another user's, say), with ports of its own."""
    port = free_port()
    temp = Path(tempfile.mkdtemp(prefix="ar-ray2-"))
    head = start_head(port, temp, cpus=1, extra=(
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}", f"--metrics-export-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}"))
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop_cluster(head)
        shutil.rmtree(temp, ignore_errors=True)


def test_check_names_the_cluster_auto_joined(cluster: str, repo: Path) -> None:  # noqa: F811
    use_script(repo, [])
    # ray_address is "auto" (the default): Ray takes RAY_ADDRESS when it is set.
    result = run_cli(repo, "check", env={**LOOPBACK, "RAY_ADDRESS": cluster}, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (f'runs on the Ray cluster at {cluster}, which ray_address "auto" found in '
            f"RAY_ADDRESS (1 node, 2 CPUs, 2 GPUs)") in flat(result.stdout)


def clusters_a_new_process_finds() -> set[str] | None:
    """What `ray_address = "auto"` sees from a process started now (Ray caches what it found
    for the life of a process, so this one's own answer would not change)."""
    found = subprocess.run(
        [sys.executable, "-c", "import json; from autoresearch.ray_cluster import "
         "local_clusters as f; c = f(); print(json.dumps(None if c is None else sorted(c)))"],
        capture_output=True, text=True, timeout=120, env=cli_env(without_ray_address()))
    listed = json.loads(found.stdout)
    return None if listed is None else set(listed)


def test_auto_with_two_clusters_on_this_machine_is_refused_naming_both(
        cluster: str, second_cluster: str, repo: Path) -> None:  # noqa: F811
    use_script(repo, [])
    # Exactly these two: a new head's raylet shows a little after its GCS listens, and the
    # module before's stopped cluster a while after it stopped (one run listed two of those).
    deadline = time.monotonic() + 90
    while (found := clusters_a_new_process_finds()) != {cluster, second_cluster}:
        assert time.monotonic() < deadline, f"clusters on this machine: {found}"
        time.sleep(1)
    for command in ("check", "run"):
        result = run_cli(repo, command, env=without_ray_address(), timeout=120)
        said = flat(result.stderr)
        assert result.returncode == 3, result.stdout + result.stderr
        assert 'ray_address "auto" does not say which cluster to join' in said, said
        assert cluster in said and second_cluster in said, said
        assert "--ray-address HOST:PORT" in said and "Traceback" not in said, said
    assert not git(repo, "branch", "--list", "autoresearch/*")  # the refused run started nothing
    # Named, the same cluster is joined with the other one still there.
    result = run_cli(repo, "check", "--ray-address", cluster, env=without_ray_address(),
                     timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"runs on the Ray cluster at {cluster} (1 node" in flat(result.stdout)


def test_a_failed_import_on_a_node_is_said_to_be_the_nodes_environment(
        cluster: str, repo: Path, tmp_path: Path) -> None:  # noqa: F811
    # A module found here through PYTHONPATH, exported in the shell: it does not reach the node.
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "helper_only_here.py").write_text("VALUE = 1\n")
    (repo / "score.py").write_text("import helper_only_here\nprint('score: 1')\n")
    git(repo, "commit", "-qam", "score needs a module from PYTHONPATH")
    use_script(repo, [])
    result = run_cli(repo, "check", "--ray-address", cluster,
                     env={**LOOPBACK, "PYTHONPATH": f"{lib}{os.pathsep}{cli_env()['PYTHONPATH']}"},
                     timeout=300)
    said = flat(result.stdout)
    assert result.returncode == 1, result.stdout + result.stderr
    named = re.search(r"failed to import 'helper_only_here' on the Ray node \(\{python\} is "
                      r"(\S+) there\)", said)
    assert named and Path(named[1]).is_file(), said  # the node's interpreter, named
    assert "the interpreter running autoresearch" not in said, said
    assert "[verify] env travels to the nodes" in said and "-m pip install" in said, said


def test_the_hint_for_a_failed_import_on_a_node_names_its_interpreter(tmp_path: Path) -> None:
    output = "Traceback ...\nModuleNotFoundError: No module named 'numpy'\n"
    (hint,) = failure_hints(tmp_path, "{python} train.py", output,
                            node_python="/opt/node-venv/bin/python")
    assert "failed to import 'numpy' on the Ray node ({python} is /opt/node-venv/bin/python " \
           "there)" in hint
    assert "PYTHONPATH" in hint and "[verify] env" in hint
    assert "/opt/node-venv/bin/python -m pip install" in hint
    assert "the interpreter running autoresearch" not in hint
    # A command that names its own interpreter: the node's is not guessed at.
    (hint,) = failure_hints(tmp_path, "python3 train.py", output, node_python="/opt/x/python")
    assert "/opt/x/python" not in hint and "[verify] env" in hint


def test_a_check_whose_actor_cannot_start_exits_3_and_says_to_check_again(
        cluster: str, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    for name, value in LOOPBACK.items():  # before Ray is imported: it reads them then
        monkeypatch.setenv(name, value)
    import ray

    class Uninstalled(NodeRunner):
        def __init__(self, *_: object) -> None:
            raise ModuleNotFoundError("No module named 'autoresearch'")

    config = load_config(repo / CONFIG_NAME).with_run(ray_address=cluster)
    executor = RayExecutor(config)
    try:
        executor._actor_class = ray.remote(Uninstalled)  # the seam: what the node can start
        head = git(repo, "rev-parse", "HEAD")
        with pytest.raises(SessionStopped) as stopped:
            executor.run(RunRequest(commit=head, worktree=repo, role="check",
                                    log_path=repo.parent / "check.log", run_id="ar-check-x",
                                    seed=0, resources=Resources()))
    finally:
        executor.close()
    assert stopped.value.exit_code == 3
    said = flat(stopped.value.reason)
    assert "could not start on its node" in said and "run `autoresearch check` again" in said
    assert "resume" not in said, said


def test_a_check_the_cluster_has_no_room_for_exits_3_without_a_resume(
        cluster: str, repo: Path) -> None:  # noqa: F811
    use_script(repo, [])
    edit_config(repo, 'executor = "ray"', 'executor = "ray"\nray_gpus = 3')
    git(repo, "commit", "-qam", "three GPUs a run")
    result = run_cli(repo, "check", "--ray-address", cluster, env=LOOPBACK, timeout=120)
    said = flat(result.stdout + result.stderr)
    assert result.returncode == 3, said
    assert "no node of the Ray cluster" in said and "resume" not in said, said

