"""Runs on a Ray cluster (`--executor ray`, [run] executor = "ray"): a real Ray head node on
127.0.0.1, started here and stopped after, and the real CLI as the driver.

The same loop as on this machine: each slot's runs go to an actor with a clone of its own, the
commits travel as bundles and the measurements come back as data. What must hold as it holds
locally: independent wins stack, a stop ends the remote runs, nothing outlives a killed
orchestrator, a lost actor costs a re-run and not the experiment, and a cluster that is not
there is a clear error.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import psutil
import pytest

from autoresearch.config import CONFIG_NAME, load_config
from autoresearch.executor import RunRequest
from autoresearch.ray_executor import STOP_GRACE_S, RayExecutor
from autoresearch.stop_signals import SessionStopped
from tests.conftest import cli_env, edit_config, git, make_repo, run_cli, use_script
from tests.support.processes import alive, free_port
from tests.support.ray_nodes import LOOPBACK, stopped_on_a_node_without_autoresearch

pytestmark = pytest.mark.slow

SCORE = textwrap.dedent(
    """
    import os, time
    import x, y
    pids = os.environ.get("PIDS")
    if pids:  # where the test finds the runs in progress
        with open(os.path.join(pids, str(os.getpid())), "w") as f:
            f.write(str(os.getppid()))
    time.sleep(getattr(x, "SLEEP", 0) + getattr(y, "SLEEP", 0))
    print(f"cwd: {os.getcwd()}")
    print(f"gpu: {os.environ.get('CUDA_VISIBLE_DEVICES')}")
    print(f"score: {(x.X - 7) ** 2 + (y.Y - 3) ** 2}")
    """
)


def config(pids: Path) -> str:
    return textwrap.dedent(
        f"""
        scope = ["x.py", "y.py"]
        protected = ["score.py"]
        [verify]
        command = "{{python}} score.py"
        budget_seconds = 5
        timeout_seconds = 40
        env = {{ PIDS = "{pids}" }}
        [metric]
        name = "score"
        direction = "minimize"
        [decision]
        repeats = 2
        deterministic = true
        headline_pairs = 0  # not what these tests are about, and 2-16 more runs each
        [run]
        executor = "ray"
        """
    )


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A one-node Ray cluster on the loopback interface (its 2 GPUs are Ray's bookkeeping
    only: what Ray hands out is CUDA_VISIBLE_DEVICES); its address."""
    port = free_port()
    temp = Path(tempfile.mkdtemp(prefix="ar-ray-"))  # short: Ray's socket paths must fit
    head = start_head(port, temp)
    try:
        yield f"127.0.0.1:{port}"
        listening = [c.laddr for p in [psutil.Process(head.pid), *psutil.Process(
            head.pid).children(recursive=True)] for c in _listening(p)]
        assert listening and all(a.ip in ("127.0.0.1", "::ffff:127.0.0.1") for a in listening), (
            f"Ray listened beyond the loopback interface: {listening}")
    finally:
        stop_cluster(head)
        shutil.rmtree(temp, ignore_errors=True)


