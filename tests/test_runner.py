"""runner: real subprocesses, real process trees, real kills."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from autoresearch import runner
from autoresearch.process_tree import OWNER_ENV, kill_orphans, owner_alive, owner_token
from autoresearch.runner import RunOutcome, RunSpec, kill_leftovers, log_tail, run_command

PY = sys.executable
SRC = str(Path(runner.__file__).resolve().parents[1])


@pytest.fixture
def prefix() -> Iterator[str]:
    """A run-id prefix unique to the test; anything still carrying it is killed afterwards."""
    value = f"test-{uuid.uuid4().hex[:12]}-"
    yield value
    kill_leftovers(value, grace_s=0.0)


def spec(tmp_path: Path, command: str, **kw: object) -> RunSpec:
    kw.setdefault("timeout_s", 10.0)
    kw.setdefault("budget_s", 5.0)
    kw.setdefault("grace_s", 0.3)
    return RunSpec(command=command, cwd=tmp_path, log_path=tmp_path / "run.log", **kw)  # type: ignore[arg-type]


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return f"{PY} {path}"


def is_dead(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")  # a zombie has run its course


def wait_dead(pid: int, within_s: float = 2.0) -> bool:
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        if is_dead(pid):
            return True
        time.sleep(0.01)
    return is_dead(pid)


def wait_file(path: Path, within_s: float = 10.0) -> int:
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        # Some writers (Path.write_text, a shell's `>`) create the file before they write it: an
        # empty file is not written yet.
        text = path.read_text() if path.exists() else ""
        if text.strip():
            return int(text)
        time.sleep(0.01)
    raise AssertionError(f"{path} never appeared")


def stop_when(path: Path) -> threading.Event:
    """An event set as soon as ``path`` exists: ends a run exactly when its tree is built."""
    stop = threading.Event()

    def watch() -> None:
        wait_file(path)
        stop.set()

    threading.Thread(target=watch, daemon=True).start()
    return stop


# Writes its pid atomically, so a reader never sees an empty file.
WRITE_PID = """
import os, sys
def write_pid(path):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(os.getpid()))
    os.rename(tmp, path)
"""


def test_normal_exit_log_is_exactly_the_output(tmp_path: Path) -> None:
    out = run_command(spec(tmp_path, "printf 'a\\n'; printf 'b\\n' >&2"))
    assert out == RunOutcome(
        exit_code=0,
        timed_out=False,
        duration_s=out.duration_s,
        log_path=tmp_path / "run.log",
        log_truncated=False,
        interrupted=False,
        survivors_killed=0,
        run_id=out.run_id,
        command_s=out.command_s,
    )
    # The command's own time is part of the call's, which adds the kill scan and the drain.
    assert 0 < out.command_s <= out.duration_s
    assert (tmp_path / "run.log").read_bytes() == b"a\nb\n"  # no header, stderr merged
    assert out.run_id.startswith("ar-")


def test_exit_code_propagates(tmp_path: Path) -> None:
    assert run_command(spec(tmp_path, "exit 3")).exit_code == 3


def test_env_budget_run_id_and_cwd_visible(tmp_path: Path) -> None:
    cmd = 'echo "$AUTORESEARCH_TIME_BUDGET|$AUTORESEARCH_RUN_ID|$EXTRA|$(pwd)"'
    out = run_command(spec(tmp_path, cmd, budget_s=60.0, run_id="r-1", env={"EXTRA": "x"}))
    assert log_tail(out.log_path).strip() == f"60|r-1|x|{tmp_path}"
    out = run_command(spec(tmp_path, "echo $AUTORESEARCH_TIME_BUDGET", budget_s=0.5))
    assert log_tail(out.log_path).strip() == "0.5"


def test_log_parent_directory_is_created(tmp_path: Path) -> None:
    log = tmp_path / "a" / "b" / "run.log"
    out = run_command(RunSpec("echo hi", tmp_path, log, timeout_s=5, budget_s=1))
    assert log.read_text() == "hi\n" and out.exit_code == 0


def test_timeout_kills_sleeping_command(tmp_path: Path) -> None:
    t0 = time.monotonic()
    out = run_command(spec(tmp_path, "echo started; sleep 30", timeout_s=0.5))
    elapsed = time.monotonic() - t0
    assert out.timed_out and out.exit_code is None and not out.interrupted
    # Killed at its timeout, not after its 30 s: the slack is for the kill scan and the drain,
    # which took over 1 s on a loaded 2-core machine (the bound was 1.3 s).
    assert 0.5 <= elapsed < 0.5 + 0.3 + 5.0
    assert out.survivors_killed >= 1
    assert log_tail(out.log_path) == "started\n"


def test_grandchild_ignoring_sigterm_is_killed_at_timeout(tmp_path: Path, prefix: str) -> None:
    pidfile = tmp_path / "gc.pid"
    grandchild = WRITE_PID + "import signal, time\n"
    grandchild += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    grandchild += f"write_pid({str(pidfile)!r})\ntime.sleep(60)\n"
    parent = f"""
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", {grandchild!r}])
        time.sleep(60)
        """
    t0 = time.monotonic()
    out = run_command(
        spec(tmp_path, script(tmp_path, "p.py", parent), timeout_s=1.5, run_id=prefix + "1")
    )
    assert out.timed_out
    # Killed after the grace, not after its 60 s (slack for a loaded machine: 2.2 s seen of 2.8).
    assert time.monotonic() - t0 < 1.5 + 0.3 + 5.0
    assert wait_dead(wait_file(pidfile))
    # The command itself (a simple command is exec'd: no shell in between) and its grandchild.
    assert out.survivors_killed >= 2


def test_setsid_grandchild_is_killed(tmp_path: Path, prefix: str) -> None:
    pidfile = tmp_path / "gc.pid"
    body = (
        WRITE_PID
        + f"""
