"""Orphans come back to the orchestrator (a child subreaper) and die after the call that left
them; a sibling slot's live run is never touched (see autoresearch/strays.py).

The orchestrators here are real processes (a small script, or `autoresearch run`): becoming a
subreaper is for the life of a process, and the test runner's own must stay as it is.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CONFIG, SCORE_PY, cli_env, git, make_repo, run_cli, use_agent
from tests.support.processes import alive

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the child subreaper is Linux only")

# A daemon as far from its run as a process can get: no environment at all (no run id, no owner
# mark), its own session, and a double fork (its parent is gone at once).
DAEMON = "env -i PATH=/usr/bin:/bin setsid sh -c 'sh {script} {pidfile} </dev/null >/dev/null 2>&1 &'"


def daemon_script(path: Path, body: str = "exec sleep 300") -> Path:
    path.write_text(f'echo $$ > "$1"\n{body}\n')
    return path


def read_pid(path: Path, within_s: float = 10) -> int:
    deadline = time.monotonic() + within_s
    while not path.exists() or not path.read_text().strip():
        assert time.monotonic() < deadline, f"{path} was never written"
        time.sleep(0.02)
    return int(path.read_text())


@contextlib.contextmanager
def killed_afterwards(*pidfiles: Path) -> Iterator[None]:
    """Whatever the test concludes, the daemons it made do not outlive it."""
    try:
        yield
    finally:
        for pidfile in pidfiles:
            with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)


def orchestrate(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    """Run `body` in a fresh Python process that made itself a subreaper, as `autoresearch`
    does when it starts."""
    script = tmp_path / "orchestrator.py"
    script.write_text(textwrap.dedent("""
        import os, sys, threading, time
        from pathlib import Path
        from autoresearch import strays
        from autoresearch.runner import RunSpec, run_command
        assert strays.adopt_orphans()
        d = Path(sys.argv[1])
        def run(command, name):
            return run_command(RunSpec(command=command, cwd=d, log_path=d / f"{name}.log",
                                       timeout_s=30, budget_s=5,
                                       run_id=f"ar-test-{os.getpid()}-{name}"))
    """) + textwrap.dedent(body))
    return subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)


def test_a_verify_commands_env_cleared_setsid_daemon_dies_with_its_run(tmp_path: Path) -> None:
    script = daemon_script(tmp_path / "daemon.sh")
    pidfile = tmp_path / "daemon.pid"
    command = DAEMON.format(script=script, pidfile=pidfile) + f"; while [ ! -s {pidfile} ]; do sleep 0.01; done"
    with killed_afterwards(pidfile):
        result = orchestrate(tmp_path, f"""
            out = run({command!r}, "a")
            print("exit", out.exit_code, "killed", out.survivors_killed)
            print("alive", Path("/proc", Path({str(pidfile)!r}).read_text().strip()).exists())
        """)
        assert result.returncode == 0, result.stderr
        assert "exit 0 killed 1" in result.stdout, result.stdout
        # Dead when run_command returned, while the orchestrator still lived.
        assert "alive False" in result.stdout, result.stdout
        assert not alive(read_pid(pidfile))


def test_a_sweep_never_touches_a_sibling_slots_live_run(tmp_path: Path) -> None:
    """Slot b's run ends and leaves a daemon while slot a's run goes on: the daemon dies, and
    a's processes live on, even those that came back to the orchestrator (an orphan in a's
    process group that cleared its environment) or left a's session but kept its run id."""
    script = daemon_script(tmp_path / "daemon.sh")
    pidfile = tmp_path / "daemon.pid"
    marks = tmp_path / "marks"
    ready, b_done = tmp_path / "ready", tmp_path / "b-done"
    ready.mkdir()
    # The order is set by files, not sleeps (a loaded machine upsets sleeps): the orphans live
    # until b's run has ended and been swept, and a's first process until they have marked.
    until_b_done = f"while [ ! -e {b_done} ]; do sleep 0.01; done"
    slot_a = (
        # An orphan in a's group without its run id: its parent (the subshell) exits at once.
        f"(env -i PATH=/usr/bin:/bin sh -c 'touch {ready}/grouped; {until_b_done}; "
        f"echo grouped >> {marks}' &); "
        # An orphan that left a's session but carries a's run id.
        f"(setsid sh -c 'touch {ready}/marked; {until_b_done}; echo marked >> {marks}' &); "
        # Both subshells have exited (the orphans are ours) and both orphans have started.
        f"while [ ! -e {ready}/grouped ] || [ ! -e {ready}/marked ]; do sleep 0.01; done; "
        f"touch {ready}/both; "
        f"while [ $(cat {marks} 2>/dev/null | wc -l) -lt 2 ]; do sleep 0.01; done; "
        "echo first-process >> " + str(marks))
    slot_b = DAEMON.format(script=script, pidfile=pidfile) + f"; while [ ! -s {pidfile} ]; do sleep 0.01; done"
    with killed_afterwards(pidfile):
        result = orchestrate(tmp_path, f"""
            results = {{}}
            a = threading.Thread(target=lambda: results.update(a=run({slot_a!r}, "a")))
            a.start()
            deadline = time.monotonic() + 60
            while not Path({str(ready / "both")!r}).exists():  # a's orphans have come back to us
                assert time.monotonic() < deadline, "a's orphans never started"
                time.sleep(0.01)
            b = run({slot_b!r}, "b")
            print("b", b.exit_code, "killed", b.survivors_killed)
            print("daemon alive", Path("/proc", Path({str(pidfile)!r}).read_text().strip()).exists())
            Path({str(b_done)!r}).touch()
            a.join()
            print("a", results["a"].exit_code, results["a"].timed_out)
        """)
        assert result.returncode == 0, result.stderr
        assert "b 0 killed 1" in result.stdout, result.stdout
        assert "daemon alive False" in result.stdout, result.stdout
        assert "a 0 False" in result.stdout, result.stdout
        assert sorted(marks.read_text().split()) == ["first-process", "grouped", "marked"]


