"""Run the training script in a process of its own, then score the model it hands over. FIXED.

    python score.py train.py            # what autoresearch.toml's verify command runs

train.py trains and ends with `prepare.hand_over(model)`, which exports the model's forward with
torch.export: a graph of tensor operations and its weights, none of train.py's Python. This
process loads that graph and scores it with prepare.py's evaluation (val_bpb, the held-out
test_bpb, the causality check), so the numbers the engine reads are computed by code the
proposer cannot edit, in a process where the proposer's code never ran:

- train.py cannot print a score of its own: each of its lines is shown behind `train.py| `,
  where the engine reads no metric, and the summary block below is this file's;
- train.py cannot patch the evaluation or its constants (they live in this process);
- on CPU, peak_vram_mb is the operating system's peak memory of train.py's process tree, not a
  number train.py prints (on CUDA, where only the process itself can see its peak, it is
  train.py's figure);
- no process train.py starts outlives it (this process is their subreaper: it reaps the ones
  that die while train.py runs and ends the rest before scoring, or when the engine stops it
  with SIGTERM at a timeout; a kill -9 leaves its scratch directory, which the next score.py
  removes), nothing is imported from this directory, prepare.py is compiled from the text read
  before train.py started, the model archive may hold tensors only (nothing is unpickled), and
  the data cache's hashes are read before train.py starts: a split rewritten with its hash is
  refused;
- the forward handed over may keep no state across calls, and every scored val batch is probed
  for causality with cuts drawn afresh (prepare.probe_scored_batch).

What this cannot stop: train.py deciding how long it trains (the engine's timeout bounds it, and
train_wall_seconds below is its wall time as measured here); training on the validation split
and carrying what it learnt in the weights (the held-out test_bpb shows it, unless train.py
reads the test split too: it is in the same cache, readable by the same user); and anything
that writes where the user running the session may write outside the project, such as the
Python installation (a module planted in site-packages runs in every Python process). The
fences are against edits of the project's code, not a sandbox: for that, run sessions in a
container or as a user of their own.

The other numbers train.py prints as `name: value` lines (training_seconds, num_steps, ...) are
passed on under their names, except the ones this file computes.
"""

from __future__ import annotations

import os  # (os and sys are loaded before any script runs)
import sys

# Nothing is imported from this directory, where train.py runs and may write: a numpy.py or a
# module torch imports lazily, written there while train.py runs, would otherwise run in this
# process at its first import. prepare.py is read by path before train.py starts (below).
HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.realpath(entry or os.curdir) != HERE]

import contextlib  # noqa: E402
import fcntl  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import IO  # noqa: E402

sys.dont_write_bytecode = True  # no __pycache__/ in the repository: git status stays clean
PREPARE = Path(HERE) / "prepare.py"

# What the training script prints is shown behind this, where no metric format matches a line.
RELAYED = "train.py| "
# Numbers this file measures or computes: never taken from what train.py prints.
COMPUTED = ("val_bpb", "test_bpb", "num_params_M", "peak_vram_mb", "train_wall_seconds",
            "total_seconds")
# Scratch directories (the exported model) are named after the process that made them.
SCRATCH = "autoresearch-score-"
SCRATCH_LOCK = "lock"
# Longest piece of output read at once: a line without an end cannot fill the memory.
READ_LIMIT = 1 << 16
_NUMBER = r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf(?:inity)?"
_PRINTED = re.compile(rf"^\s*([A-Za-z_][\w.\-/]*)\s*:\s*({_NUMBER})\s*$", re.IGNORECASE)