import time
if os.fork() == 0:
    os.setsid()  # leaves the process group: killpg alone misses it
    write_pid({str(pidfile)!r})
    time.sleep(60)
    os._exit(0)
time.sleep(60)
"""
    )
    out = run_command(
        spec(tmp_path, script(tmp_path, "p.py", body), run_id=prefix + "1"),
        stop=stop_when(pidfile),
    )
    assert out.interrupted and out.exit_code is None and not out.timed_out
    assert wait_dead(wait_file(pidfile))


def test_children_that_cleared_their_environment_are_killed(tmp_path: Path, prefix: str) -> None:
    # No run id to be found by: one stays in the group, the other also leaves it and is found
    # only as a descendant of the run's first process (which is alive: the run is stopped).
    body = WRITE_PID + f"""
import subprocess, sys, time
code = {WRITE_PID!r} + "import time\\nwrite_pid(sys.argv[1])\\ntime.sleep(60)\\n"
subprocess.Popen([sys.executable, "-c", "import sys\\n" + code, {str(tmp_path / "grouped.pid")!r}], env={{}})
subprocess.Popen([sys.executable, "-c", "import sys\\n" + code, {str(tmp_path / "away.pid")!r}], env={{}},
                 start_new_session=True)
while not all(os.path.exists(f"{tmp_path}/{{n}}.pid") for n in ("grouped", "away")):
    time.sleep(0.01)
write_pid({str(tmp_path / "ready")!r})
time.sleep(60)
"""
    out = run_command(spec(tmp_path, script(tmp_path, "p.py", body), run_id=prefix + "1"),
                      stop=stop_when(tmp_path / "ready"))
    assert out.interrupted
    assert wait_dead(wait_file(tmp_path / "grouped.pid"))
    assert wait_dead(wait_file(tmp_path / "away.pid"))


def test_daemon_left_behind_after_exit_zero_is_killed(tmp_path: Path, prefix: str) -> None:
    pidfile = tmp_path / "daemon.pid"
    body = (
        WRITE_PID
        + f"""
import time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        # Classic daemon: new session, stdio detached from our pipe.
        fd = os.open(os.devnull, os.O_RDWR)
        for n in (0, 1, 2):
            os.dup2(fd, n)
        write_pid({str(pidfile)!r})
        time.sleep(60)
    os._exit(0)
while not os.path.exists({str(pidfile)!r}):
    time.sleep(0.01)
print("val_bpb: 0.99")
"""
    )
    out = run_command(spec(tmp_path, script(tmp_path, "p.py", body), run_id=prefix + "1"))
    assert out.exit_code == 0 and not out.timed_out
    assert out.survivors_killed == 1
    assert wait_dead(wait_file(pidfile))
    assert log_tail(out.log_path) == "val_bpb: 0.99\n"


def test_grandchild_holding_the_pipe_does_not_hang(tmp_path: Path, prefix: str) -> None:
    # The grandchild keeps stdout open, ignores SIGTERM and leaves the group: EOF never
    # comes by itself after the main process exits.
    pidfile = tmp_path / "gc.pid"
    body = (
        WRITE_PID
        + f"""
