"""Each slot's share of the machine reaches its runs: CPUs (affinity), a GPU, the seed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from autoresearch.config import RunConfig, load_config
from autoresearch.executor import LocalExecutor, RunRequest
from autoresearch.resources import usable_cores
from autoresearch.slots import Resources, contention, plan_resources
from tests.conftest import edit_config, git, make_repo, run_cli, use_script
from tests.support.processes import free_port

PROBE = ("import json, os, sys; print(json.dumps({'cpus': sorted(os.sched_getaffinity(0)), "
         "'gpu': os.environ.get('CUDA_VISIBLE_DEVICES'), "
         "'seed': os.environ.get('AUTORESEARCH_SEED'), 'argv': sys.argv[1:]})); "
         "print('score: 1')")


def test_gpus_are_shared_out_one_per_slot_only_when_there_are_several(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert [r.gpu for r in plan_resources(RunConfig(workers=3), 3)] == ["2", "5", "2"]
    assert [r.gpu for r in plan_resources(RunConfig(workers=1), 1)] == [None]  # nothing to share
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert [r.gpu for r in plan_resources(RunConfig(workers=2), 2)] == [None, None]
    assert [r.gpu for r in plan_resources(RunConfig(workers=2, gpus=["7"]), 2)] == ["7", "7"]
    assert [r.gpu for r in plan_resources(RunConfig(workers=2, gpus=[]), 2)] == [None, None]


def test_affinity_cuts_the_cpus_into_one_share_per_slot() -> None:
    allowed = sorted(os.sched_getaffinity(0))
    shares = [r.cpus for r in plan_resources(RunConfig(workers=2, affinity=True), 2)]
    size = max(1, len(allowed) // 2)
    assert all(len(s) == size for s in shares)
    if len(allowed) >= 2:
        assert not set(shares[0]) & set(shares[1])  # disjoint when there are enough CPUs
    assert [r.cpus for r in plan_resources(RunConfig(workers=2), 2)] == [(), ()]


def test_a_run_gets_its_slots_cpus_gpu_and_seed(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"probe.py": PROBE + "\n", "autoresearch.toml": (
        'scope = ["probe.py"]\n[verify]\ncommand = "{python} probe.py {seed}"\n'
        'budget_seconds = 5\n[metric]\nname = "score"\ndirection = "minimize"\n')})
    config = load_config(repo / "autoresearch.toml")
    head = git(repo, "rev-parse", "HEAD")
    cpu = sorted(os.sched_getaffinity(0))[-1]
    m = LocalExecutor(config).run(RunRequest(
        commit=head, worktree=repo, role="candidate", log_path=tmp_path / "run.log",
        run_id=f"ar-test-slots-{os.getpid()}", seed=1234, resources=Resources(cpus=(cpu,), gpu="3")))
    assert m.ok, m.reason
    seen = json.loads((tmp_path / "run.log").read_text().splitlines()[0])
    assert seen == {"cpus": [cpu], "gpu": "3", "seed": "1234", "argv": ["1234"]}
    assert m.seed == 1234


def test_more_workers_than_cores_is_warned_about_unless_each_has_a_gpu() -> None:
    cpu_only = plan_resources(RunConfig(workers=3, gpus=[]), 3)
    (warning,) = contention(3, cpu_only, cores=2)
    assert "3 workers share 2 cores" in warning
    assert "--workers 2" in warning
    assert contention(2, cpu_only[:2], cores=2) == []  # one core each: fine
    with_gpus = plan_resources(RunConfig(workers=3, gpus=["0", "1", "2"]), 3)
    assert contention(3, with_gpus, cores=2) == []  # the runs wait on their GPUs, not the CPUs


def test_check_and_run_say_when_the_workers_crowd_the_cores(toy_repo: Path) -> None:
    workers = usable_cores() + 1
    edit_config(toy_repo, "[verify]\n", f"[run]\nworkers = {workers}\ngpus = []\n[verify]\n")
    use_script(toy_repo, [{"hypothesis": "X to 6", "edits": {"target.py": "X = 6.0\n"}},
                          {"hypothesis": "X to 5", "edits": {"target.py": "X = 5.0\n"}}])
    check = run_cli(toy_repo, "check")
    assert check.returncode == 0, check.stdout + check.stderr  # a warning, not a problem
    assert f"{workers} workers share {workers - 1} core" in " ".join(check.stdout.split())
    run = run_cli(toy_repo, "run", "--tag", "t", "-n", "1")
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{workers} workers share {workers - 1} core" in " ".join(run.stdout.split())
    quiet = run_cli(toy_repo, "run", "--tag", "u", "-n", "1", "--workers", str(workers - 1))
    assert quiet.returncode == 0 and "workers share" not in " ".join(quiet.stdout.split())


def test_check_and_run_warn_when_gpus_names_a_gpu_the_machine_does_not_show(
        toy_repo: Path, tmp_path: Path) -> None:
    # Each slot's runs would get CUDA_VISIBLE_DEVICES=7 and find no GPU: a budgeted metric
    # measured on the CPU, silently. nvidia-smi is faked on PATH: two GPUs, then none.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: Fake A (UUID: GPU-aaaa-1)'\n"
                   "echo 'GPU 1: Fake B (UUID: GPU-bbbb-2)'\n")
    smi.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    edit_config(toy_repo, "[verify]\n", '[run]\ngpus = ["1", "7"]\n[verify]\n')
    use_script(toy_repo, [{"hypothesis": "X to 6", "edits": {"target.py": "X = 6.0\n"}}])
    check = run_cli(toy_repo, "check", env=env)
    assert check.returncode == 0, check.stdout + check.stderr  # a warning, not a problem
    said = " ".join(check.stdout.split())
    assert "[run] gpus names GPU 7, which nvidia-smi does not list (it lists 0, 1)" in said, said
    run = run_cli(toy_repo, "run", "--tag", "t", "-n", "1", env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "names GPU 7, which nvidia-smi does not list" in " ".join(run.stdout.split())
    edit_config(toy_repo, '["1", "7"]', '["GPU-bbbb-2", "0"]')  # UUIDs name GPUs too
    git(toy_repo, "commit", "-qam", "GPUs it has")
    assert "nvidia-smi" not in " ".join(run_cli(toy_repo, "check", env=env).stdout.split())
    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")  # no GPU at all
    said = " ".join(run_cli(toy_repo, "check", env=env).stdout.split())
    assert '[run] gpus = ["GPU-bbbb-2", "0"], but this machine shows no GPU' in said


def test_check_takes_the_workers_a_run_would_be_given(toy_repo: Path) -> None:
    # `run --workers N` overrides [run] workers; `check` checks the same shares for it.
    workers = usable_cores() + 1
    use_script(toy_repo, [{"hypothesis": "X to 6", "edits": {"target.py": "X = 6.0\n"}}])
    check = run_cli(toy_repo, "check", "--workers", str(workers))
    assert check.returncode == 0, check.stdout + check.stderr
    said = " ".join(check.stdout.split())
    assert f"{workers} workers: slot-1" in said and f"slot-{workers} " in said
    assert f"{workers} workers share {workers - 1} core" in said
    bad = run_cli(toy_repo, "check", "-w", "0")
    assert bad.returncode == 2 and "--workers" in bad.stderr


# A verify command that holds a TCP port on 127.0.0.1 for 3 s before it scores: the port is
# fixed, or offset by AUTORESEARCH_SLOT (the fix `check` names).
SERVE_PY = """\
import os, socket, subprocess, sys, time
port = {base} + ({per_slot} and int(os.environ["AUTORESEARCH_SLOT"]))
s = socket.socket()
try:
    s.bind(("127.0.0.1", port))