def become_subreaper() -> None:
    """Make the orphans of train.py's process tree children of this process (Linux), so that
    none of them outlives train.py: a daemon it left could write a number to this process's
    output (through /proc/<pid>/fd/1) after the summary, and a worker it never waited for
    would keep its memory out of the peak."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):  # not Linux: the engine's own process control remains
        pass


def end_orphans() -> int:
    """Kill and reap every process left of train.py's tree (now this process's children);
    how many there were. Their memory then counts in peak_memory_mb()."""
    ended = 0
    for _ in range(100):  # killing one may hand its own children over: look again
        left = [pid for pid in _children() if pid != os.getpid()]
        if not left:
            break
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in left:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
                ended += 1
    return ended


def reap_dead_orphans(spare: int) -> None:
    """Reap every dead child but `spare` (train.py itself, which child.wait() reaps). Each
    orphan of train.py comes back to this process and dies here as a zombie that holds a pid
    until it is reaped: a train.py forking short-lived daemons in a loop would otherwise fill
    the machine's process table before it ends. (This process starts no other child while
    train.py runs, so no exit status someone waits for is taken.)"""
    for pid in _children():
        if pid != spare and _state(pid) == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


def _state(pid: int) -> str:
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return ""


def _children() -> list[int]:
    """The pids whose parent is this process, from /proc (empty where there is none)."""
    me, found = os.getpid(), []
    with contextlib.suppress(OSError, ValueError):  # each thread's own list: no scan of all
        tasks = os.listdir(f"/proc/{me}/task")
        for task in tasks:
            found += [int(p) for p in Path(f"/proc/{me}/task/{task}/children").read_text().split()]
        return found
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    stat = Path(entry.path, "stat").read_text()
                    if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                        found.append(int(entry.name))
    return found


class Stop:
    """SIGTERM (the harness's timeout or stop) and SIGHUP end score.py through its cleanup:
    train.py and what it left are ended and the scratch directory (an exported model) goes. One
    that comes during the cleanup waits for its end, rather than cutting it short."""

    cleaning = False
    signal = 0

    @classmethod
    def on_signal(cls, signum: int, _frame: object) -> None:
        if cls.cleaning:
            cls.signal = cls.signal or signum
            return
        raise SystemExit(128 + signum)

    @classmethod
    def after_cleanup(cls) -> None:
        cls.cleaning = False
        if cls.signal:
            raise SystemExit(128 + cls.signal)


@contextlib.contextmanager
def scratch_directory() -> Iterator[Path]:
    """A scratch directory for the handed-over model, locked (flock) by this process for its
    life and removed at its end. The kernel drops the lock however the process dies, so a
    directory whose lock can be taken is one a killed score.py left (clear_stale_scratch)."""
    scratch = Path(tempfile.mkdtemp(prefix=SCRATCH))
    lock = None
    try:
        lock = os.open(scratch / "lock.new", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(lock, fcntl.LOCK_EX)
        os.rename(scratch / "lock.new", scratch / SCRATCH_LOCK)  # only ever seen held
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if lock is not None:
            os.close(lock)


def clear_stale_scratch() -> None:
    """Remove the scratch directories of score.py processes that were killed outright (kill -9
    leaves no chance to clean up, and each may hold an exported model): those of this user
    whose lock nobody holds. A lock tells across containers sharing /tmp, where a pid does not."""
    for path in Path(tempfile.gettempdir()).glob(f"{SCRATCH}*"):
        with contextlib.suppress(OSError):
            if path.is_symlink() or not path.is_dir() or path.stat().st_uid != os.getuid():
                continue
            held = os.open(path / SCRATCH_LOCK, os.O_RDONLY | os.O_NOFOLLOW)  # none: skipped
            try:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by a live score.py: raises
                shutil.rmtree(path, ignore_errors=True)
            finally:
                os.close(held)


def cache_records() -> dict[str, bytes]:
    """Every data cache's meta.json (which holds the hashes of its files), read before train.py
    starts: a run that rewrote a split and its meta.json is then seen. The root is
    prepare.cache_root()'s, read here without importing torch."""
    root = os.environ.get("AUTORESEARCH_CACHE", "").strip() or "~/.cache/autoresearch/gpt"
    records = {}
    for meta in Path(root).expanduser().glob("*/*/meta.json"):
        with contextlib.suppress(OSError):
            records[str(meta)] = meta.read_bytes()
    return records


def relay(stream: IO[bytes]) -> dict[str, float]:
    """Show every line of `stream` behind RELAYED; the `name: value` numbers it printed last.

    Every kind of line break starts a new, prefixed line (a reader splitting at U+2028 or a
    lone carriage return would otherwise find a line train.py began), so no part of what
    train.py prints can begin a line of this process's output. Escape characters become
    visible text: the log shows what was printed, and a terminal showing it is not driven by it.
    """
    printed: dict[str, float] = {}
    while chunk := stream.readline(READ_LIMIT):
        text = chunk.decode("utf-8", errors="replace").replace("\x1b", "^[")
        for line in text.splitlines():
            print(RELAYED + line, flush=True)
            if found := _PRINTED.match(line):
                try:
                    printed[found.group(1)] = float(found.group(2).replace(",", ""))
                except ValueError:
                    pass
    return printed


def peak_memory_mb() -> float:
    """Peak resident memory of the largest process this one has waited for (train.py's tree)."""
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB


def finish_like(status: int, script: str) -> None:
    """End this process as the training script ended: same exit status, same signal."""
    if status < 0:
        print(f"score.py: {script} was killed by signal {-status}", flush=True)
        with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler to reset
            signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    print(f"score.py: {script} exited with status {status}; nothing was scored", flush=True)
    raise SystemExit(status or 1)


def load_prepare(source: bytes) -> types.ModuleType:
    """prepare.py as it was read before train.py started, compiled from that text: no .pyc
    that train.py could have written is read, and no later rewrite of the file counts."""
    module = types.ModuleType("prepare")
    module.__file__ = str(PREPARE)
    sys.modules["prepare"] = module  # its dataclasses look their module up while created
    exec(compile(source, str(PREPARE), "exec"), module.__dict__)  # noqa: S102
    return module


def main(argv: list[str]) -> None:
    if not argv or argv[0].startswith("-"):
        raise SystemExit("usage: python score.py train.py [its arguments]")
    sys.stdout.reconfigure(encoding="utf-8", errors="replace")  # type: ignore[union-attr]
    started = time.time()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, Stop.on_signal)
    prepare_source = PREPARE.read_bytes()
    records = cache_records()
    become_subreaper()
    clear_stale_scratch()
    with scratch_directory() as scratch:
        model_file = scratch / "model.pt2"
        child = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT,
                                 env={**os.environ, "AUTORESEARCH_MODEL_FILE": str(model_file)})
        printed: dict[str, float] = {}
        assert child.stdout is not None
        # Read apart: a process train.py leaves behind may hold the pipe open after it ends.
        stream = child.stdout
        reader = threading.Thread(target=lambda: printed.update(relay(stream)), daemon=True)
        reader.start()
        training = threading.Event()
        training.set()

        def reap_while_training() -> None:
            while training.is_set():
                reap_dead_orphans(spare=child.pid)
                time.sleep(0.2)

        reaper = threading.Thread(target=reap_while_training, daemon=True)
        reaper.start()
        try:
            # Loaded while train.py starts, before its clock does.
            prepare = load_prepare(prepare_source)
            prepare.warm_up_loading()
            status = child.wait()
        finally:
            Stop.cleaning = True
            training.clear()
            reaper.join()
            if child.poll() is None:
                child.kill()
                child.wait()
            if orphans := end_orphans():
                print(f"score.py: {orphans} process(es) {argv[0]} left running were ended",
                      flush=True)
            reader.join(timeout=10)  # the pipe's last holders are gone: its end is near
            Stop.after_cleanup()
        train_wall = time.time() - started
        if status != 0:
            finish_like(status, argv[0])
        scores = prepare.score_handed_over(model_file, argv[0], records)
    on_cuda = prepare.DEVICE.type == "cuda"  # only the process itself sees its GPU peak
    memory = printed.get("peak_vram_mb", 0.0) if on_cuda else peak_memory_mb()
    print("---")
    for name, value in scores.items():
        print(f"{name + ':':20}{value:.6f}")
    for name, value in printed.items():
        if name not in COMPUTED:
            print(f"{name + ':':20}{value:g}")
    print(f"{'peak_vram_mb:':20}{memory:.1f}")
    print(f"{'train_wall_seconds:':20}{train_wall:.1f}")
    print(f"{'total_seconds:':20}{time.time() - started:.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