import signal, time
if os.fork() == 0:
    os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    write_pid({str(pidfile)!r})
    while True:
        print("noise", flush=True)
        time.sleep(0.05)
while not os.path.exists({str(pidfile)!r}):
    time.sleep(0.01)
print("done", flush=True)
"""
    )
    t0 = time.monotonic()
    out = run_command(spec(tmp_path, script(tmp_path, "p.py", body), run_id=prefix + "1"))
    assert time.monotonic() - t0 < 3.0
    assert out.exit_code == 0 and out.survivors_killed == 1
    assert wait_dead(wait_file(pidfile))
    assert "done" in log_tail(out.log_path)


def test_background_job_holding_the_pipe_is_killed_after_exit(tmp_path: Path) -> None:
    t0 = time.monotonic()
    out = run_command(spec(tmp_path, "sleep 30 & echo $! > bg.pid; echo done"))
    assert out.exit_code == 0 and out.survivors_killed == 1
    assert time.monotonic() - t0 < 2.0
    assert wait_dead(wait_file(tmp_path / "bg.pid"))


def test_child_that_closes_stdout_still_times_out(tmp_path: Path) -> None:
    out = run_command(spec(tmp_path, "exec >&- 2>&-; sleep 30", timeout_s=0.5))
    assert out.timed_out and out.exit_code is None


def test_flood_is_bounded_and_keeps_head_and_tail(tmp_path: Path) -> None:
    body = """
        import sys
        print("first line")
        for i in range(200_000):
            sys.stdout.write(f"step {i} loss 3.14159\\n")
        print("val_bpb:          0.997900")
        print("peak_vram_mb:     45060.2")
        """
    cap = 64 * 1024
    out = run_command(spec(tmp_path, script(tmp_path, "flood.py", body), max_log_bytes=cap))
    data = out.log_path.read_bytes()
    assert out.exit_code == 0 and out.log_truncated and out.log_bytes_dropped > 0
    assert len(data) <= cap
    assert data.startswith(b"first line\nstep 0 loss")
    assert data.endswith(b"val_bpb:          0.997900\npeak_vram_mb:     45060.2\n")
    assert f"[autoresearch: {out.log_bytes_dropped} bytes of output dropped here]".encode() in data
    # The tail starts on a line boundary, so no half line can look like a metric.
    tail = data.split(b"dropped here]\n", 1)[1]
    assert tail.startswith(b"step ")


def test_endless_flood_until_timeout_stays_under_cap(tmp_path: Path) -> None:
    cap = 256 * 1024
    out = run_command(spec(tmp_path, "yes", timeout_s=0.5, max_log_bytes=cap))
    assert out.timed_out and out.log_truncated
    assert out.log_path.stat().st_size <= cap


def test_binary_garbage_output(tmp_path: Path) -> None:
    out = run_command(spec(tmp_path, "head -c 300000 /dev/urandom", max_log_bytes=65536))
    assert out.exit_code == 0 and out.log_truncated
    assert isinstance(log_tail(out.log_path), str)


def test_stop_event_interrupts(tmp_path: Path) -> None:
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    t0 = time.monotonic()
    out = run_command(spec(tmp_path, "sleep 30"), stop=stop)
    assert out.interrupted and not out.timed_out and out.exit_code is None
    assert time.monotonic() - t0 < 1.5


@pytest.mark.skipif(
    signal.getsignal(signal.SIGINT) is not signal.default_int_handler,
    reason="needs Python's default SIGINT handler",
)
def test_keyboard_interrupt_kills_tree_and_reraises(tmp_path: Path) -> None:
    main = threading.get_ident()
    pidfile = tmp_path / "child.pid"

    def interrupt() -> None:
        wait_file(pidfile)
        signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        run_command(spec(tmp_path, "echo $$ > child.pid.tmp; mv child.pid.tmp child.pid; sleep 30"))
    assert wait_dead(wait_file(pidfile), within_s=0.5)


def test_kill_leftovers_matches_prefix_only(tmp_path: Path, prefix: str) -> None:
    sleeper = [PY, "-c", "import time; time.sleep(60)"]
    env = dict(os.environ)
    mine = subprocess.Popen(
        sleeper, env={**env, runner.RUN_ID_ENV: prefix + "7"}, start_new_session=True
    )
    other = subprocess.Popen(
        sleeper, env={**env, runner.RUN_ID_ENV: "unrelated-7"}, start_new_session=True
    )
    try:
        time.sleep(0.1)  # let both exec so /proc shows their environment
        assert kill_leftovers(prefix, grace_s=0.5) == 1
        assert mine.wait(timeout=2) == -signal.SIGTERM
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
        mine.kill()
        mine.wait()


def test_kill_leftovers_refuses_empty_prefix() -> None:
    with pytest.raises(ValueError):
        kill_leftovers("")


# A run whose processes escape in every way a process can: the command is forked by the shell
# (a list, so no exec), and it starts a grandchild that ignores SIGTERM, one that leaves the
# session (setsid), and one that clears its environment (found only through its group).
ESCAPING_TREE = WRITE_PID + """
import signal, subprocess, sys, time
pids = sys.argv[1]
def spawn(name, body, **kw):
    code = WRITE_PID_SRC + body.replace("PIDFILE", repr(pids + "/" + name))
    return subprocess.Popen([sys.executable, "-c", code], **kw)