def test_orphans_that_die_while_their_run_goes_on_are_reaped_at_once(tmp_path: Path) -> None:
    """Each orphan comes back to the orchestrator and dies there: unreaped, it stays a zombie
    holding a pid until the run ends. A run that forked daemons in a loop for two minutes left
    32,000 of them and filled the machine's process table (no process could start anywhere)."""
    marker = tmp_path / "forked"
    command = ("i=0; while [ $i -lt 300 ]; do (setsid sh -c 'exit 0' &); i=$((i+1)); done; "
               f"sleep 1; touch {marker}; sleep 3")
    result = orchestrate(tmp_path, f"""
        import os
        def zombie_children():
            count = 0
            for task in os.listdir("/proc/self/task"):
                for pid in open(f"/proc/self/task/{{task}}/children").read().split():
                    try:
                        state = open(f"/proc/{{pid}}/stat").read().rsplit(")", 1)[1].split()[0]
                    except OSError:
                        continue
                    count += state == "Z"
            return count
        done = {{}}
        t = threading.Thread(target=lambda: done.update(out=run({command!r}, "a")))
        t.start()
        while not Path({str(marker)!r}).exists():
            time.sleep(0.05)
        print("zombies while the run goes on", zombie_children())
        t.join()
        print("exit", done["out"].exit_code, "zombies after", zombie_children())
    """)
    assert result.returncode == 0, result.stderr
    counted = int(result.stdout.split("zombies while the run goes on ")[1].split()[0])
    assert counted < 30, result.stdout  # 300 before the reaper: all of them
    assert "exit 0 zombies after 0" in result.stdout, result.stdout


# A verify command whose daemon ignores every polite signal, then a run that goes on long after
# the test: only a SIGKILL from someone who remembers the daemon ends it.
DAEMON_VERIFY = """{daemon}
while [ ! -s {pidfile} ]; do sleep 0.01; done
exec sleep 300
"""