def start_head(port: int, temp: Path, cpus: int = 2,
               extra: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """`ray start --head` on 127.0.0.1:`port` in a process group of its own (stopped by
    `stop_cluster`), once it listens; `extra`: more options (ports of its own, for a second
    head beside another)."""
    ray = Path(sys.executable).with_name("ray")
    head = subprocess.Popen(
        [str(ray), "start", "--head", "--block", f"--port={port}",
         "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}", "--num-gpus=2",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}", *extra],
        env={**os.environ, **LOOPBACK}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    deadline = time.monotonic() + 120
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return head
        except OSError:
            if head.poll() is not None or time.monotonic() > deadline:
                stop_cluster(head)
                raise AssertionError("ray start --head failed, or did not listen in 120 s") from None
            time.sleep(0.5)


def stop_cluster(head: subprocess.Popen[bytes]) -> None:
    """Every process of the head node: asked to stop (--block: `ray start` stops what it
    started), then killed; a head stopped already leaves nothing to do."""
    try:
        tree = [psutil.Process(head.pid), *psutil.Process(head.pid).children(recursive=True)]
    except psutil.Error:
        tree = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGTERM)
    _, alive = psutil.wait_procs(tree, timeout=5)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    head.wait(timeout=30)


def _listening(process: psutil.Process) -> list[psutil._common.pconn]:
    try:
        return [c for c in process.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
    except psutil.Error:
        return []


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    pids = tmp_path / "pids"
    pids.mkdir()
    return make_repo(tmp_path / "repo", {"x.py": "X = 3.0\n", "y.py": "Y = 0.0\n",
                                         "score.py": SCORE, "autoresearch.toml": config(pids)})


def rows(repo: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db", timeout=10) as conn:
        return conn.execute(sql).fetchall()


def start(repo: Path, address: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "autoresearch", "run", "--repo", str(repo), "--tag", "t",
         "--ray-address", address, *args],
        cwd=repo, env=cli_env(LOOPBACK), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, stdin=subprocess.DEVNULL)


def running(pids: Path, at_least: int = 1, timeout: float = 60) -> list[int]:
    """The verify runs that have started (their pid files), once `at_least` have."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [int(p.name) for p in pids.iterdir()]
        if len(found) >= at_least:
            return found
        time.sleep(0.1)
    raise AssertionError(f"fewer than {at_least} runs started in {timeout} s")


def gone(pids: list[int], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not [p for p in pids if alive(p)]:
            return True
        time.sleep(0.2)
    return False


def test_a_session_runs_on_the_cluster_and_independent_wins_stack(cluster: str,
                                                                  repo: Path) -> None:
    use_script(repo, [
        {"hypothesis": "X to 5", "edits": {"x.py": "X = 5.0\nSLEEP = 1.0\n"}},
        {"hypothesis": "Y to 3", "edits": {"y.py": "Y = 3.0\nSLEEP = 2.5\n"}},
    ])
    result = run_cli(repo, "run", "--tag", "t", "-n", "3", "-w", "2", "--ray-address", cluster,
                     env=LOOPBACK)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"runs on the Ray cluster at {cluster} (1 node, 2 CPUs, 2 GPUs)" in " ".join(
        result.stdout.split())
    assert rows(repo, "SELECT seq, status FROM experiments ORDER BY seq") == [
        (1, "keep"), (2, "keep"), (3, "keep")]
    # Every run happened in an actor's clone, none in the session's own worktrees, and the
    # logs came back to where the session keeps them.
    logs = [Path(str(p)) for (p,) in rows(repo, "SELECT log_path FROM runs")]
    assert len(logs) >= 5  # the baseline's 2, each candidate's, the replayed one's
    places = {line for log in logs for line in log.read_text().splitlines()
              if line.startswith("cwd: ")}
    assert places and all("/autoresearch-ray-" in p and p.endswith("/clone") for p in places)
    assert len(places) >= 2  # the two slots' actors
    # The actors removed their clones when the session ended.
    assert not [p for p in places if Path(p.removeprefix("cwd: ")).exists()]
    # Both wins are on the session's branch.
    assert git(repo, "show", "autoresearch/t:x.py").startswith("X = 5.0")
    assert git(repo, "show", "autoresearch/t:y.py").startswith("Y = 3.0")


def test_each_slot_runs_on_the_gpu_ray_gives_its_actor(cluster: str, repo: Path) -> None:
    edit_config(repo, 'executor = "ray"', 'executor = "ray"\nray_gpus = 1')
    use_script(repo, [{"hypothesis": f"X to {4 + i}", "edits": {"x.py": f"X = {4 + i}.0\n"}}
                      for i in range(3)])
    result = run_cli(repo, "run", "--tag", "t", "-n", "4", "-w", "2", "--ray-address", cluster,
                     env=LOOPBACK)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "each run reserves 1 CPU and 1 GPU" in " ".join(result.stdout.split())
    # Each actor (its clone) saw one GPU of its own, and the two slots saw different ones.
    seen: dict[str, set[str]] = {}
    for (log,) in rows(repo, "SELECT log_path FROM runs"):
        lines = Path(str(log)).read_text().splitlines()
        place = next(line for line in lines if line.startswith("cwd: "))
        seen.setdefault(place, set()).add(next(line for line in lines if line.startswith("gpu: ")))
    assert len(seen) == 2 and all(len(gpus) == 1 for gpus in seen.values()), seen
    assert set.union(*seen.values()) == {"gpu: 0", "gpu: 1"}


def test_check_makes_its_dry_runs_on_the_cluster(cluster: str, repo: Path) -> None:
    use_script(repo, [])
    # The driver needs no RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER of the user's to find a head on
    # 127.0.0.1: it sets it for a loopback address.
    env = cli_env({"RAY_AUTH_MODE": "disabled"})
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    result = subprocess.run([sys.executable, "-m", "autoresearch", "check", "-w", "2",
                             "--ray-address", cluster, "--repo", str(repo)], cwd=repo, env=env,
                            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"runs on the Ray cluster at {cluster}" in " ".join(result.stdout.split())
    assert "verify command ran in" in result.stdout
    assert "2 runs at once all passed" in result.stdout


def test_what_the_cluster_cannot_hold_is_said_before_any_run(cluster: str, repo: Path) -> None:
    use_script(repo, [])
    edit_config(repo, 'executor = "ray"', 'executor = "ray"\nray_gpus = 1')
    git(repo, "commit", "-qam", "one GPU a run")
    # Two GPUs hold two runs at once: a third worker would wait, and check says so.
    result = run_cli(repo, "check", "-w", "3", "--ray-address", cluster, env=LOOPBACK,
                     timeout=120)  # a third actor that can never be placed would hang it
    said = " ".join(result.stdout.split())
    assert "the Ray cluster holds 2 runs at once, fewer than the 3 workers" in said, said
    assert "--workers 2" in said
    # A run that no node can hold would wait forever: refused, naming the settings.
    edit_config(repo, "ray_gpus = 1", "ray_gpus = 3")
    git(repo, "commit", "-qam", "three GPUs a run")
    result = run_cli(repo, "run", "-n", "2", "--ray-address", cluster, env=LOOPBACK)
    assert result.returncode == 3, result.stdout + result.stderr
    said = " ".join(result.stderr.split())
    assert "no node of the Ray cluster" in said and "1 CPUs and 3 GPUs each" in said, said
    assert "[run] ray_cpus and ray_gpus" in said and "Traceback" not in said


def test_a_stop_ends_the_remote_runs_and_a_kill_9_leaves_nothing_behind(cluster: str,
                                                                        repo: Path) -> None:
    pids = repo.parent / "pids"
    use_script(repo, [{"hypothesis": f"slow {i}",
                       "edits": {"x.py": f"X = {4 + i}.0\nSLEEP = 60\n"}} for i in range(6)])
    # SIGTERM (as Ctrl-C): the session ends within seconds, its run recorded interrupted.
    proc = start(repo, cluster, "-n", "4")
    first = running(pids, at_least=3)  # the baseline's two runs, then the slow candidate
    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    out, _ = proc.communicate(timeout=30)
    # The stop reached the run itself: not the fallback that kills a silent actor.
    assert time.monotonic() - sent < STOP_GRACE_S - 1, out
    assert proc.returncode != 0 or "interrupted" in out, out
    assert gone(first), "a remote run outlived the stop"
    assert ("interrupted",) in rows(repo, "SELECT status FROM experiments")
    # kill -9: the driver's Ray job ends, its actors die, and their runs with them.
    for p in pids.iterdir():
        p.unlink()
    proc = start(repo, cluster, "-n", "4")
    second = running(pids, at_least=1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert gone(second), "a remote run outlived the orchestrator's kill -9"
    # Resumed, with nothing lost or run twice.
    (repo.parent / "script.json").write_text(json.dumps(
        [{"hypothesis": "X to 7", "edits": {"x.py": "X = 7.0\n"}}]))
    result = run_cli(repo, "run", "--tag", "t", "-n", "4", "--ray-address", cluster,
                     env=LOOPBACK)
    assert result.returncode == 0, result.stdout + result.stderr
    exps = rows(repo, "SELECT seq, status FROM experiments ORDER BY seq")
    assert [e[0] for e in exps] == list(range(1, len(exps) + 1))
    assert not [e for e in exps if e[1] in ("proposed", "running")]
    (dupes,) = rows(repo, "SELECT COUNT(*) - COUNT(DISTINCT log_path) FROM runs")[0]
    assert dupes == 0


def test_a_lost_actor_costs_a_run_not_the_experiment(cluster: str, repo: Path) -> None:
    pids = repo.parent / "pids"
    use_script(repo, [{"hypothesis": "X to 6", "edits": {"x.py": "X = 6.0\nSLEEP = 4\n"}}])
    proc = start(repo, cluster, "-n", "2")
    # The baseline's two runs are over in a moment; the candidate's sleeps for 4 s.
    (run,) = [p for p in running(pids, at_least=3) if psutil.pid_exists(p)]
    # The run's parent: the actor's process. The run creates its pid file, then writes it: an
    # empty file is not written yet.
    deadline = time.monotonic() + 30
    while not (parent := (pids / str(run)).read_text().strip()):
        assert time.monotonic() < deadline, f"run {run} never wrote its parent's pid"
        time.sleep(0.05)
    actor = int(parent)
    home = Path(psutil.Process(run).cwd()).parent  # the actor's clone's directory
    assert "NodeRunner" in " ".join(psutil.Process(actor).cmdline()) or psutil.Process(
        actor).name().startswith("ray::")
    os.kill(actor, signal.SIGKILL)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert gone([run]), "the lost actor's run outlived it"
    assert not home.exists()  # the killed actor could not remove it: the next one swept it
    assert rows(repo, "SELECT seq, status FROM experiments ORDER BY seq") == [
        (1, "keep"), (2, "keep")]
    # The cut run was made again on a new actor: each run recorded once, all measured.
    statuses = rows(repo, "SELECT status FROM runs")
    assert statuses and all(s == ("ok",) for s in statuses)


def test_an_actor_that_cannot_start_on_its_node_stops_the_session_with_why(
        cluster: str, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A node without autoresearch (or a module the actor needs) fails the actor's creation:
    # that repeats on every new actor, so it is said at once instead of retried.
    head = git(repo, "rev-parse", "HEAD")
    stopped = stopped_on_a_node_without_autoresearch(
        load_config(repo / CONFIG_NAME).with_run(ray_address=cluster),
        RunRequest(commit=head, worktree=repo, role="candidate",
                   log_path=repo.parent / "run.log", run_id="ar-test-1"), monkeypatch)
    assert stopped.exit_code == 3
    reason = stopped.reason
    assert "could not start on its node: ModuleNotFoundError: No module named 'autoresearch'" in (
        reason), reason
    assert "pip install 'autoresearch[ray]'" in reason
    assert "run the same command to resume" in " ".join(reason.split())  # a session's run


def test_each_run_has_the_timeout_the_session_has_when_it_starts(
        cluster: str, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The session re-sizes its timeout from the baseline's runs (timeouts.py) after the actors
    # are made with a copy of the config: each run must carry the session's timeout of now.
    for name, value in LOOPBACK.items():
        monkeypatch.setenv(name, value)
    config = load_config(repo / CONFIG_NAME).with_run(ray_address=cluster)
    executor = RayExecutor(config)
    try:
        head = git(repo, "rev-parse", "HEAD")
        first = executor.run(RunRequest(commit=head, worktree=repo, role="check",
                                        log_path=repo.parent / "first.log", run_id="ar-test-1"))
        assert first.status == "ok", first.reason  # the actor exists, with the 40-s timeout
        (repo / "x.py").write_text("X = 3.0\nSLEEP = 8\n")
        git(repo, "commit", "-qam", "slow")
        slow = git(repo, "rev-parse", "HEAD")
        verify = executor.config.verify
        executor.config = executor.config.model_copy(
            update={"verify": verify.model_copy(update={"timeout_seconds": 2.0})})
        second = executor.run(RunRequest(commit=slow, worktree=repo, role="candidate",
                                         log_path=repo.parent / "second.log", run_id="ar-test-2"))
    finally:
        executor.close()
    assert second.status == "timeout" and "2 s timeout" in second.reason, second.reason
    # Killed at 2 s, not run for its 8: the run's own time, as measured on the node. The wall
    # time of the call adds the actor's git work (bundle, fetch, checkout, checks), which took
    # seconds more on a loaded machine.
    assert 2 <= second.duration_s < 7, second.duration_s


def test_check_on_the_cluster_links_the_share_into_the_nodes_clone(cluster: str,
                                                                   tmp_path: Path) -> None:
    # Data git ignores is linked into every worktree from the checkout ([verify] share); on a
    # cluster, into the actor's clone, by check's dry run as by the session's runs.
    repo = make_repo(tmp_path / "shared", {
        "x.py": "X = 3.0\n", ".gitignore": "data/\n",
        "score.py": "import x\nprint('score:', x.X + float(open('data/offset.txt').read()))\n",
        "autoresearch.toml": textwrap.dedent("""
            scope = ["x.py"]
            [verify]
            command = "{python} score.py"
            budget_seconds = 5
            share = ["data/"]
            [metric]
            name = "score"
            direction = "minimize"
            [run]
            executor = "ray"
            [knobs]
            "x.py:X" = "float(0, 10)"
            """)})
    (repo / "data").mkdir()
    (repo / "data" / "offset.txt").write_text("0.5\n")
    result = run_cli(repo, "check", "--ray-address", cluster, env=LOOPBACK, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    said = " ".join(result.stdout.split())
    assert f"runs on the Ray cluster at {cluster}" in said
    assert "1 shared file(s) linked" in said and "verify command ran in" in said
    assert "3.5" in said  # the score, read with the node's link to the data


def test_what_has_no_effect_on_a_cluster_is_said(cluster: str, repo: Path) -> None:
    use_script(repo, [])
    edit_config(repo, 'executor = "ray"', 'executor = "ray"\naffinity = true\ngpus = ["0"]')
    git(repo, "commit", "-qam", "settings for this machine")
    result = run_cli(repo, "check", "--ray-address", cluster, env=LOOPBACK, timeout=180)
    said = " ".join(result.stdout.split())
    assert "[run] affinity = true and gpus = ['0'] apply to runs on this machine only" in said, said


def test_a_cluster_that_is_not_there_is_a_clear_error(repo: Path) -> None:
    closed = free_port()
    result = run_cli(repo, "run", "-n", "2", "--ray-address", f"127.0.0.1:{closed}",
                     env=LOOPBACK)
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"no Ray cluster answers at '127.0.0.1:{closed}'" in result.stderr
    assert "ray start --head" in result.stderr and "Traceback" not in result.stderr
    assert not (repo / ".autoresearch" / "ledger.db").exists() or not rows(
        repo, "SELECT * FROM sessions")
    checked = run_cli(repo, "check", "--ray-address", f"127.0.0.1:{closed}", env=LOOPBACK)
    assert checked.returncode != 0 and "no Ray cluster answers" in checked.stdout + checked.stderr
    # A cluster of the session's own would outlive a kill -9 of it: never started, whether
    # named or reached through Ray's own RAY_ADDRESS for the default "auto".
    local = run_cli(repo, "run", "-n", "2", "--ray-address", "local", env=LOOPBACK)
    assert local.returncode == 3 and "outlive a killed session" in local.stderr, local.stderr
    via = run_cli(repo, "run", "-n", "2", "--executor", "ray",
                  env={**LOOPBACK, "RAY_ADDRESS": "local"})
    said = " ".join(via.stderr.split())
    assert via.returncode == 3 and "outlive a killed session" in said, said
    assert "RAY_ADDRESS in the environment" in said and "unset RAY_ADDRESS" in said


def test_a_remote_failure_is_said_with_its_own_error_and_node() -> None:
    from autoresearch.ray_executor import _last_line, _node_of

    # What str() of Ray's RayTaskError looks like: a coloured header, then the traceback.
    raised = RuntimeError(
        "\x1b[36mray::NodeRunner.run()\x1b[39m (pid=4242, ip=10.0.0.7, actor_id=ab12)\n"
        "  File \"/x/gitops/runner.py\", line 40, in run_git\n"
        "FileNotFoundError: [Errno 2] No such file or directory: 'git'\n")
    assert _last_line(raised) == "FileNotFoundError: [Errno 2] No such file or directory: 'git'"
    assert _node_of(raised) == "10.0.0.7"


def test_a_lost_node_that_leaves_no_room_stops_the_session_instead_of_waiting(
        repo: Path) -> None:
    # An actor made again for a run that no live node can hold would wait for ever.
    executor = object.__new__(RayExecutor)  # no cluster: the nodes as `ray.nodes()` says
    executor.config = load_config(repo / CONFIG_NAME).with_run(ray_gpus=1)
    executor.workers = 2
    executor._lock = threading.Lock()

    class Nodes:
        def __init__(self, nodes: list[dict[str, object]]) -> None:
            self._nodes = nodes

        def nodes(self) -> list[dict[str, object]]:
            return self._nodes

    gpu = {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}}
    cpu = {"Alive": True, "Resources": {"CPU": 8.0}}
    executor.ray = Nodes([gpu, {**gpu, "Alive": False}, cpu])
    executor._recount(RuntimeError("node died"), "candidate")
    assert executor._most == 1  # one GPU node left: one actor at once
    executor.ray = Nodes([{**gpu, "Alive": False}, cpu])
    with pytest.raises(SessionStopped) as stopped:
        executor._recount(RuntimeError("node died"), "candidate")
    assert stopped.value.exit_code == 3
    assert "no live node has room for a run now (1 CPUs and 1 GPUs each" in stopped.value.reason
    assert "run the same command to resume" in stopped.value.reason


def test_an_executor_no_package_provides_is_a_config_error(repo: Path) -> None:
    use_script(repo, [])
    result = run_cli(repo, "run", "-n", "2", "--executor", "slurm")
    assert result.returncode == 2, result.stdout + result.stderr
    said = " ".join(result.stderr.split())
    assert "no executor named 'slurm' is installed" in said
    assert "use one of local, ray" in said and "'autoresearch.executors' entry points" in said