WRITE_PID_SRC = (
    "import os, signal, time\\n"
    "def write_pid(path):\\n"
    "    with open(path + '.tmp', 'w') as f:\\n"
    "        f.write(str(os.getpid()))\\n"
    "    os.rename(path + '.tmp', path)\\n")
spawn("stubborn", "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\nwrite_pid(PIDFILE)\\n"
      "time.sleep(120)\\n")
spawn("bare", "write_pid(PIDFILE)\\ntime.sleep(120)\\n", env={})
if os.fork() == 0:
    os.setsid()
    write_pid(pids + "/daemon")
    time.sleep(120)
    os._exit(0)
write_pid(pids + "/command")
time.sleep(120)
"""

KINDS = ("command", "stubborn", "bare", "daemon")


def orchestrate(
    tmp_path: Path, run_id: str, pdeathsig: str = "setpriv"
) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    """A real orchestrator process running the escaping tree; returns it and the tree's pids."""
    (tmp_path / "tree.py").write_text(ESCAPING_TREE)
    pids = tmp_path / "pids"
    pids.mkdir()
    command = f"{PY} tree.py {pids}; echo unreachable"
    orchestrator = f"""
        import sys
        sys.path.insert(0, {SRC!r})
        from pathlib import Path
        from autoresearch import lifeline
        from autoresearch.runner import RunSpec, run_command
        if {pdeathsig!r} != "setpriv":
            lifeline._setpriv = lambda: None  # the ctypes prctl fallback
        if {pdeathsig!r} == "none":
            lifeline._PRCTL = None  # no parent-death signal at all (macOS): the watchdog alone
        run_command(RunSpec({command!r}, Path({str(tmp_path)!r}), Path({str(tmp_path)!r}) / "run.log",
                            timeout_s=120, budget_s=120, run_id={run_id!r}))
        """
    proc = subprocess.Popen([PY, "-c", textwrap.dedent(orchestrator)])
    try:
        found = {kind: wait_file(pids / kind, within_s=30) for kind in KINDS}
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc, found


