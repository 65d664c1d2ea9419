"""`check` (and a session's start) on a Ray cluster: which cluster it joined, a `ray_address =
"auto"` that cannot tell two clusters on this machine apart, what a failed import on a node
means, and what a check that the cluster refuses says and exits with.

A real head node on 127.0.0.1 (the fixture of test_ray_executor.py), and a second one where a
test needs two clusters on the machine; where a test needs clusters whose heads answer or not,
processes that look like their raylets to Ray's search, beside sockets this test opens.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoresearch.config import CONFIG_NAME, load_config
from autoresearch.executor import RunRequest
from autoresearch.ray_cluster import answering
from autoresearch.slots import Resources
from autoresearch.verify_targets import failure_hints
from tests.conftest import cli_env, edit_config, git, run_cli, use_script
from tests.support.processes import free_port
from tests.support.ray_nodes import stopped_on_a_node_without_autoresearch
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
    # Both found (a new head's raylet shows a little after its GCS listens), whatever else
    # runs on the machine (a cluster another test stopped can take a while to go under load):
    # the refusal names every one it found.
    deadline = time.monotonic() + 90
    while not {cluster, second_cluster} <= (found := clusters_a_new_process_finds() or set()):
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


@contextlib.contextmanager
def listening(count: int, backlog: int = 64) -> Iterator[list[str]]:
    """`count` TCP listeners on 127.0.0.1 (a head's GCS, as a connect sees it); their addresses."""
    with contextlib.ExitStack() as stack:
        addresses = []
        for _ in range(count):
            server = stack.enter_context(socket.socket())
            server.bind(("127.0.0.1", 0))
            server.listen(backlog)
            addresses.append(f"127.0.0.1:{server.getsockname()[1]}")
        yield addresses


@contextlib.contextmanager
def silent(count: int) -> Iterator[list[str]]:
    """`count` listeners that never answer a connect: each one's queue is full (one connection
    never accepted, with a backlog of 0), so the kernel drops what comes next."""
    with contextlib.ExitStack() as stack, listening(count, backlog=0) as addresses:
        for address in addresses:
            host, port = address.split(":")
            stack.enter_context(socket.create_connection((host, int(port)), timeout=5))
        yield addresses


@contextlib.contextmanager
def raylets_for(addresses: list[str]) -> Iterator[None]:
    """A process for each address whose command line is a raylet's of the cluster there: what
    Ray's "auto" finds clusters by (a stopped cluster's raylet stays a while after its GCS)."""
    raylets = [subprocess.Popen(["raylet", "-c", "import time; time.sleep(300)",
                                 f"--gcs-address={address}"], executable=sys.executable)
               for address in addresses]
    try:
        yield
    finally:
        for raylet in raylets:
            raylet.kill()
            raylet.wait(timeout=30)


def test_only_addresses_whose_head_answers_count_as_clusters() -> None:
    stale = f"127.0.0.1:{free_port()}"  # nothing listens: refused at once
    with listening(2) as heads, silent(20) as hung:
        started = time.monotonic()
        found = answering({*heads, stale, *hung})
        took = time.monotonic() - started
    assert found == set(heads)
    # Each hung one costs the whole 0.5 s: one after another, 20 would take 10 s.
    assert took < 4, f"{took:.1f} s to try 23 addresses"
    assert answering(set()) == set()
    assert answering({"auto-found-somehow"}) == {"auto-found-somehow"}  # cannot tell: counted


def test_auto_counts_only_the_clusters_whose_head_answers(repo: Path) -> None:  # noqa: F811
    use_script(repo, [])
    stale = f"127.0.0.1:{free_port()}"  # a stopped cluster's raylet, still listed
    with listening(2) as heads, raylets_for([*heads, stale]):
        found = clusters_a_new_process_finds()
        assert found is not None and set(heads) <= found and stale not in found, found
        result = run_cli(repo, "check", env=without_ray_address(), timeout=120)
    said = flat(result.stderr)
    assert result.returncode == 3, result.stdout + result.stderr
    assert 'ray_address "auto" does not say which cluster to join' in said, said
    assert all(head in said for head in heads) and stale not in said, said


JOIN_AUTO = """
import sys
from autoresearch import ray_cluster
# What the machine-wide search found (tested above): this module's cluster alone. Other clusters
# on the machine (another worker's test, a user's) would make "auto" ambiguous and refused.
ray_cluster.local_clusters = lambda: {sys.argv[1]}
ray, _ = ray_cluster.connect("auto", timeout_s=30)
print(ray.get_runtime_context().gcs_address)
ray.shutdown()
"""


def test_auto_joins_the_one_cluster_whose_head_answers_beside_a_stopped_one(
        cluster: str, tmp_path: Path) -> None:  # noqa: F811
    # Ray's own "auto" joins the cluster `ray start` last recorded (ray_current_cluster under
    # its temp dir) whenever that file is there: here a stopped cluster's, so it would wait
    # there. The one whose head answers is joined by its address instead.
    stale = f"127.0.0.1:{free_port()}"
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text(stale + "\n")
    joined = subprocess.run(
        [sys.executable, "-c", JOIN_AUTO, cluster], capture_output=True, text=True,
        timeout=300, env=cli_env({**without_ray_address(), "RAY_TMPDIR": str(tmp_path)}))
    assert joined.returncode == 0, joined.stdout + joined.stderr
    assert joined.stdout.strip().splitlines()[-1] == cluster, joined.stdout + joined.stderr


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
    head = git(repo, "rev-parse", "HEAD")
    stopped = stopped_on_a_node_without_autoresearch(
        load_config(repo / CONFIG_NAME).with_run(ray_address=cluster),
        RunRequest(commit=head, worktree=repo, role="check", log_path=repo.parent / "check.log",
                   run_id="ar-check-x", seed=0, resources=Resources()), monkeypatch)
    assert stopped.exit_code == 3
    said = flat(stopped.reason)
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

