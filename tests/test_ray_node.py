"""What a run can do to the node it runs on (ray_node.py), through the real CLI and a real Ray
head on 127.0.0.1 (the fixture of test_ray_executor.py): it must cost that run, as on this
machine, and never the session nor a later candidate's measurement."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from tests.conftest import make_repo, run_cli, use_script
from tests.test_ray_executor import LOOPBACK, cluster, rows  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow

SCORE = textwrap.dedent(
    """
    import os, shutil, sys, time
    import x
    pids = os.environ["PIDS"]
    marker = os.path.join(pids, "daemon")

    def alive(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    if os.path.exists(marker):  # every run after the one that planted it: is it still there?
        with open(os.path.join(pids, "seen"), "a") as f:
            f.write(f"{alive(int(open(marker).read()))}\\n")
    if getattr(x, "PLANT", False):
        # A daemon that carries nothing of the run: environment cleared, session left, forked
        # twice (its parent exits at once, so it is nobody's child but a subreaper's or init's).
        daemon = (f"import os, time\\nopen({marker!r} + '.tmp', 'w').write(str(os.getpid()))\\n"
                  f"os.rename({marker!r} + '.tmp', {marker!r})\\ntime.sleep(120)\\n")
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execve(sys.executable, [sys.executable, "-c", daemon], {})
            os._exit(0)
        while not os.path.exists(marker):
            time.sleep(0.01)
    if getattr(x, "RMGIT", False):  # what git needs, by the relative path a run has
        if os.path.isdir(".git"):
            shutil.rmtree(".git")
        else:
            os.unlink(".git")
    if getattr(x, "RMREPO", False):  # the repository itself, through the worktree's link
        gitdir = open(".git").read().split("gitdir:", 1)[1].strip()
        common = os.path.join(gitdir, open(os.path.join(gitdir, "commondir")).read().strip())
        shutil.rmtree(os.path.normpath(common))
    print(f"score: {(x.X - 7) ** 2}")
    """
)

CONFIG = textwrap.dedent(
    """
    scope = ["x.py"]
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
    repeats = 1
    deterministic = true
    headline_pairs = 0
    [run]
    executor = "ray"
    """
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    pids = tmp_path / "pids"
    pids.mkdir()
    return make_repo(tmp_path / "repo", {"x.py": "X = 3.0\n", "score.py": SCORE,
                                         "autoresearch.toml": CONFIG.format(pids=pids)})


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_daemon_a_run_leaves_on_the_node_dies_after_that_run(cluster: str,  # noqa: F811
                                                                repo: Path) -> None:
    pids = repo.parent / "pids"
    use_script(repo, [
        {"hypothesis": "plant", "edits": {"x.py": "X = 4.0\nPLANT = True\n"}},
        {"hypothesis": "X to 5", "edits": {"x.py": "X = 5.0\n"}},
        {"hypothesis": "X to 6", "edits": {"x.py": "X = 6.0\n"}},
    ])
    result = run_cli(repo, "run", "--tag", "t", "-n", "4", "--ray-address", cluster,
                     env=LOOPBACK)
    daemon = int((pids / "daemon").read_text())
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        # Every run after the one that started it found it dead: it could measure nothing.
        seen = (pids / "seen").read_text().split()
        assert len(seen) >= 2 and set(seen) == {"False"}, seen
        assert not _alive(daemon), "the daemon outlived the session"
    finally:
        if _alive(daemon):  # not ours to leave running, whatever the test found
            import os
            import signal

            os.kill(daemon, signal.SIGKILL)


def test_a_run_that_damages_the_nodes_repository_is_a_crash_and_the_session_goes_on(
        cluster: str, repo: Path) -> None:  # noqa: F811
    use_script(repo, [
        {"hypothesis": "remove .git", "edits": {"x.py": "X = 5.0\nRMGIT = True\n"}},
        {"hypothesis": "remove the repository", "edits": {"x.py": "X = 6.0\nRMREPO = True\n"}},
        {"hypothesis": "X to 6.5", "edits": {"x.py": "X = 6.5\n"}},
    ])
    result = run_cli(repo, "run", "--tag", "t", "-n", "4", "--ray-address", cluster,
                     env=LOOPBACK)
    assert result.returncode == 0, result.stdout + result.stderr
    exps = rows(repo, "SELECT seq, status FROM experiments ORDER BY seq")
    assert exps == [(1, "keep"), (2, "crash"), (3, "crash"), (4, "keep")], exps
    reasons = [str(r) for (r,) in rows(
        repo, "SELECT decision_reason FROM experiments WHERE status = 'crash' ORDER BY seq")]
    assert "git's own files" in reasons[0], reasons  # the link, put back as on this machine
    assert "damaged the node's git repository" in reasons[1], reasons
    # The node's repository was made again: the next candidate was measured there, and kept.
    assert rows(repo, "SELECT status FROM runs ORDER BY id")[-1] == ("ok",)


def test_an_actor_whose_run_stops_the_session_leaves_no_clone_behind(
        cluster: str, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    # A run that ends the session (the shared data changed, a git failure on the node) takes
    # its actor out of the pool: its clone goes first, not only when another actor starts.
    for name, value in LOOPBACK.items():  # before Ray is imported: it reads them then
        monkeypatch.setenv(name, value)
    import ray

    from autoresearch.config import CONFIG_NAME, load_config
    from autoresearch.executor import RunRequest
    from autoresearch.ray_executor import RayExecutor
    from autoresearch.ray_node import STOPPED, NodeRunner
    from autoresearch.stop_signals import SessionStopped
    from tests.conftest import git

    home_file = repo.parent / "home"

    class StopsTheSession(NodeRunner):
        def run(self, request: RunRequest, bundle: bytes | None) -> tuple[str, object, bytes]:
            home_file.write_text(str(self.home))
            return STOPPED, ("the shared data changed", 3), b""

    executor = RayExecutor(load_config(repo / CONFIG_NAME).with_run(ray_address=cluster))
    try:
        executor._actor_class = ray.remote(StopsTheSession)  # the seam: what the node runs
        with pytest.raises(SessionStopped):
            executor.run(RunRequest(commit=git(repo, "rev-parse", "HEAD"), worktree=repo,
                                    role="check", log_path=repo.parent / "run.log",
                                    run_id=f"ar-test-{os.getpid()}-1"))
        home = Path(home_file.read_text())
        assert not home.exists(), "the actor's clone outlived it"
    finally:
        executor.close()