def watchdogs_of(pid: int) -> list[int]:
    """The live watchdogs of orchestrator ``pid`` (wherever they are in the process tree)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            argv = p.info["cmdline"] or []
            if (argv and "autoresearch.watchdog" in " ".join(argv)
                    and argv[-1].startswith(f"{pid}:") and not is_dead(p.pid)):
                found.append(p.pid)
    return found


def watchdog_of(pid: int) -> int:
    end = time.monotonic() + 10
    while time.monotonic() < end:
        for child in psutil.Process(pid).children():
            if "autoresearch.watchdog" in " ".join(child.cmdline()):
                return child.pid
        time.sleep(0.02)
    raise AssertionError("no watchdog")


@pytest.mark.slow
@pytest.mark.parametrize("pdeathsig", ["setpriv", "preexec", "none"])
def test_the_whole_tree_dies_with_a_sigkilled_orchestrator(
    tmp_path: Path, prefix: str, pdeathsig: str
) -> None:
    # Before the watchdog only the shell had the parent-death signal (dash forks the command):
    # the command and every grandchild kept running until a resume of the same tag.
    proc, found = orchestrate(tmp_path, prefix + "1", pdeathsig)
    proc.kill()
    proc.wait()
    survivors = {kind: pid for kind, pid in found.items() if not wait_dead(pid, within_s=30)}
    assert survivors == {}


@pytest.mark.slow
def test_the_tree_dies_with_a_sigkilled_orchestrator_whose_watchdog_pipe_is_held_open(
    tmp_path: Path, prefix: str
) -> None:
    """The watchdog waited for EOF on its pipe alone; a run's process can open the pipe's write
    end through /proc/<orchestrator>/fd/ and hold it (a reviewer's train.py did), and EOF never
    came. Here the test holds it, as such a process would."""
    proc, found = orchestrate(tmp_path, prefix + "1")
    watchdog = watchdog_of(proc.pid)
    pipe = os.readlink(f"/proc/{watchdog}/fd/0")
    held = None
    for fd in os.listdir(f"/proc/{proc.pid}/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{proc.pid}/fd/{fd}") == pipe:
                held = os.open(f"/proc/{proc.pid}/fd/{fd}", os.O_WRONLY)
                break
    assert held is not None, "the orchestrator holds no write end of the watchdog's pipe"
    try:
        proc.kill()
        proc.wait()
        survivors = {kind: pid for kind, pid in found.items() if not wait_dead(pid, within_s=30)}
        assert survivors == {}
        assert wait_dead(watchdog, within_s=30)
    finally:
        os.close(held)
        for pid in found.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# A daemon that cleared its environment, left its run's session once, and then forks a fresh
# copy of itself and exits every few milliseconds: never at a pid the watchdog saw for long.
HOPPER = """
import os, sys, time
beats, stop = sys.argv[1], sys.argv[2]
held = open(sys.argv[3], "w")  # the test's FIFO, held by every copy: EOF there once all are gone
os.setsid()
n = 0
while not os.path.exists(stop):
    time.sleep(0.003)
    if os.fork():
        os._exit(0)
    n += 1
    if n % 20 == 0:
        with open(beats, "a") as f:
            f.write(f"{os.getpid()}\\n")
"""


@pytest.mark.slow
def test_a_daemon_hopping_from_pid_to_pid_dies_with_a_sigkilled_orchestrator(
    tmp_path: Path, prefix: str
) -> None:
    """Such a daemon outlived a kill -9 of the orchestrator (a reviewer's, hopping every 3 ms):
    the watchdog knew only pids it had seen, all gone by then. It now also ends the sessions of
    what it saw, which every copy inherits."""
    (tmp_path / "hopper.py").write_text(HOPPER)
    beats, stop, held = tmp_path / "beats", tmp_path / "stop", tmp_path / "held"
    os.mkfifo(held)
    reader = os.open(held, os.O_RDONLY | os.O_NONBLOCK)  # before the hopper opens it to write
    command = (f"env -i PATH=/usr/bin:/bin {PY} hopper.py {beats} {stop} {held} </dev/null "
               ">/dev/null 2>&1 & sleep 120")
    orchestrator = f"""
        import sys
        sys.path.insert(0, {SRC!r})
        from pathlib import Path
        from autoresearch import strays
        from autoresearch.runner import RunSpec, run_command
        strays.adopt_orphans()  # as the autoresearch command does: orphans come back to it
        run_command(RunSpec({command!r}, Path({str(tmp_path)!r}), Path({str(tmp_path)!r}) / "run.log",
                            timeout_s=120, budget_s=120, run_id={prefix + "1"!r}))
        """
    proc = subprocess.Popen([PY, "-c", textwrap.dedent(orchestrator)])
    try:
        end = time.monotonic() + 60
        while len(beats.read_text().split() if beats.exists() else []) < 20:  # 400 hops
            assert time.monotonic() < end, "the hopper never got going"
            time.sleep(0.05)
        proc.kill()
        proc.wait()
        # The watchdog's kill, its grace period included: waited for, not slept for (a loaded
        # machine slows it). A scan of /proc cannot see a copy that hops every 3 ms; the FIFO
        # every copy holds reads EOF once no copy is left.
        end = time.monotonic() + 60
        while True:
            with contextlib.suppress(BlockingIOError):  # a copy still holds it
                if os.read(reader, 1) == b"":
                    break
            assert time.monotonic() < end, "the hopper lives on"
            time.sleep(0.05)
        before = beats.read_text()
        time.sleep(1)
        assert beats.read_text() == before, "the hopper lives on"
    finally:
        stop.touch()
        proc.kill()
        os.close(reader)


@pytest.mark.slow
def test_a_session_the_orchestrator_shares_with_others_is_never_killed(tmp_path: Path) -> None:
    """The sessions the watchdog ends are those made inside the orchestrator's tree. An
    orchestrator that started a child and then left its session (setsid) has that child in
    the session it left, with its user's shell: a reviewer's saw that session killed, shell and
    all, when the orchestrator ended. Here a stand-in shell leads it, with an 'editor'."""
    marks = tmp_path / "pids"
    marks.mkdir()
    orchestrator = f"""
        import os, subprocess, sys, time
        sys.path.insert(0, {SRC!r})
        from pathlib import Path
        from autoresearch import strays
        from autoresearch.runner import RunSpec, run_command
        strays.adopt_orphans()
        child = subprocess.Popen(["sleep", "300"])  # stays in the session left below
        Path({str(marks)!r}, "child").write_text(str(child.pid))
        os.setsid()
        run_command(RunSpec("sleep 1", Path({str(tmp_path)!r}), Path({str(tmp_path)!r}) / "run.log",
                            timeout_s=60, budget_s=60, run_id=f"ar-test-{{os.getpid()}}-shared"))
        """
    shell = f"""
        import os, subprocess, sys, time
        from pathlib import Path
        os.setsid()  # the stand-in login shell: it leads the session
        editor = subprocess.Popen(["sleep", "301"])
        Path({str(marks)!r}, "editor").write_text(str(editor.pid))
        orchestrator = subprocess.Popen([sys.executable, "-c", {textwrap.dedent(orchestrator)!r}])
        Path({str(marks)!r}, "orchestrator").write_text(str(orchestrator.pid))
        orchestrator.wait()
        time.sleep(300)
        """
    leader = subprocess.Popen([PY, "-c", textwrap.dedent(shell)])
    pids: list[int] = []
    try:
        child, editor = wait_file(marks / "child", 30), wait_file(marks / "editor", 30)
        pids = [child, editor]
        # The orchestrator's run and end, then its watchdog's: waited for (a loaded machine
        # can take longer than any sleep), so that what follows is looked at after them.
        orchestrator = wait_file(marks / "orchestrator", 30)
        end = time.monotonic() + 60
        while not is_dead(orchestrator) or watchdogs_of(orchestrator):
            assert time.monotonic() < end, "the orchestrator or its watchdog never ended"
            time.sleep(0.05)
        assert not is_dead(leader.pid), "the user's shell was killed"
        assert not is_dead(editor), "the user's editor was killed"
    finally:
        for pid in [*pids, leader.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        leader.wait()


@pytest.mark.slow
def test_an_orchestrator_that_execs_is_watched_until_it_ends(tmp_path: Path) -> None:
    """exec() closes the watchdog's pipe (close-on-exec) with the orchestrator alive: that EOF
    is not its death. What it started lives while it does, and dies when it ends."""
    marks = tmp_path / "pids"
    marks.mkdir()
    orchestrator = f"""
        import os, subprocess, sys
        sys.path.insert(0, {SRC!r})
        from pathlib import Path
        from autoresearch.runner import RunSpec, run_command
        server = subprocess.Popen(["sleep", "300"], start_new_session=True)
        Path({str(marks)!r}, "server").write_text(str(server.pid))
        run_command(RunSpec("true", Path({str(tmp_path)!r}), Path({str(tmp_path)!r}) / "run.log",
                            timeout_s=60, budget_s=60, run_id=f"ar-test-{{os.getpid()}}-exec"))
        Path({str(marks)!r}, "exec").write_text(str(os.getpid()))
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(3)"])
        """
    proc = subprocess.Popen([PY, "-c", textwrap.dedent(orchestrator)])
    server = wait_file(marks / "server", 30)
    try:
        wait_file(marks / "exec", 30)
        time.sleep(1.5)
        assert not is_dead(server), "killed while its orchestrator lives"
        proc.wait(timeout=30)
        assert wait_dead(server, within_s=30), "it outlived its orchestrator"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server, signal.SIGKILL)
        proc.kill()


@pytest.mark.slow
def test_a_resume_kills_what_survived_the_orchestrator_and_its_watchdog(
    tmp_path: Path, prefix: str
) -> None:
    proc, found = orchestrate(tmp_path, prefix + "1")
    os.kill(watchdog_of(proc.pid), signal.SIGKILL)
    proc.kill()
    proc.wait()
    try:
        assert not is_dead(found["daemon"]) and not is_dead(found["stubborn"])
        # The next session finds them by the dead owner in their environment, whatever their tag.
        assert kill_leftovers(prefix + "other-tag-", grace_s=0.5, orphans_of=prefix) >= 3
        for kind in ("command", "stubborn", "daemon"):
            assert wait_dead(found[kind]), kind
    finally:
        # A process that cleared its environment is beyond reach once its group's leader is
        # gone and no one who knew the group is left (the README says so).
        with contextlib.suppress(ProcessLookupError):
            os.kill(found["bare"], signal.SIGKILL)


def test_orphans_are_killed_and_live_sessions_runs_are_not(prefix: str) -> None:
    dead = subprocess.run([PY, "-c", "from autoresearch.process_tree import owner_token; "
                           "print(owner_token())"], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": SRC})
    dead_owner = dead.stdout.strip()
    sleeper = [PY, "-c", "import time; time.sleep(60)"]
    env = dict(os.environ)
    orphan = subprocess.Popen(sleeper, start_new_session=True, env={
        **env, runner.RUN_ID_ENV: prefix + "a-1", OWNER_ENV: dead_owner})
    live = subprocess.Popen(sleeper, start_new_session=True, env={
        **env, runner.RUN_ID_ENV: prefix + "b-1", OWNER_ENV: owner_token()})
    unmarked = subprocess.Popen(sleeper, start_new_session=True, env={
        **env, runner.RUN_ID_ENV: prefix + "c-1"})  # an older version: no owner to judge by
    try:
        time.sleep(0.2)  # let them exec so their environment is visible
        assert kill_orphans(prefix, grace_s=0.5) == 1
        assert orphan.wait(timeout=5) == -signal.SIGTERM
        assert live.poll() is None and unmarked.poll() is None
    finally:
        for p in (orphan, live, unmarked):
            p.kill()
            p.wait()


def test_an_owner_stays_alive_when_the_boot_time_moves_by_whole_seconds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A start time is the ticks since boot plus /proc/stat's boot time, whole seconds that
    move when the wall clock is adjusted: a suite run saw a live owner judged dead, and its run
    killed as an orphan, when it moved. Another process at the pid differs by a fraction."""
    import psutil

    token = owner_token()
    pid, start = token.split(":")
    assert owner_alive(token)
    for moved in (1.0, -1.0, 3600.0):
        monkeypatch.setattr(psutil.Process, "create_time",
                            lambda self, moved=moved: float(start) + moved)
        assert owner_alive(token), moved
    for other in (0.01, 0.5, 1.02, -2.99):  # a clock tick or more off a whole second
        monkeypatch.setattr(psutil.Process, "create_time",
                            lambda self, other=other: float(start) + other)
        assert not owner_alive(token), other
    monkeypatch.undo()
    assert not owner_alive(f"{pid}:{float(start) - 1e6:.3f}")  # beyond any move of the clock


def test_log_tail(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    assert log_tail(path) == ""
    path.write_bytes(b"aaaa\nbbbb\ncc\xff\n")
    assert log_tail(path) == "aaaa\nbbbb\ncc\ufffd\n"
    assert log_tail(path, max_bytes=8) == "cc\ufffd\n"  # the cut line "bbb" is dropped


def test_bounded_log_keeps_exact_head_and_tail(tmp_path: Path) -> None:
    path = tmp_path / "b.log"
    log = runner._BoundedLog(path, 8192)
    stream = b"".join(f"line {i:06d}\n".encode() for i in range(20_000))
    for start in range(0, len(stream), 777):  # odd chunk sizes cross every boundary
        log.write(stream[start : start + 777])
    log.close()
    data = path.read_bytes()
    assert len(data) <= 8192
    head, rest = data[:4096], data[4096:]
    marker = re.match(rb"\n?\[autoresearch: (\d+) bytes of output dropped here\]\n", rest)
    assert marker is not None
    tail = rest[marker.end() :]
    assert stream.startswith(head)
    assert stream.endswith(tail) and tail.startswith(b"line ")
    assert len(head) + int(marker.group(1)) + len(tail) == len(stream)
    assert log.dropped == int(marker.group(1))


def test_a_finished_file_is_capped_to_its_head_and_tail(tmp_path: Path) -> None:
    # Output another process wrote straight to the file (an agent CLI's): cut once it is done.
    path = tmp_path / "agent.log"
    stream = b"".join(f"line {i:06d}\n".encode() for i in range(20_000))
    path.write_bytes(stream)
    dropped = runner._BoundedLog.cap(path, 8192)
    data = path.read_bytes()
    assert len(data) <= 8192
    head, rest = data[:4096], data[4096:]
    marker = re.match(rb"\n?\[autoresearch: (\d+) bytes of output dropped here\]\n", rest)
    assert marker is not None and int(marker.group(1)) == dropped > 0
    tail = rest[marker.end() :]
    assert stream.startswith(head) and stream.endswith(tail) and tail.startswith(b"line ")
    assert len(head) + dropped + len(tail) == len(stream)
    small = tmp_path / "small.log"
    small.write_bytes(b"short\n")
    assert runner._BoundedLog.cap(small, 8192) == 0 and small.read_bytes() == b"short\n"


def test_cleanup_matches_the_exact_run_id_only(tmp_path: Path, prefix: str) -> None:
    # A neighbour whose id merely starts with ours ("...-10" vs "...-1") must be left alone.
    env = {**os.environ, runner.RUN_ID_ENV: prefix + "10"}
    neighbour = subprocess.Popen(["sleep", "30"], env=env, start_new_session=True)
    try:
        time.sleep(0.05)
        out = run_command(spec(tmp_path, "true", run_id=prefix + "1"))
        assert out.survivors_killed == 0 and neighbour.poll() is None
    finally:
        neighbour.kill()
        neighbour.wait()


def test_a_watchdog_that_cannot_see_its_orchestrator_waits_for_the_pipe() -> None:
    """The watchdog also ends its watch when it sees its orchestrator gone; one that cannot see
    it at all (/proc of another pid namespace) must not take that for a death, or it would stop
    guarding at once: it follows the pipe until EOF, as before."""
    from autoresearch.watchdog import Descendants, read_groups

    unseen = Descendants(4_000_000 + os.getpid())  # above any pid_max: not visible from here
    assert unseen.scan()
    read, write = os.pipe()
    os.write(write, b"+123\n+456\n-123\n")
    os.close(write)
    try:
        assert read_groups(read, unseen.scan, interval_s=0.01) == {456}
    finally:
        os.close(read)
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    seen = Descendants(child.pid)
    assert seen.scan()
    child.communicate()
    assert not seen.scan()  # seen alive, then gone: that is a death


def test_a_watchdog_knows_its_orchestrator_by_start_time_not_pid_alone() -> None:
    """Started late (a busy machine), a watchdog whose orchestrator had died and whose pid an
    unrelated program had taken watched that program, and at its end killed what it started (a
    reviewer forced the reuse in a pid namespace). The owner token's start time now decides."""
    from autoresearch.watchdog import Descendants

    created = psutil.Process(os.getpid()).create_time()
    assert Descendants(os.getpid(), float(f"{created:.3f}")).watching  # as the token says
    assert not Descendants(os.getpid(), created - 0.5).watching  # another process's pid
    # The boot time moves by whole seconds with the wall clock: still the token's process.
    for moved in (1.0, -1.0, 3600.0):
        assert Descendants(os.getpid(), float(f"{created + moved:.3f}")).watching, moved
    for other in (0.01, 1.02, -2.99, 1e6):
        assert not Descendants(os.getpid(), created + other).watching, other


def test_clock_ticks_since_boot_are_read_exactly() -> None:
    """Read through a float, 1230.09 s made 123008 ticks: a leader started in the tick the
    session was found in then looked younger than the finding (a suite run failed on it)."""
    from autoresearch.watchdog import _CLOCK_TICKS, uptime_ticks

    assert _CLOCK_TICKS == 100  # Linux's USER_HZ, which the figures below assume
    assert uptime_ticks("1230.09") == 123009
    assert uptime_ticks("0.29") == 29
    assert uptime_ticks("17") == 1700
    assert uptime_ticks("3.5") == 350
    assert all(uptime_ticks(f"{s}.{c:02d}") == 100 * s + c for s in range(300) for c in range(100))


def test_a_session_number_taken_again_since_is_not_the_one_found() -> None:
    """A session found to be made inside the tree may empty and its number go to a session an
    unrelated process makes later: one whose leader is younger than the finding is not ours."""
    from autoresearch.watchdog import Descendants, _ticks_now

    leader = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        watch = Descendants(os.getpid())
        watch._ours[leader.pid] = _ticks_now()  # found after the leader started: the same
        assert watch.sessions() == {leader.pid}
        watch._ours[leader.pid] = 0  # found before the leader started (at boot): another's
        assert watch.sessions() == set()
    finally:
        leader.kill()
        leader.wait()