@pytest.mark.slow
def test_a_verify_commands_env_cleared_setsid_daemon_dies_with_a_sigkilled_orchestrator(
        tmp_path: Path) -> None:
    """No sweep comes after a kill -9, and the daemon has neither the owner mark nor the run's
    group the watchdog looked for: before the fix it outlived the orchestrator, and a resume
    too. The watchdog now remembers the orchestrator's descendants while it lives."""
    pidfile = tmp_path / "daemon.pid"
    script = daemon_script(tmp_path / "daemon.sh", "trap '' TERM HUP INT\nexec sleep 300")
    verify = DAEMON_VERIFY.format(daemon=DAEMON.format(script=script, pidfile=pidfile),
                                  pidfile=pidfile)
    config = CONFIG.replace('command = "{python} score.py"', 'command = "sh verify.sh"').replace(
        "timeout_seconds = 8", "timeout_seconds = 600")
    repo = make_repo(tmp_path / "repo", {"target.py": "X = 3.0  # knob: float(0, 10)\n",
                                         "score.py": SCORE_PY, "verify.sh": verify,
                                         "autoresearch.toml": config})
    with killed_afterwards(pidfile):
        orchestrator = subprocess.Popen(
            [sys.executable, "-m", "autoresearch", "run", "--repo", str(repo), "--tag", "w",
             "--iterations", "2"],
            cwd=repo, env=cli_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        try:
            daemon = read_pid(pidfile, within_s=60)
            # The daemon has come back to the orchestrator (a subreaper); the watchdog looks at
            # the orchestrator's tree a few times a second: give it time for one look.
            time.sleep(1.0)
            assert alive(daemon)
        finally:
            orchestrator.kill()
            orchestrator.wait()
        deadline = time.monotonic() + 10
        while alive(daemon) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(daemon), "the daemon outlived the orchestrator"


AGENT = """#!/bin/sh
# A coding agent that proposes X = 5.0 (an honest improvement: score 4 against 16) and leaves a
# daemon that waits for the harness to commit, then rewrites target.py with the optimum.
sed -i 's/X = 3.0/X = 5.0/' target.py
{daemon}
echo "Hypothesis: set X to 5"
"""

REWRITER = """W=$(pwd); H0=$(git -C "$W" rev-parse HEAD)
i=0; while [ "$(git -C "$W" rev-parse HEAD)" = "$H0" ] && [ $i -lt 3000 ]; do i=$((i+1)); sleep 0.01; done
i=0; while [ $i -lt 3000 ]; do echo 'X = 7.0' > "$W/t.tmp" && mv "$W/t.tmp" "$W/target.py"; i=$((i+1)); sleep 0.01; done
"""


@pytest.mark.slow
def test_an_agents_env_cleared_setsid_daemon_dies_before_its_change_is_measured(
        toy_repo: Path, tmp_path: Path) -> None:
    """The attack of the tamper findings (#2): before the fix the daemon outlived the agent and
    the session, and the candidate was measured at the optimum it wrote."""
    pidfile = tmp_path / "daemon.pid"
    script = daemon_script(tmp_path / "rewriter.sh", REWRITER)
    daemon = (f"env -i PATH=/usr/bin:/bin setsid sh -c 'cd \"$0\" && sh {script} {pidfile} "
              "</dev/null >/dev/null 2>&1 &' \"$PWD\"")
    use_agent(toy_repo, AGENT.format(daemon=daemon), tmp_path)
    with killed_afterwards(pidfile):
        result = run_cli(toy_repo, "run", "--tag", "d", "--iterations", "2", timeout=240)
        assert result.returncode == 0, result.stdout + result.stderr
        # On a loaded machine the sweep may kill the daemon before its first line wrote the
        # pid file: gone before it began is gone too. Whatever pid it wrote must be dead.
        time.sleep(1.0)
        if pidfile.exists() and pidfile.read_text().strip():
            assert not alive(int(pidfile.read_text())), "the agent's daemon outlived the agent"
    with sqlite3.connect(toy_repo / ".autoresearch" / "ledger.db") as conn:
        scores = [r[0] for r in conn.execute(
            "SELECT m.value FROM metrics m JOIN runs r ON r.id = m.run_id "
            "WHERE r.experiment_id = 'd-0002' AND r.role = 'candidate' AND m.name = 'score'")]
    assert scores and all(s == 4.0 for s in scores), scores  # what X = 5.0 really scores
    assert git(toy_repo, "show", "autoresearch/d:target.py") == "X = 5.0"


def test_forgetting_a_reaped_helper_keeps_a_later_runs_registration_of_its_pid() -> None:
    """Once a helper (a timed git) is reaped its pid is free, and a run started meanwhile in
    another slot may get it before the helper's `forget`: that `forget` used to drop the run's
    registration, so the reaper could take the run's exit status (its runner then read 0) and
    another slot's sweep could kill it as a stray (a reviewer forced the pid reuse in a pid
    namespace)."""
    from autoresearch import strays

    pid = 4_000_000 + os.getpid()  # above any pid_max: no real process is named
    helper, run = object(), object()
    strays.spawn_helper(lambda: helper, lambda _h: pid)
    strays.spawn("ar-test-reuse", lambda: run, lambda _r: pid)  # the pid, reused by a run
    try:
        strays.forget(pid, helper)  # the helper's late forget
        state = strays._STATE
        assert pid in state.runs and pid not in state.helpers
    finally:
        strays.forget(pid, run)
    assert pid not in strays._STATE.runs and pid not in strays._STATE.handles