except OSError as exc:
    sys.exit(f"cannot bind 127.0.0.1:{{port}}: {{exc}}")
time.sleep(3)
s.close()
sys.exit(subprocess.call([sys.executable, "score.py"]))
"""


@pytest.mark.parametrize("per_slot", [False, True], ids=["fixed port", "port from the slot"])
def test_check_runs_every_slot_at_once_and_names_a_collision(toy_repo: Path,
                                                             per_slot: bool) -> None:
    # Alone the command passes; two runs at once collide on the port, which a session would only
    # show as crashes blamed on candidates. `check --workers 2` runs both slots together first.
    base = free_port() - 3
    (toy_repo / "serve.py").write_text(SERVE_PY.format(base=base, per_slot=per_slot))
    git(toy_repo, "add", "serve.py")
    edit_config(toy_repo, 'command = "{python} score.py"', 'command = "{python} serve.py"')
    edit_config(toy_repo, "timeout_seconds = 8", "timeout_seconds = 30")
    use_script(toy_repo, [{"hypothesis": "X to 6", "edits": {"target.py": "X = 6.0\n"}}])
    alone = run_cli(toy_repo, "check", "--workers", "1")
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert "at once" not in alone.stdout
    check = run_cli(toy_repo, "check", "--workers", "2")
    said = " ".join(check.stdout.split())
    if per_slot:
        assert check.returncode == 0, check.stdout + check.stderr
        assert "2 runs at once all passed" in said, said
        assert "score 16 alone, 16, 16 at once" in said, said  # (3 - 7)², alone and together
        return
    assert check.returncode == 1, said
    assert "alone the verify command passed, but with 2 runs at once 1 failed" in said, said
    assert "cannot bind 127.0.0.1" in said and "AUTORESEARCH_SLOT" in said, said
    assert "cannot bind" in (toy_repo / ".autoresearch" / "check-slot.log").read_text()
    assert "1 problem(s) found" in said
    assert not list((toy_repo / ".autoresearch").glob("**/slot-*/"))  # no worktree left
    assert git(toy_repo, "worktree", "list").count("\n") <= 1, git(toy_repo, "worktree", "list")


def test_a_killed_checks_worktrees_are_removed_by_the_next_check(toy_repo: Path) -> None:
    # kill -9 while the slots run at once: its runs die with it (the lifeline), but its
    # worktrees stay registered in git and on disk until the next check sweeps them.
    import select
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import cli_env

    (toy_repo / "target.py").write_text("X = 3.0\nSLEEP = 4\n")
    edit_config(toy_repo, "timeout_seconds = 8", "timeout_seconds = 30")
    use_script(toy_repo, [{"hypothesis": "X to 6", "edits": {"target.py": "X = 6.0\n"}}])
    check = subprocess.Popen(
        [sys.executable, "-m", "autoresearch", "check", "--workers", "2", "--repo", str(toy_repo)],
        env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert check.stdout is not None
    said, deadline = "", time.monotonic() + 60
    while "slots at once" not in said and time.monotonic() < deadline:
        if select.select([check.stdout], [], [], 1.0)[0]:
            said += check.stdout.readline()
    assert "slots at once" in said, said

    def made() -> list[str]:
        return [line for line in git(toy_repo, "worktree", "list").splitlines()
                if "autoresearch-check-" in line]

    # The slots' worktrees are made after that line is printed: waited for, as a fixed sleep
    # need not cover both `git worktree add`s on a loaded machine; then the runs start.
    deadline = time.monotonic() + 60
    while len(made()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    check.send_signal(signal.SIGKILL)
    check.wait()
    stale = [line for line in git(toy_repo, "worktree", "list").splitlines()
             if "autoresearch-check-" in line]
    assert len(stale) == 2, stale  # the two slots' (the single dry run's was removed)
    (toy_repo / "target.py").write_text("X = 3.0\n")
    git(toy_repo, "commit", "-qam", "fast again")
    assert run_cli(toy_repo, "check").returncode == 0
    assert "autoresearch-check-" not in git(toy_repo, "worktree", "list")
    assert not any(Path(line.split()[0]).exists() for line in stale)


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGHUP"])
def test_a_check_stopped_by_a_signal_removes_its_worktree(toy_repo: Path, signum: str) -> None:
    # SIGTERM (a closed terminal: SIGHUP) during the dry run killed check outright: its
    # temporary worktree stayed registered in git until the next check. It stops as on Ctrl-C.
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import cli_env

    (toy_repo / "target.py").write_text("X = 3.0\nSLEEP = 20\n")
    edit_config(toy_repo, "timeout_seconds = 8", "timeout_seconds = 60")
    git(toy_repo, "commit", "-qam", "a slow run")
    check = subprocess.Popen(
        [sys.executable, "-m", "autoresearch", "check", "--repo", str(toy_repo)],
        env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while "autoresearch-check-" not in git(toy_repo, "worktree", "list"):
        assert time.monotonic() < deadline and check.poll() is None, check.communicate()[0]
        time.sleep(0.05)
    check.send_signal(getattr(signal, signum))
    out, _ = check.communicate(timeout=60)
    assert check.returncode == 130, out
    assert "autoresearch-check-" not in git(toy_repo, "worktree", "list"), out
